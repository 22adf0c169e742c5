"""Transcribing files of any length without holding them whole in memory.

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
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

from ._audio import (
    MIN_AUDIO_SECONDS,
    Audio,
    _check_nonempty_file,
    _first_line,
    av_blocks,
    check_plausible,
    is_stream,
    limits,
    truncation_notes,
)
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
    progress: Callable[[float, float], None] | None = None,
) -> Transcript:
    """Transcribe the audio file at ``path`` with ``engine`` (a provider or a chain).

    ``engine.transcribe(path)`` comes here too, so a path is never decoded whole when it is long.
    ``progress(done, total)`` is called with seconds of audio after each piece of a long file.
    """
    options: dict[str, Any] = {"language": language, "prompt": prompt, "word_timestamps": word_timestamps}
    notes: tuple[str, ...] = ()
    if is_stream(path):  # a pipe: read to its end (within the decoding limits), then cut
        audio = Audio.from_file(path)
        if audio.duration <= piece_seconds:
            return await engine.transcribe(audio, **options)
        pieces, duration = iter(audio.split_at_silences(piece_seconds)), audio.duration
    elif (info := _info(path)) is None:  # a container libsndfile cannot read: PyAV, as it decodes
        pieces, duration = _pieces(av_blocks(path, what=os.fspath(path)), piece_seconds), None
    else:
        _, max_bytes = limits()
        if info.frames <= piece_seconds * info.samplerate and info.frames * info.channels * 4 <= max_bytes:
            return await engine.transcribe(Audio.from_file(path), **options)
        pieces, duration = _pieces(_sndfile_blocks(path, info), piece_seconds), info.frames / info.samplerate
        notes = truncation_notes(info.extra_info, os.fspath(path))
    results: list[tuple[float, Transcript]] = []
    for offset, piece in pieces:
        if piece.duration < MIN_AUDIO_SECONDS and results:
            continue  # a long file's last few samples: too short to hold a word, or to recognise
        results.append((offset, await engine.transcribe(piece, **options)))
        if progress is not None:
            progress(offset + piece.duration, duration or offset + piece.duration)
    if not results:
        raise InvalidAudioError(f"{os.fspath(path)} has no audio samples")
    if len(results) == 1:  # one piece (a short file in another container, a truncated one): as it came
        result = results[0][1]
    else:
        end = results[-1][0] + (results[-1][1].duration or 0.0)
        result = Transcript.joined(results, duration if duration is not None else end)
    return result.replace(metadata={**result.metadata, "warnings": list(notes)}) if notes else result


def _info(path: str | os.PathLike[str]) -> sf._SoundFileInfo | None:
    _check_nonempty_file(path)
    name = os.fspath(path)
    try:
        info = sf.info(name)
    except OSError as e:  # gone or unreadable since the check
        raise InvalidAudioError(f"cannot read {name!r}: {e.strerror}") from e
    except Exception as e:  # libsndfile's own errors for unreadable data
        if "Format not recognised" in str(e):
            return None  # another container (m4a, WebM ...): decoded whole, through PyAV
        raise InvalidAudioError(f"cannot decode {name}: {_first_line(e)}") from e
    if info.frames <= 0:
        raise InvalidAudioError(f"{name} has no audio samples (only a header)")
    check_plausible(info.frames, info.samplerate, info.channels, what=name, whole=False)
    return info


def _sndfile_blocks(
    path: str | os.PathLike[str], info: sf._SoundFileInfo
) -> Iterator[npt.NDArray[np.float32]]:
    """The file as 16 kHz mono blocks, read by libsndfile and resampled (soxr's streaming
    resampler, so block edges leave no seams) as they come."""
    resampler = soxr.ResampleStream(info.samplerate, PIECE_RATE, 1, dtype="float32")
    # 30 s blocks, fewer seconds for wide files, so one block never passes _BLOCK_BYTES decoded.
    block = max(1, min(int(_BLOCK_SECONDS * info.samplerate), _BLOCK_BYTES // (4 * info.channels)))
    try:
        with sf.SoundFile(os.fspath(path)) as f:
            for chunk in f.blocks(blocksize=block, dtype="float32", always_2d=True):
                mono = Audio(chunk, info.samplerate).mono_float32()  # validates (NaN, inf) per block
                yield resampler.resample_chunk(mono)
    except sf.LibsndfileError as e:
        raise InvalidAudioError(f"cannot decode {os.fspath(path)}: {_first_line(e)}") from e
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
