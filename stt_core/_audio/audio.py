"""Decoded audio: PCM samples with their sample rate, made from files, bytes or arrays (files and
bytes are decoded by ``decode``, within its limits); resampling is soxr's.

Every way of making an ``Audio`` ends in one validation, so a bad input fails here with an
``InvalidAudioError`` that names the problem, before any engine sees it.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from .._errors import InvalidAudioError
from . import decode
from .decode import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

SampleFormat = Literal["int16", "float32"]
_INT16_SCALE = 32768.0
logger = logging.getLogger("stt_core.audio")


class Audio:
    """PCM samples shaped ``(frames, channels)``, int16 or float32, at ``sample_rate`` Hz."""

    __slots__ = ("_sample_rate", "_samples", "notes")

    def __init__(self, samples: npt.ArrayLike, sample_rate: int, *, notes: tuple[str, ...] = ()) -> None:
        array = np.asarray(samples)
        if array.ndim == 1:
            array = array[:, np.newaxis]
        if array.ndim != 2:
            raise InvalidAudioError(f"audio array must be 1-D or 2-D, got {array.ndim}-D")
        if array.dtype == np.int16:
            pass
        elif np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float32, copy=False)
            if not np.isfinite(array).all():
                raise InvalidAudioError("audio contains NaN or infinite samples")
        else:
            raise InvalidAudioError(f"unsupported sample type {array.dtype} (use int16 or float)")
        if (not isinstance(sample_rate, int | np.integer)
                or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE):
            raise InvalidAudioError(
                f"sample rate {sample_rate!r} Hz is not valid ({MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)"
            )
        if array.shape[1] == 0:
            raise InvalidAudioError("audio has no channels")
        self._samples = array
        self._sample_rate = int(sample_rate)
        self.notes = notes
        """What the caller should know about where this audio came from (a truncated file)."""

    # -- making -----------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Audio:
        """Decode an audio file (WAV, FLAC, OGG, MP3 ...; m4a, AAC, WebM and others with PyAV).

        A pipe (``-`` in the CLI, ``/dev/stdin``, a FIFO) is read to its end, up to the limits."""
        if decode.is_stream(path):
            return cls.from_bytes(decode.read_stream(path))
        decode.check_nonempty_file(path)
        with open(path, "rb") as f:
            samples, rate, notes = decode.decode(f, what=os.fspath(path))
        return cls(samples, rate, notes=notes)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        sample_rate: int | None = None,
        channels: int = 1,
        sample_format: SampleFormat = "int16",
    ) -> Audio:
        """Decode a file held in memory, or, when ``sample_rate`` is given, raw interleaved PCM."""
        if not data:
            raise InvalidAudioError("audio is empty (no bytes)")
        if sample_rate is None:
            samples, rate, notes = decode.decode(io.BytesIO(data), what="audio bytes")
            return cls(samples, rate, notes=notes)
        if channels < 1:
            raise InvalidAudioError(f"channel count must be at least 1, got {channels}")
        dtype = np.dtype(np.int16 if sample_format == "int16" else np.float32)
        frame_bytes = dtype.itemsize * channels
        if len(data) % frame_bytes:
            raise InvalidAudioError(
                f"raw PCM is {len(data)} bytes, not a whole number of {sample_format} "
                f"frames of {channels} channel(s)"
            )
        samples = np.frombuffer(data, dtype=dtype).reshape(-1, channels)
        return cls(samples, sample_rate)._nonempty()

    @classmethod
    def from_numpy(cls, samples: npt.ArrayLike, sample_rate: int) -> Audio:
        """Wrap an array: 1-D mono, or 2-D ``(frames, channels)``; int16 or float."""
        return cls(samples, sample_rate)._nonempty()

    @classmethod
    def silence(cls, seconds: float, sample_rate: int = 16_000) -> Audio:
        return cls(np.zeros(round(seconds * sample_rate), dtype=np.float32), sample_rate)

    @classmethod
    def concat(cls, pieces: Sequence[Audio]) -> Audio:
        """Join pieces end to end; they are brought to the first piece's rate, channels, type."""
        if not pieces:
            raise InvalidAudioError("audio is empty (nothing to join)")
        first = pieces[0]
        same = [p.to(first.sample_rate, first.channels, first.sample_format) for p in pieces]
        return cls(np.concatenate([p.samples for p in same]), first.sample_rate)

    def _nonempty(self) -> Audio:
        if self.num_frames == 0:
            raise InvalidAudioError("audio is empty (no samples)")
        return self

    # -- reading ----------------------------------------------------------------------------

    @property
    def samples(self) -> npt.NDArray[np.float32] | npt.NDArray[np.int16]:
        return self._samples

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def channels(self) -> int:
        return int(self._samples.shape[1])

    @property
    def num_frames(self) -> int:
        return int(self._samples.shape[0])

    @property
    def sample_format(self) -> SampleFormat:
        return "int16" if self._samples.dtype == np.int16 else "float32"

    @property
    def duration(self) -> float:
        return self.num_frames / self._sample_rate

    def __repr__(self) -> str:
        return (
            f"Audio({self.duration:.3f}s, {self.sample_rate} Hz, {self.channels} ch, "
            f"{self.sample_format})"
        )

    # -- converting -------------------------------------------------------------------------

    def to(
        self,
        sample_rate: int | None = None,
        channels: int | None = None,
        sample_format: SampleFormat | None = None,
    ) -> Audio:
        """This audio resampled (soxr), down- or up-mixed, and in another sample type."""
        rate = sample_rate or self.sample_rate
        n_channels = channels or self.channels
        fmt = sample_format or self.sample_format
        if (rate, n_channels, fmt) == (self.sample_rate, self.channels, self.sample_format):
            return self
        data = self.float32()
        if n_channels != self.channels:
            if n_channels == 1:
                data = data.mean(axis=1, keepdims=True, dtype=np.float32)
            elif self.channels == 1:
                data = np.repeat(data, n_channels, axis=1)
            else:
                raise InvalidAudioError(
                    f"cannot mix {self.channels} channels into {n_channels}; mix to 1 first"
                )
        if rate != self.sample_rate:
            if not 0 < rate <= MAX_SAMPLE_RATE:
                raise InvalidAudioError(f"cannot resample to {rate} Hz")
            data = soxr.resample(data, self.sample_rate, rate, quality="HQ").astype(
                np.float32, copy=False
            )
            if data.ndim == 1:
                data = data[:, np.newaxis]
        if fmt == "int16":
            return Audio(_float_to_int16(data), rate)
        return Audio(data, rate)

    def float32(self) -> npt.NDArray[np.float32]:
        """Samples as float32 in [-1, 1], shaped ``(frames, channels)``."""
        if self._samples.dtype == np.int16:
            return (self._samples.astype(np.float32) / _INT16_SCALE).astype(np.float32)
        return self._samples

    def mono_float32(self, sample_rate: int | None = None) -> npt.NDArray[np.float32]:
        """A 1-D float32 array of the mono mix, at ``sample_rate`` if given: what most models eat."""
        return self.to(sample_rate, 1, "float32").samples[:, 0]  # type: ignore[return-value]

    def pcm_bytes(self, sample_format: SampleFormat = "int16") -> bytes:
        """Raw interleaved little-endian PCM."""
        return self.to(sample_format=sample_format).samples.astype(
            "<i2" if sample_format == "int16" else "<f4", copy=False
        ).tobytes()

    def encode(self, format: Literal["WAV", "FLAC"] = "WAV") -> bytes:
        """The audio as a complete 16-bit file in memory."""
        out = io.BytesIO()
        sf.write(out, self.to(sample_format="int16").samples, self.sample_rate,
                 format=format, subtype="PCM_16")
        return out.getvalue()

    def slice(self, start: float = 0.0, end: float | None = None) -> Audio:
        """The part between ``start`` and ``end`` seconds (may be empty)."""
        first = max(0, round(start * self.sample_rate))
        last = self.num_frames if end is None else min(self.num_frames, round(end * self.sample_rate))
        return Audio(self._samples[first:max(first, last)], self.sample_rate)

    def split_at_silences(self, max_duration: float) -> list[tuple[float, Audio]]:
        """Pieces of at most ``max_duration`` seconds, each ``(start, audio)``, cut in the middle of
        the quietest half second in the second half of each piece, so words are not cut in half
        where there is a pause to cut at, and the longest pause wins over a comma's (in digital
        silence every 100 ms of a pause tied, and the first, often a comma's, was taken)."""
        if max_duration <= 0:
            raise ValueError("max_duration must be positive")
        longest = max(1, int(max_duration * self.sample_rate))
        window = max(1, min(self.sample_rate // 2, longest // 4))
        mono = np.abs(self.mono_float32())
        pieces: list[tuple[float, Audio]] = []
        start = 0
        while self.num_frames - start > longest:
            search_from = start + max(window, longest // 2)
            stop = start + longest
            # Summed level of each half-second window starting in [search_from, stop - window]
            # (a running sum: linear in the length, however long the pieces).
            running = np.concatenate(([0.0], np.cumsum(mono[search_from:stop], dtype=np.float64)))
            levels = running[window:] - running[:-window]
            cut = search_from + int(np.argmin(levels)) + window // 2 if levels.size else stop
            pieces.append((start / self.sample_rate, Audio(self._samples[start:cut], self.sample_rate)))
            start = cut
        pieces.append((start / self.sample_rate, Audio(self._samples[start:], self.sample_rate)))
        return pieces


def _float_to_int16(data: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    return np.clip(np.round(data * _INT16_SCALE), -32768, 32767).astype(np.int16)


AudioSource = Audio | str | os.PathLike[str] | bytes


def as_audio(source: AudioSource) -> Audio:
    """An ``Audio`` from what callers hand us: an ``Audio``, a file path, or a file's bytes."""
    if isinstance(source, Audio):
        return source
    if isinstance(source, bytes):
        return Audio.from_bytes(source)
    if isinstance(source, str | os.PathLike):
        return Audio.from_file(source)
    raise InvalidAudioError(f"cannot make audio from {type(source).__name__}")
