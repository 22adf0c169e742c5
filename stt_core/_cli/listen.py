"""``stt-core listen FILE|-``: audio through the chain in real time (``stt_core.realtime``).

A file is read and pushed at the speed it would be spoken (``--speed``); ``-`` reads raw PCM from
stdin as it arrives (16-bit little-endian, ``--rate`` Hz, ``--channels``: what ``arecord -f S16_LE``
writes). On a terminal the interim transcript is one line, rewritten as it changes, and each final
is printed on a line of its own; ``--format json`` prints every event, one object per line.

stderr says what it is doing: loading the engines (a local model can take seconds on a slow CPU),
then listening. On a terminal the live line marks speech as soon as the VAD hears it, and interims
are dim (they will change); finals are printed plain.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from .._audio.audio import Audio
from .._chain.chain import Chain
from .._errors import InvalidAudioError
from .._realtime import RealtimeSettings, realtime
from .._types import StreamEvent
from .remote import listen_remote
from .terminal import err, one_line, out

CHUNK_SECONDS = 0.02  # what a microphone delivers at a time


async def paced(audio: Audio, speed: float) -> AsyncIterator[Audio]:
    """``audio`` in CHUNK_SECONDS pieces, each when it would have been spoken (``speed`` times
    real time; 0: at once)."""
    started = time.monotonic()
    at = 0.0
    while at < audio.duration:
        if speed > 0:
            await asyncio.sleep(max(0.0, started + at / speed - time.monotonic()))
        yield audio.slice(at, at + CHUNK_SECONDS)
        at += CHUNK_SECONDS


async def pcm(stream: BinaryIO, rate: int, channels: int) -> AsyncIterator[Audio]:
    """Raw 16-bit PCM from a pipe, as it arrives."""
    frame = 2 * channels
    want = round(rate * CHUNK_SECONDS) * frame
    left, first = b"", True
    while data := await asyncio.to_thread(stream.read1 if hasattr(stream, "read1") else stream.read, want):
        if first and data.startswith(b"RIFF") and data[8:12] == b"WAVE":  # its header would be heard as noise
            raise InvalidAudioError("stdin holds a WAV file, and `listen -` reads raw 16-bit PCM (--rate, "
                                    "--channels): give the file's path instead")
        data, left, first = left + data, b"", False
        whole = len(data) // frame * frame
        data, left = data[:whole], data[whole:]
        if data:
            yield Audio.from_bytes(data, sample_rate=rate, channels=channels)


def source_audio(source: str, *, speed: float, rate: int, channels: int) -> AsyncIterator[Audio]:
    if source == "-":
        return pcm(sys.stdin.buffer, rate, channels)
    return paced(Audio.from_file(Path(source)), speed)


async def listen(chain: Chain, source: str, *, speed: float, rate: int, channels: int, fmt: str,
                 language: str | None, settings: RealtimeSettings) -> int:
    audio = source_audio(source, speed=speed, rate=rate, channels=channels)
    shown = _Shown(json_lines=fmt == "json")
    heard = "stdin" if source == "-" else Path(source).name
    pace = f"raw PCM, {rate} Hz, {channels} channel(s)" if source == "-" else \
        "at once" if speed == 0 else f"at {speed:g}x real time"
    async with chain:
        err.print(f"stt-core listen: loading {chain.model} ...", markup=False)
        await chain.warmup()  # before the audio starts: the first words do not wait for a model
        err.print(f"listening to {heard} ({pace}) through {chain.model}; Ctrl+C stops", markup=False)
        try:
            async for event in realtime(chain, audio, language=language, settings=settings):
                shown.event(event)
        finally:
            shown.done()
    return 1 if shown.failed else 0  # an utterance no engine transcribed, as remote listening says


async def listen_url(url: str, source: str, *, speed: float, rate: int, channels: int, fmt: str,
                     language: str | None, model: str | None, settings: RealtimeSettings,
                     key: str | None) -> int:
    """The same, through the ``/v1/realtime`` of a ``stt-core serve`` at ``url`` (``remote``)."""
    audio = source_audio(source, speed=speed, rate=rate, channels=channels)
    shown = _Shown(json_lines=fmt == "json")
    try:
        return await listen_remote(url, audio, shown, model=model, language=language, settings=settings,
                                   key=key)
    finally:
        shown.done()


class _Shown:
    """Events on stdout: the interim on one line on a terminal, finals on lines of their own."""

    def __init__(self, *, json_lines: bool) -> None:
        self.json_lines = json_lines
        self.live = out.is_terminal and not json_lines
        self._interim = False
        self.failed = 0  # utterances no engine transcribed

    def event(self, event: StreamEvent) -> None:
        self.failed += event.type == "failed"
        if self.json_lines:
            fields = {"type": event.type, "text": event.text, "start": _ms(event.start),
                      "end": _ms(event.end), "language": event.language, "confidence": event.confidence,
                      "provider": event.provider or None}
            if event.error is not None:
                fields["error"] = one_line(str(event.error))
            print(json.dumps(fields), flush=True)
            return
        if event.type == "speech_start" and self.live:
            self._live(f"{_SPEAKING} speech ...")
        elif event.type in ("interim", "preflight") and self.live and event.text:
            self._live(f"{_SPEAKING} {one_line(event.text)}")
        elif event.type == "final":
            self._clear()
            print(event.text, flush=True)
        elif event.type == "failed":  # that utterance only: listening goes on
            self._clear()
            err.print(f"({event.start or 0:.1f}-{event.end or 0:.1f} s not transcribed: "
                      f"{one_line(str(event.error))})", markup=False)

    def _live(self, text: str) -> None:
        """``text`` on the live line, dim: it is not what was said yet, only what is heard so far."""
        self._clear()
        out.file.write(f"{_DIM}{text[: max(10, out.width - 1)]}{_PLAIN}")
        out.file.flush()
        self._interim = True

    def _clear(self) -> None:
        if self._interim:
            out.file.write("\r\x1b[2K")
            self._interim = False

    def done(self) -> None:
        self._clear()


_DIM, _PLAIN = "\x1b[2m", "\x1b[0m"
_SPEAKING = "\u25cf"  # a dot on the live line while someone speaks


def _ms(seconds: float | None) -> float | None:
    """Times in JSON to the millisecond (sums of 20 ms chunks print as 7.390000000000001)."""
    return None if seconds is None else round(seconds, 3)


def check_pcm_options(rate: int, channels: int) -> None:
    if not 8_000 <= rate <= 384_000:
        raise InvalidAudioError(f"--rate {rate}: give the PCM's sample rate in Hz (8000 to 384000)")
    if not 1 <= channels <= 8:
        raise InvalidAudioError(f"--channels {channels}: give 1 to 8")
