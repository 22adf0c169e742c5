"""Live audio of any rate, channel count and chunk size as the VAD's frames (FRAME samples of
16 kHz mono float32), at about the same cost per second of audio whatever the chunk size."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import soxr

from .._audio.audio import Audio
from .._audio.vad import FRAME, RATE

_HOLD_LOOP = 0.02  # seconds of work before the feed lets the loop run others (recognitions' results)


class Frames:
    """Chunks in, whole frames out; what is left over waits for the next chunk."""

    def __init__(self) -> None:
        self._rate = 0
        self._resampler: soxr.ResampleStream | None = None
        self._waiting: list[np.ndarray] = []  # samples at 16 kHz not yet a whole frame
        self._count = 0
        self._since = time.perf_counter()
        self._made = False  # a frame came out since the loop last ran others

    def push(self, chunk: Audio) -> Iterator[np.ndarray]:
        if chunk.sample_rate != self._rate:
            # A new rate: the old resampler's buffered tail first (it would be lost), then a
            # resampler of its own (stateful: no clicks between chunks).
            self._add(self._flush_resampler())
            self._rate = chunk.sample_rate
            self._resampler = None if self._rate == RATE else soxr.ResampleStream(self._rate, RATE, 1,
                                                                                  dtype="float32")
        mono = _mono_float32(chunk)
        self._add(mono if self._resampler is None else self._resampler.resample_chunk(mono))
        return self._whole_frames()

    def flush(self) -> Iterator[np.ndarray]:
        """The input ended: the resampler's tail, and the last partial frame padded with silence."""
        self._add(self._flush_resampler())
        if self._count:
            self._add(np.zeros(FRAME - self._count % FRAME, dtype=np.float32))
        return self._whole_frames()

    async def breathe(self, *, every_chunk: bool = False) -> None:
        """Let the loop run others when this feed has held it for a while (a 10-minute chunk is
        cut into turns of about 20 ms), and once per chunk that made a frame."""
        now = time.perf_counter()
        if now - self._since >= _HOLD_LOOP or (every_chunk and self._made):
            self._since, self._made = now, False
            await asyncio.sleep(0)

    def _add(self, samples: np.ndarray) -> None:
        if len(samples):
            self._waiting.append(samples)
            self._count += len(samples)

    def _whole_frames(self) -> Iterator[np.ndarray]:
        if self._count < FRAME:
            return
        samples = np.concatenate(self._waiting) if len(self._waiting) > 1 else self._waiting[0]
        whole = len(samples) // FRAME * FRAME
        rest = samples[whole:]
        self._waiting, self._count = ([rest] if len(rest) else []), len(rest)
        self._made = True
        for i in range(0, whole, FRAME):
            yield samples[i:i + FRAME]

    def _flush_resampler(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, dtype=np.float32)
        tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._resampler = None
        return np.asarray(tail, dtype=np.float32)


def _mono_float32(chunk: Audio) -> np.ndarray:
    """The chunk's samples as 1-D float32, mixed to mono, at its own rate (cheap for the usual
    int16 or float32 mono chunk: no ``Audio`` is made)."""
    samples = chunk.samples
    if samples.shape[1] > 1:
        return chunk.to(channels=1, sample_format="float32").samples[:, 0]
    if samples.dtype == np.int16:
        return samples[:, 0].astype(np.float32) / 32768.0
    return samples[:, 0]
