"""A LiveKit voice agent whose speech-to-text is an stt-core chain from stt.toml.

    pip install "stt-core[livekit,funasr,groq]"
    stt-core models download funasr                  # once: SenseVoiceSmall for offline use
    export LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=... GROQ_API_KEY=...
    python examples/livekit_agent.py dev             # or: start (production), console (local mic)

The chain (FunASR SenseVoiceSmall locally, Groq Whisper as the fallback) comes from
examples/stt.toml, or the file STT_CONFIG names. Each worker process loads the local models once,
in the server's setup function, before it takes a job. The LLM and TTS are LiveKit Inference
model strings; set AGENT_LLM / AGENT_TTS to use others.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli
from livekit.plugins import silero

from stt_core_livekit import STT, prewarm

logger = logging.getLogger("stt-core-agent")
CONFIG = Path(os.environ.get("STT_CONFIG", Path(__file__).with_name("stt.toml")))


def setup(proc: JobProcess) -> None:
    """Runs once per worker process, before its first job: load the models here, not per call."""
    prewarm(proc, CONFIG)  # FunASR's model into this process's cache; the chain into proc.userdata
    proc.userdata["vad"] = silero.VAD.load()


# FunASR's first load (import funasr, read the model) can take longer than LiveKit's default
# 10 s for starting a process; give it room.
server = AgentServer(setup_fnc=setup, initialize_process_timeout=120)


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a helpful voice assistant. Answer briefly.")


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    session = AgentSession(
        stt=STT.from_process(ctx.proc, CONFIG),  # the chain prewarm built, models already loaded
        vad=ctx.proc.userdata["vad"],  # FunASR does not stream: LiveKit cuts turns with this VAD
        llm=os.environ.get("AGENT_LLM", "openai/gpt-4.1-mini"),
        tts=os.environ.get("AGENT_TTS", "cartesia/sonic-3"),
    )

    @session.on("user_input_transcribed")
    def _log(event) -> None:  # type: ignore[no-untyped-def]
        if event.is_final:  # which engine answered: funasr, or groq when funasr could not
            engine = session.stt.provider if session.stt else "?"
            logger.info("user said: %s (stt: %s)", event.transcript, engine)

    await session.start(agent=Assistant(), room=ctx.room)


if __name__ == "__main__":
    cli.run_app(server)
