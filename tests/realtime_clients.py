"""What the real-time tests share: speech fixtures as the wire formats want them, and one session
of the official openai SDK's realtime client, recorded event by event."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import openai
import soundfile as sf

from speech import FIXTURES
from stt_core import Audio

RATE = 24_000  # audio/pcm
REALTIME_KEY = "sk-realtime-test-0123456789"  # the shared server's (conftest.py)
# two_utterances.wav: good_morning, 1.5 s of silence, begin_meeting
TWO = ["Good morning everyone.", "Let us begin the meeting."]


def speech(*names: str, lead: float = 0.5, gap: float = 1.2) -> Audio:
    """Fixtures one after another as a speaker says them: a little silence first, a pause after each."""
    pieces = [Audio.silence(lead, RATE)]
    for name in names:
        pieces += [Audio.from_file(FIXTURES / f"{name}.wav").to(RATE, 1), Audio.silence(gap, RATE)]
    return Audio.concat(pieces)


def encoded(audio: Audio, fmt: str) -> tuple[bytes, int]:
    """``audio`` in a /v1/realtime format: (bytes, bytes per second)."""
    if fmt == "audio/pcm":
        return audio.to(RATE, 1, "int16").samples.reshape(-1).astype("<i2").tobytes(), 2 * RATE
    out = io.BytesIO()
    sf.write(out, audio.to(8000, 1, "float32").samples.reshape(-1), 8000, format="RAW",
             subtype={"audio/pcmu": "ULAW", "audio/pcma": "ALAW"}[fmt])
    return out.getvalue(), 8000


def ga(c: openai.AsyncOpenAI) -> Any:
    """The SDK's GA realtime client, in transcription mode."""
    return c.realtime.connect(extra_query={"intent": "transcription"})


def ga_update(model: str, *, fmt: str = "audio/pcm", turns: Any = "server_vad", language: str | None = "en"
              ) -> dict[str, Any]:
    audio_format: dict[str, Any] = {"type": fmt, **({"rate": RATE} if fmt == "audio/pcm" else {})}
    turn_detection = {"type": turns} if isinstance(turns, str) else turns
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": audio_format, "transcription": {"model": model, "language": language},
        "turn_detection": turn_detection}}}}


@dataclass
class Heard:
    """A session's events as the client got them, with when."""

    events: list[tuple[float, Any]] = field(default_factory=list)

    def of(self, kind: str) -> list[Any]:
        return [e for _, e in self.events if e.type == kind]

    def when(self, kind: str) -> list[float]:
        return [t for t, e in self.events if e.type == kind]

    @property
    def finals(self) -> list[Any]:
        return self.of("conversation.item.input_audio_transcription.completed")

    def deltas(self, item_id: str) -> str:
        return "".join(e.delta for e in self.of("conversation.item.input_audio_transcription.delta")
                       if e.item_id == item_id)


async def send_audio(conn: Any, data: bytes, per_second: int, *, speed: float, chunk: float = 0.02) -> None:
    """``data`` in ``chunk``-second appends, at ``speed`` times real time (0: at once)."""
    step = max(1, round(per_second * chunk)) // 2 * 2 or 1
    started = time.monotonic()
    for i in range(0, len(data), step):
        await conn.send({"type": "input_audio_buffer.append",
                         "audio": base64.b64encode(data[i:i + step]).decode()})
        if speed:
            await asyncio.sleep(max(0.0, started + (i + step) / per_second / speed - time.monotonic()))


async def record(conn: Any, heard: Heard, *, until: Any) -> None:
    """Events into ``heard`` until ``until(event)`` is true."""
    async for event in conn:
        heard.events.append((time.monotonic(), event))
        if until(event):
            return


def silence_pcm(seconds: float) -> bytes:
    return np.zeros(round(seconds * RATE), dtype="<i2").tobytes()
