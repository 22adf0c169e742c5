"""Transcribing files of any length without holding them whole in memory.

A file up to ``piece_seconds`` long is decoded and sent as one request. A longer one is read
in blocks, downmixed and resampled to 16 kHz mono as it streams (soxr's streaming resampler, so
block edges leave no seams), cut at a pause near every ``piece_seconds``, and sent piece by
piece; the pieces' transcripts are joined with their times shifted. Memory stays at a few
pieces of 16 kHz mono audio whatever the file's length, rate or channel count.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import soundfile as sf
import soxr

from ._audio import Audio, _check_nonempty_file, _first_line
from ._errors import InvalidAudioError
from ._provider import Provider
from ._types import Transcript

PIECE_RATE = 16_000  # every engine takes 16 kHz; converting early keeps pieces small
_BLOCK_SECONDS = 30.0


async def transcribe_file(
    engine: Provider,
    path: str | os.PathLike[str],
    *,
    language: str | None = None,
    piece_seconds: float = 300.0,
) -> Transcript:
    """Transcribe the audio file at ``path`` with ``engine`` (a provider or a chain)."""
    info = _info(path)
    if info.frames <= piece_seconds * info.samplerate:
        return await engine.transcribe(Audio.from_file(path), language=language)
    results: list[tuple[float, Transcript]] = []
    for offset, piece in _pieces(path, info, piece_seconds):
        results.append((offset, await engine.transcribe(piece, language=language)))
    return Transcript.joined(results, info.frames / info.samplerate)


def _info(path: str | os.PathLike[str]) -> sf._SoundFileInfo:
    _check_nonempty_file(path)
    name = os.fspath(path)
    try:
        info = sf.info(name)
    except OSError as e:  # gone or unreadable since the check
        raise InvalidAudioError(f"cannot read {name!r}: {e.strerror}") from e
    except Exception as e:  # libsndfile's own errors for unreadable data
        raise InvalidAudioError(f"cannot decode {name}: {_first_line(e)}") from e
    if info.frames <= 0:
        raise InvalidAudioError(f"{name} has no audio samples (only a header)")
    return info


def _pieces(
    path: str | os.PathLike[str], info: sf._SoundFileInfo, piece_seconds: float
) -> Iterator[tuple[float, Audio]]:
    """(start second, 16 kHz mono piece) pairs, each cut at a pause near ``piece_seconds``."""
    resampler = soxr.ResampleStream(info.samplerate, PIECE_RATE, 1, dtype="float32")
    pending = np.zeros(0, dtype=np.float32)
    emitted = 0  # samples (at PIECE_RATE) already handed out
    block = max(1, int(_BLOCK_SECONDS * info.samplerate))
    piece = int(piece_seconds * PIECE_RATE)
    try:
        with sf.SoundFile(os.fspath(path)) as f:
            for chunk in f.blocks(blocksize=block, dtype="float32", always_2d=True):
                mono = Audio(chunk, info.samplerate).mono_float32()  # validates (NaN, inf) per block
                pending = np.concatenate([pending, resampler.resample_chunk(mono)])
                while len(pending) > piece:  # more than a piece: cut one off, at a pause
                    first = Audio(pending[: piece + 1], PIECE_RATE).split_at_silences(piece_seconds)[0][1]
                    yield emitted / PIECE_RATE, first
                    emitted += first.num_frames
                    pending = pending[first.num_frames:].copy()  # let the sent piece's buffer go
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            pending = np.concatenate([pending, tail])
    except sf.LibsndfileError as e:
        raise InvalidAudioError(f"cannot decode {os.fspath(path)}: {_first_line(e)}") from e
    for start, rest in Audio(pending, PIECE_RATE).split_at_silences(piece_seconds):
        yield (emitted / PIECE_RATE) + start, rest

