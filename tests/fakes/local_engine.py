"""The far end of a real-time stream's tests: a local engine as the stream sees one.

It serves one call at a time (a CPU), takes ``per_second`` seconds per second of audio (slept, so
what a test measures is the stream's behaviour, not this machine's speed or load), and answers
with the names of the fixture clips the audio holds, found by where its samples lie in the
conversation that was streamed (the stream passes 16 kHz float32 samples through unchanged). It
fails, hangs, or raises ``CancelledError`` of its own (as a call into a shut-down worker pool can), on
the clips it is told to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from stt_core import Audio, Capabilities, ProviderError, Transcript
from stt_core.testing import FakeProvider

_NEEDLE = 64  # samples matched exactly to place a call's audio in the conversation


class LocalEngine(FakeProvider):
    capabilities = Capabilities(offline=True)

    def __init__(self, conversation: Audio, spans: dict[str, tuple[float, float]], *, name: str = "local",
                 per_second: float = 0.0, fails: Sequence[str] = (), fails_once: Sequence[str] = (),
                 hangs: Sequence[str] = (), cancels: Sequence[str] = (), **fields: Any) -> None:
        super().__init__(name=name, **fields)
        self.samples = conversation.mono_float32(16_000)
        self.rate = 16_000
        self.spans, self.per_second = spans, per_second
        self.fails, self.fails_once, self.hangs = set(fails), set(fails_once), set(hangs)
        self.cancels = set(cancels)
        self.turn = asyncio.Lock()
        self.waiting = 0  # calls made and not yet answered
        self.most_waiting = 0
        self.heard: list[tuple[float, float, tuple[str, ...]]] = []  # (start, seconds, clips) per call

    async def _transcribe(self, audio: Audio, *, language: str | None, prompt: str | None,
                          word_timestamps: bool) -> Transcript:
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        try:
            async with self.turn:
                start = self.where(audio)
                clips = self.clips(start, audio.duration)
                self.heard.append((start, audio.duration, clips))
                await asyncio.sleep(self.per_second * audio.duration)
                if self.hangs & set(clips):
                    await asyncio.sleep(3600)
                if self.cancels & set(clips):
                    raise asyncio.CancelledError
                if self.fails & set(clips) or self.fails_once & set(clips):
                    self.fails_once -= set(clips)
                    raise ProviderError(f"{self.name} crashed on {', '.join(clips)}", provider=self.name,
                                        retryable=True)
                return Transcript(" ".join(clips), language="en", confidence=self.confidence)
        finally:
            self.waiting -= 1

    def where(self, audio: Audio) -> float:
        """Seconds into the conversation where ``audio`` starts (it is an exact copy of a stretch)."""
        x = audio.mono_float32(self.rate)
        loud = np.flatnonzero(np.abs(x) > 1e-3)
        if not len(loud) or loud[0] + _NEEDLE > len(x):
            return -1.0  # silence: it holds no clip
        first = int(loud[0])
        needle = x[first:first + _NEEDLE]
        for at in np.flatnonzero(self.samples == needle[0]):
            if np.array_equal(self.samples[at:at + _NEEDLE], needle):
                return float(at - first) / self.rate
        raise AssertionError("the engine was sent audio that is not in the conversation")

    def clips(self, start: float, seconds: float) -> tuple[str, ...]:
        """The clips that ``[start, start + seconds)`` overlaps by more than 0.1 s."""
        if start < 0:
            return ()
        return tuple(name for name, (a, b) in self.spans.items()
                     if min(b, start + seconds) - max(a, start) > 0.1)

    @property
    def recognised(self) -> float:
        """Seconds of audio recognised, over every call."""
        return sum(seconds for _, seconds, _ in self.heard)
