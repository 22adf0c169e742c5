"""A LiveKit voice agent whose speech-to-text is an stt-core chain from stt.toml.

    pip install "stt-core[livekit,funasr,groq,whisper]"   # until on PyPI: see the README's Install
    stt-core models download funasr                  # once: SenseVoiceSmall for offline use
    export LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=... GROQ_API_KEY=...
    python examples/livekit_agent.py dev             # or: start (production), console (local mic)

Offline, with no server, no microphone and no keys: `python examples/livekit_agent.py file
examples/audio/fox.wav` feeds the file through the same STT as a session would (stt-core's real
time when the chain's first engine that can serve is local, else LiveKit's StreamAdapter with
Silero's VAD; 48 kHz frames in real time) and prints each speech event it gets (bundled whisper
answers when FunASR's model is not downloaded). `console` needs
PortAudio and a microphone; with LIVEKIT_API_KEY (or AGENT_LLM) the agent also answers.

The chain (FunASR SenseVoiceSmall locally, Groq Whisper as the fallback, bundled whisper last) comes from
examples/stt.toml, or the file STT_CONFIG names. With shared inference (on here), the worker loads
FunASR's model once, in LiveKit's inference process, before it takes a job, and every job process
uses it over LiveKit's IPC: job processes hold no model and start at once. If that process dies,
the chain falls over to Groq. The LLM and TTS are LiveKit Inference model strings; set
AGENT_LLM / AGENT_TTS to use others.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli, stt
from livekit.plugins import silero

import stt_core
from stt_core_livekit import STT, audio_to_frames, enable_shared_inference, prewarm

logger = logging.getLogger("stt-core-agent")
CONFIG = Path(os.environ.get("STT_CONFIG", Path(__file__).with_name("stt.toml")))
FROM_FILE = sys.argv[1:2] == ["file"]  # the offline mode: no worker, so no inference process

# One FunASR model for the whole worker, in LiveKit's inference process. This line must run in the
# main process before the worker starts: here, at import, is that place.
if not FROM_FILE:
    enable_shared_inference(CONFIG)


def setup(proc: JobProcess) -> None:
    """Runs once per job process, before its job: the chain (its FunASR link points at the shared
    model, so nothing loads here) into proc.userdata, and LiveKit's VAD."""
    prewarm(proc, CONFIG)
    proc.userdata["vad"] = silero.VAD.load()


# Without shared inference, each process loads FunASR here, which can take longer than LiveKit's
# default 10 s for starting a process: the room stays for users who turn it off.
server = AgentServer(setup_fnc=setup, initialize_process_timeout=120)


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a helpful voice assistant. Answer briefly.")


def voice_models() -> dict[str, str]:
    """The LLM and TTS, when there are credentials for them. LiveKit Inference models need the
    LiveKit keys; without them (console mode on a laptop, offline) the agent only transcribes,
    and says so, instead of failing its job on the first reply."""
    if os.environ.get("AGENT_LLM") or os.environ.get("LIVEKIT_API_KEY"):
        return {"llm": os.environ.get("AGENT_LLM", "openai/gpt-4.1-mini"),
                "tts": os.environ.get("AGENT_TTS", "cartesia/sonic-3")}
    logger.warning("no LLM credentials (LIVEKIT_API_KEY or AGENT_LLM): transcribe-only mode, "
                   "the agent logs what it hears and does not answer")
    return {}


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    session = AgentSession(
        stt=STT.from_process(ctx.proc, CONFIG),  # the chain prewarm built
        vad=ctx.proc.userdata["vad"],  # LiveKit's turns (and StreamAdapter, for an STT that does not stream)
        **voice_models(),  # type: ignore[arg-type]
    )

    @session.on("user_input_transcribed")
    def _log(event) -> None:  # type: ignore[no-untyped-def]
        if event.is_final:  # which engine answered: funasr, or groq when funasr could not
            engine = session.stt.provider if session.stt else "?"
            logger.info("user said: %s (stt: %s)", event.transcript, engine)

    await session.start(agent=Assistant(), room=ctx.room)


async def transcribe_file(path: str) -> None:
    """The file through the STT a session would use, in real time; each speech event printed."""
    chain = stt_core.load_config(CONFIG).build_chain()
    rate = 48_000  # what a room delivers
    audio = stt_core.Audio.concat([stt_core.Audio.from_file(path).to(sample_rate=rate, channels=1),
                                   stt_core.Audio.silence(1.0, rate)])  # the VAD's end of speech
    async with chain:
        recogniser = STT(chain)  # as AgentSession does: an STT that does not stream gets a StreamAdapter
        adapter = recogniser if recogniser.capabilities.streaming else \
            stt.StreamAdapter(stt=recogniser, vad=silero.VAD.load())
        stream = adapter.stream()

        async def feed() -> None:
            for frame in audio_to_frames(audio, frame_ms=20):
                stream.push_frame(frame)
                await asyncio.sleep(0.02)
            stream.end_input()

        feeding = asyncio.create_task(feed())
        async for event in stream:
            said = f": {event.alternatives[0].text}" if event.alternatives else ""
            final = event.type == stt.SpeechEventType.FINAL_TRANSCRIPT
            engine = f" (stt: {adapter.provider})" if final else ""
            print(f"{event.type.name}{said}{engine}", flush=True)
        await feeding
        await stream.aclose()
        await adapter.aclose()


FILE_USAGE = ("python examples/livekit_agent.py file AUDIO\n"
              "    offline: AUDIO through the STT a session would use, in real time, each speech event\n"
              "    printed (no server, no microphone, no keys)")

if __name__ == "__main__":
    if FROM_FILE:
        if len(sys.argv) != 3:
            sys.exit(f"usage: {FILE_USAGE}")
        asyncio.run(transcribe_file(sys.argv[2]))
    else:
        if sys.argv[1:2] in ([], ["-h"], ["--help"]):  # LiveKit's help lists its own commands only
            print(f"Usage: {FILE_USAGE}\n   or: python examples/livekit_agent.py COMMAND (LiveKit's, below)")
        cli.run_app(server)
