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
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from ._audio import Audio, _check_nonempty_file, _first_line, check_plausible, limits
from ._errors import InvalidAudioError
from ._provider import Provider
from ._types import Transcript

PIECE_RATE = 16_000  # every engine takes 16 kHz; converting early keeps pieces small
_BLOCK_SECONDS = 30.0
_BLOCK_BYTES = 64 * 2**20


async def transcribe_file(
    engine: Provider,
    path: str | os.PathLike[str],
    *,
    language: str | None = None,
    prompt: str | None = None,
    word_timestamps: bool = False,
    piece_seconds: float = 300.0,
) -> Transcript:
    """Transcribe the audio file at ``path`` with ``engine`` (a provider or a chain).

    ``engine.transcribe(path)`` comes here too, so a path is never decoded whole when it is long.
    """
    info = _info(path)
    options: dict[str, Any] = {"language": language, "prompt": prompt, "word_timestamps": word_timestamps}
    _, max_bytes = limits()
    if info.frames <= piece_seconds * info.samplerate and info.frames * info.channels * 4 <= max_bytes:
        return await engine.transcribe(Audio.from_file(path), **options)
    results: list[tuple[float, Transcript]] = []
    for offset, piece in _pieces(path, info, piece_seconds):
        results.append((offset, await engine.transcribe(piece, **options)))
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
    check_plausible(info.frames, info.samplerate, info.channels, what=name, whole=False)
    return info


def _pieces(
    path: str | os.PathLike[str], info: sf._SoundFileInfo, piece_seconds: float
) -> Iterator[tuple[float, Audio]]:
    """(start second, 16 kHz mono piece) pairs, each cut at a pause near ``piece_seconds``."""
    resampler = soxr.ResampleStream(info.samplerate, PIECE_RATE, 1, dtype="float32")
    pending = np.zeros(0, dtype=np.float32)
    emitted = 0  # samples (at PIECE_RATE) already handed out
    # 30 s blocks, fewer seconds for wide files, so one block never passes _BLOCK_BYTES decoded.
    block = max(1, min(int(_BLOCK_SECONDS * info.samplerate), _BLOCK_BYTES // (4 * info.channels)))
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

