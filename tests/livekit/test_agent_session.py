"""Offline end to end: a real LiveKit AgentSession, no room, no LLM, no server, with our STT and
Silero VAD, fed fixture speech through a custom AudioInput."""

from __future__ import annotations

import asyncio

from livekit import rtc
from livekit.agents import Agent, AgentSession, UserInputTranscribedEvent
from livekit.agents.voice import io
from livekit.plugins import silero

import stt_core
from speech import FIXTURES, MAX_WER, wer
from stt_core import Audio
from stt_core_livekit import STT, audio_to_frames

RATE = 48_000


class FixtureAudio(io.AudioInput):
    """Room-like input: 48 kHz mono 20 ms frames of silence, the speech, then silence for ever."""

    def __init__(self, speech: Audio) -> None:
        super().__init__(label="fixture")
        audio = Audio.concat([Audio.silence(1.0, RATE), speech.to(sample_rate=RATE, channels=1),
                              Audio.silence(3.0, RATE)])
        self._frames = iter(audio_to_frames(audio, frame_ms=20))
        self._silence = audio_to_frames(Audio.silence(0.02, RATE))[0]

    async def __anext__(self) -> rtc.AudioFrame:
        await asyncio.sleep(0.005)  # four times real time
        return next(self._frames, self._silence)


async def test_agent_session_emits_the_users_words() -> None:
    whisper = stt_core.registry().create("whisper")
    session = AgentSession(stt=STT(whisper), vad=silero.VAD.load(), turn_handling={"turn_detection": "stt"})
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
