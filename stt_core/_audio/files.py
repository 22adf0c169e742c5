"""Files of any length as audio pieces, without holding them whole in memory.

A file up to ``piece_seconds`` long is decoded and sent as one request. A longer one is read
in blocks, downmixed and resampled to 16 kHz mono as it streams (soxr's streaming resampler, so
block edges leave no seams), cut at a pause near every ``piece_seconds``, and sent piece by
piece; the pieces' transcripts are joined with their times shifted. Memory stays at a few
pieces of 16 kHz mono audio whatever the file's length, rate or channel count. A container
libsndfile cannot read is decoded by PyAV, block by block, to 16 kHz mono and cut the same way;
a pipe is read to its end first (within the decoding limits). A truncated file is transcribed as
far as it goes, with a warning.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soxr

from . import decode
from .audio import Audio

PIECE_RATE = 16_000  # every engine takes 16 kHz; converting early keeps pieces small


@dataclass(frozen=True)
class FilePieces:
    """A file as the requests it goes in: ``whole`` when it fits one request, else ``pieces``,
    (start second, 16 kHz mono audio) pairs read as they are needed."""

    whole: Audio | None
    pieces: Iterator[tuple[float, Audio]]
    duration: float | None
    """Seconds, where the file says (PyAV's containers are known only once decoded)."""
    notes: tuple[str, ...] = ()
    """What the caller should know (a truncated file)."""


def file_pieces(path: str | os.PathLike[str], piece_seconds: float) -> FilePieces:
    """The audio file at ``path`` as one request's audio or as pieces of about ``piece_seconds``,
    so that a long file is never decoded whole."""
    if decode.is_stream(path):  # a pipe: read to its end (within the decoding limits), then cut
        audio = Audio.from_file(path)
        if audio.duration <= piece_seconds:
            return FilePieces(audio, iter(()), audio.duration)
        return FilePieces(None, iter(audio.split_at_silences(piece_seconds)), audio.duration)
    if (info := decode.info(path)) is None:  # a container libsndfile cannot read: PyAV, as it decodes
        return FilePieces(None, _pieces(decode.av_blocks(path, what=os.fspath(path)), piece_seconds), None)
    _, max_bytes = decode.limits()
    if info.frames <= piece_seconds * info.samplerate and info.frames * info.channels * 4 <= max_bytes:
        audio = Audio.from_file(path)
        return FilePieces(audio, iter(()), audio.duration)
    blocks = _mono_16k(decode.sndfile_blocks(path, info), info.samplerate)
    return FilePieces(None, _pieces(blocks, piece_seconds), info.frames / info.samplerate,
                      decode.truncation_notes(info.extra_info, os.fspath(path)))


def _mono_16k(blocks: Iterator[npt.NDArray[np.float32]], rate: int) -> Iterator[npt.NDArray[np.float32]]:
    """Blocks as 16 kHz mono, resampled as they come (soxr's streaming resampler, so block edges
    leave no seams)."""
    resampler = soxr.ResampleStream(rate, PIECE_RATE, 1, dtype="float32")
    for block in blocks:
        yield resampler.resample_chunk(Audio(block, rate).mono_float32())  # validates (NaN, inf) per block
    yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def _pieces(blocks: Iterator[npt.NDArray[np.float32]], piece_seconds: float) -> Iterator[tuple[float, Audio]]:
    """(start second, 16 kHz mono piece) pairs from 16 kHz mono blocks, each cut at a pause near
    ``piece_seconds``; only the audio not yet handed out is held."""
    pending = np.zeros(0, dtype=np.float32)
    emitted = 0  # samples (at PIECE_RATE) already handed out
    piece = int(piece_seconds * PIECE_RATE)
    for block in blocks:
        pending = np.concatenate([pending, block])
        while len(pending) > piece:  # more than a piece: cut one off, at a pause
            first = Audio(pending[: piece + 1], PIECE_RATE).split_at_silences(piece_seconds)[0][1]
            yield emitted / PIECE_RATE, first
            emitted += first.num_frames
            pending = pending[first.num_frames:].copy()  # let the sent piece's buffer go
    if len(pending):
        for start, rest in Audio(pending, PIECE_RATE).split_at_silences(piece_seconds):
            yield (emitted / PIECE_RATE) + start, rest
