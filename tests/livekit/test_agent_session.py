"""Offline end to end: a real LiveKit AgentSession, no room, no LLM, no server, with our STT and
Silero VAD, fed fixture speech through a custom AudioInput."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    Agent,
    AgentSession,
    APIConnectOptions,
    UserInputTranscribedEvent,
    llm,
)
from livekit.agents.voice import io
from livekit.plugins import silero

import stt_core
from speech import FIXTURES, MAX_WER, PATIENT, warm_whisper, wer
from stt_core import Audio
from stt_core_livekit import STT, audio_to_frames

RATE = 48_000


class FixtureAudio(io.AudioInput):
    """Room-like input: 48 kHz mono 20 ms frames of silence, the speech, then silence for ever."""

    def __init__(self, speech: Audio, pace: float = 0.005) -> None:
        super().__init__(label="fixture")
        self._pace = pace
        audio = Audio.concat([Audio.silence(1.0, RATE), speech.to(sample_rate=RATE, channels=1),
                              Audio.silence(3.0, RATE)])
        self._frames = iter(audio_to_frames(audio, frame_ms=20))
        self._silence = audio_to_frames(Audio.silence(0.02, RATE))[0]

    async def __anext__(self) -> rtc.AudioFrame:
        await asyncio.sleep(self._pace)  # 0.005: four times real time
        return next(self._frames, self._silence)


@pytest.fixture(scope="module")
def whisper() -> stt_core.Provider:
    return warm_whisper()


async def test_agent_session_emits_the_users_words(whisper: stt_core.Provider) -> None:
    session = AgentSession(stt=STT(whisper, realtime_settings=PATIENT), vad=silero.VAD.load(),
                           turn_handling={"turn_detection": "stt"})
    heard: list[UserInputTranscribedEvent] = []
    final = asyncio.Event()

    def on_transcript(event: UserInputTranscribedEvent) -> None:
        heard.append(event)
        if event.is_final:
            final.set()

    session.on("user_input_transcribed", on_transcript)
    session.input.audio = FixtureAudio(Audio.from_file(FIXTURES / "lights.wav"))
    await session.start(agent=Agent(instructions="Listen."))
    try:
        await asyncio.wait_for(final.wait(), timeout=60)
    finally:
        await session.aclose()
    transcript = next(e.transcript for e in heard if e.is_final)
    assert wer("lights", transcript) <= MAX_WER, transcript


class RecordingLLM(llm.LLM):
    """An LLM that answers at once and notes when it was asked, and with which user words."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[float, str]] = []

    def chat(self, *, chat_ctx: llm.ChatContext, tools: list[Any] | None = None,
             conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS, **_: Any
             ) -> llm.LLMStream:
        said = [m.text_content or "" for m in chat_ctx.messages() if m.role == "user"]
        self.asked.append((time.monotonic(), said[-1] if said else ""))
        return _Answer(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _Answer(llm.LLMStream):
    async def _run(self) -> None:
        answer = llm.ChoiceDelta(role="assistant", content="OK.")
        self._event_ch.send_nowait(llm.ChatChunk(id="1", delta=answer))


async def test_preemptive_generation_starts_from_our_preflight_before_the_final(
    whisper: stt_core.Provider,
) -> None:
    # Fed in real time. whisper tiny.en (float32) took 1.4 s for the clip on this 2-core VM, idle
    # (a CI run saw the preflight miss a 1.2 s window, and one on two busy workers a 4 s one), so
    # the utterance ends 8 s after the speech here: the preflight has the time to come first (the
    # default 0.55 s suits an engine of SenseVoiceSmall's speed).
    ours = STT(whisper, realtime_settings=PATIENT.model_copy(update={"min_silence": 8.0}))
    assert ours.realtime and ours.capabilities.interim_results
    model = RecordingLLM()
    session = AgentSession(stt=ours, vad=silero.VAD.load(), llm=model,
                           turn_handling={"turn_detection": "stt",
                                          "preemptive_generation": {"enabled": True}})
    finals: list[float] = []
    final = asyncio.Event()

    def on_transcript(event: UserInputTranscribedEvent) -> None:
        if event.is_final:
            finals.append(time.monotonic())
            final.set()

    session.on("user_input_transcribed", on_transcript)
    session.input.audio = FixtureAudio(Audio.from_file(FIXTURES / "lights.wav"), pace=0.02)
    await session.start(agent=Agent(instructions="Listen."))
    try:
        await asyncio.wait_for(final.wait(), timeout=60)
        await asyncio.sleep(0.5)
    finally:
        await session.aclose()
    assert model.asked, "no generation started"
    asked_at, words = model.asked[-1]
    assert wer("lights", words) <= MAX_WER, model.asked  # the preflight's words
    assert asked_at < finals[0], (model.asked, finals)  # from the preflight, before the final
