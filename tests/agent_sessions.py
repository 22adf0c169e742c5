"""A real LiveKit ``AgentSession`` fed fixture speech as a room delivers it, and what it transcribes:
shared by the LiveKit adapter's tests and the tests of LiveKit's own OpenAI STT against serve."""

from __future__ import annotations

import asyncio
import time

from livekit import rtc
from livekit.agents import Agent, AgentSession, UserInputTranscribedEvent
from livekit.agents.voice import io

from stt_core import Audio
from stt_core_livekit import audio_to_frames

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
        await asyncio.sleep(self._pace)  # 0.005: four times real time; 0.02: real time
        return next(self._frames, self._silence)


async def heard(session: AgentSession, audio: io.AudioInput, *,
                linger: float = 0.0) -> list[tuple[UserInputTranscribedEvent, float]]:
    """The user's transcripts ``session`` emits from ``audio``, each with when it came (monotonic
    time), until its first final (within a minute) and ``linger`` seconds more; the session is
    closed after."""
    events: list[tuple[UserInputTranscribedEvent, float]] = []
    final = asyncio.Event()

    def on_transcript(event: UserInputTranscribedEvent) -> None:
        events.append((event, time.monotonic()))
        if event.is_final:
            final.set()

    session.on("user_input_transcribed", on_transcript)
    session.input.audio = audio
    await session.start(agent=Agent(instructions="Listen."))
    try:
        await asyncio.wait_for(final.wait(), timeout=60)
        await asyncio.sleep(linger)
    finally:
        await session.aclose()
    return events
