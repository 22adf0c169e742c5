"""The voice frameworks' own OpenAI services against the shared real ``stt-core serve``.

Over ``/v1/realtime``: LiveKit's ``openai.STT(use_realtime=True, base_url=...)`` inside a LiveKit
``AgentSession`` (room-like 48 kHz audio in, the user's transcripts out), and Pipecat's
``OpenAIRealtimeSTTService`` in a Pipecat pipeline, with the pipeline's VAD frames committing
each turn (its default) and with the server's VAD. Over ``/v1/audio/transcriptions``, one upload
per utterance: LiveKit's ``openai.STT()`` and Pipecat's ``OpenAISTTService``."""

from __future__ import annotations

import pytest
from livekit.agents import AgentSession, APIStatusError
from livekit.agents.utils import http_context
from livekit.plugins import openai as livekit_openai
from livekit.plugins import silero
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.services.openai.stt import OpenAIRealtimeSTTService, OpenAISTTService
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.transcriptions.language import Language

from agent_sessions import FixtureAudio, heard
from realtime_clients import REALTIME_KEY
from serving import ServeProcess
from speech import FIXTURES, MAX_WER, wer
from stt_core import Audio
from stt_core_livekit import audio_to_frames

pytestmark = pytest.mark.slow
PIPECAT_RATE = 16_000


# -- LiveKit -----------------------------------------------------------------------------------------


async def test_livekits_openai_stt_with_use_realtime_in_an_agent_session(
    realtime_server: ServeProcess,
) -> None:
    async with http_context.open():  # what a LiveKit job gives its plugins
        stt = livekit_openai.STT(use_realtime=True, base_url=f"{realtime_server.url}/v1",
                                 api_key=REALTIME_KEY, model="funasr", language="en")
        session = AgentSession(stt=stt, vad=silero.VAD.load(), turn_handling={"turn_detection": "stt"})
        try:
            events = await heard(session, FixtureAudio(Audio.from_file(FIXTURES / "chairs.wav"), pace=0.02))
        finally:
            await stt.aclose()
    finals = [e.transcript for e, _ in events if e.is_final]
    interims = [e.transcript for e, _ in events if not e.is_final]
    assert finals and wer("chairs", finals[0]) <= MAX_WER, finals
    assert interims, "no interim"  # (how many while the user speaks depends on the engine's speed)
    assert all(finals[0].startswith(i) for i in interims), (interims, finals)  # deltas only appended


# LiveKit sends a language as `language`, and for gpt-transcribe as `languages[]`: the chain hears
# either (Chinese: whisper tiny.en takes none, the SenseVoice behind it answers; German: no engine).
@pytest.mark.parametrize("model", ["whisper-1", "gpt-4o-mini-transcribe", "gpt-transcribe"])
async def test_livekits_openai_stt_over_http_in_the_language_it_asks_for(realtime_server: ServeProcess,
                                                                          model: str) -> None:
    frames = audio_to_frames(Audio.from_file(FIXTURES / "zh_hello.wav").to(48_000, 1))
    async with http_context.open():
        stt = livekit_openai.STT(base_url=f"{realtime_server.url}/v1", api_key=REALTIME_KEY, model=model)
        try:
            heard = await stt.recognize(frames, language="zh")
            with pytest.raises(APIStatusError) as refused:
                await stt.recognize(frames, language="de")
        finally:
            await stt.aclose()
    assert heard.alternatives[0].text == "你好世界。"
    assert refused.value.status_code == 400 and "language 'de' is not taken" in str(refused.value.body)


# -- Pipecat -----------------------------------------------------------------------------------------


def pipecat_frames(name: str, *, vad_frames: bool) -> list[Frame]:
    """A fixture as a Pipecat transport delivers it (16 kHz 20 ms frames, in real time), with the
    pipeline VAD's frames around the speech when the client commits the turns."""
    pcm = Audio.from_file(FIXTURES / f"{name}.wav").to(PIPECAT_RATE, 1, "int16").samples.reshape(-1)
    step = PIPECAT_RATE // 50
    silence = [InputAudioRawFrame(bytes(2 * step), PIPECAT_RATE, 1) for _ in range(25)]  # 0.5 s
    speech = [InputAudioRawFrame(pcm[i:i + step].tobytes(), PIPECAT_RATE, 1)
              for i in range(0, len(pcm), step)]
    frames: list[Frame] = [*silence]
    frames += [VADUserStartedSpeakingFrame(start_secs=0.2)] if vad_frames else []
    frames += [*speech, *silence]
    frames += [VADUserStoppedSpeakingFrame(stop_secs=0.2)] if vad_frames else []
    frames += silence * 3
    paced = [item for frame in frames for item in (frame, SleepFrame(sleep=0.02))]
    return [*paced, SleepFrame(sleep=2.0)]  # a margin: the final is due during the silence before it


@pytest.mark.parametrize("server_vad", [False, True], ids=["pipeline VAD commits", "server VAD"])
async def test_pipecats_openai_realtime_stt_service_in_a_pipeline(realtime_server: ServeProcess,
                                                                  server_vad: bool) -> None:
    service = OpenAIRealtimeSTTService(
        api_key=REALTIME_KEY, base_url=f"ws://127.0.0.1:{realtime_server.port}/v1/realtime",
        settings=OpenAIRealtimeSTTService.Settings(model="funasr", language=Language.EN),
        turn_detection={"type": "server_vad"} if server_vad else False)
    down, up = await run_test(service, frames_to_send=pipecat_frames("chairs", vad_frames=not server_vad))
    finals = [f for f in down if isinstance(f, TranscriptionFrame)]
    interims = [f for f in down if isinstance(f, InterimTranscriptionFrame)]
    assert not [f for f in up if isinstance(f, ErrorFrame)], up
    assert len(finals) == 1 and wer("chairs", finals[0].text) <= MAX_WER, finals
    assert finals[0].result["engine"] == "funasr"  # the server's completed event, as Pipecat keeps it
    assert interims and down.index(interims[0]) < down.index(finals[0])
    # Pipecat shows each delta as it comes: append-only, they add up to the final
    assert "".join(f.text for f in interims) == finals[0].text


async def test_pipecats_openai_stt_service_uploads_each_utterance_its_vad_cuts(
        realtime_server: ServeProcess) -> None:
    service = OpenAISTTService(api_key=REALTIME_KEY, base_url=f"{realtime_server.url}/v1")  # gpt-transcribe
    down, up = await run_test(service, frames_to_send=pipecat_frames("chairs", vad_frames=True))
    finals = [f for f in down if isinstance(f, TranscriptionFrame)]
    assert not [f for f in up if isinstance(f, ErrorFrame)], up
    assert len(finals) == 1 and wer("chairs", finals[0].text) <= MAX_WER, finals
