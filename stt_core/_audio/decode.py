"""Decoding, in one place: audio files and bytes as samples, within the limits on what one request
may decode, and long files as blocks for ``files`` to cut.

Decoding is soundfile's (libsndfile: WAV, FLAC, OGG/Vorbis, Opus, MP3), and PyAV's (FFmpeg) for
the containers libsndfile does not read (m4a/AAC, WebM, MP4 audio) where it is installed (it comes
with faster-whisper). A bad input fails here with an ``InvalidAudioError`` that names the problem.

What one request may decode into memory is bounded, since a tiny file can claim hours (a header
rate of 1 Hz) or gigabytes (a sparse WAV): ``STT_MAX_AUDIO_SECONDS`` (default 4 hours) is the
longest audio accepted at all, and ``STT_MAX_DECODED_MB`` (default 1024) the most decoded at once;
longer files given by path are read in blocks instead (``files``, ``transcribe_file``).
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import re
import stat
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf

from .._errors import ConfigError, InvalidAudioError
from .._text import first_line

MAX_SAMPLE_RATE = 384_000  # the highest rate real audio hardware uses; above it is a bad header
MIN_SAMPLE_RATE = 2_000  # below any speech codec's (8 kHz telephony): a lower rate is a bad header
# Shorter audio holds no word, and engines fail on it (SenseVoice's front end needs one 25 ms
# window; whisper pads it to noise): bad audio before any engine, or batch, sees it.
MIN_AUDIO_SECONDS = 0.03
MAX_AUDIO_SECONDS_ENV, MAX_DECODED_MB_ENV = "STT_MAX_AUDIO_SECONDS", "STT_MAX_DECODED_MB"
_DEFAULT_MAX_AUDIO_SECONDS, _DEFAULT_MAX_DECODED_MB = 4 * 3600.0, 1024.0
DECODE_RATE = 16_000  # what other containers are decoded to: the rate every engine takes
_BLOCK_SECONDS = 30.0
_BLOCK_BYTES = 64 * 2**20
logger = logging.getLogger("stt_core.audio")
Decoded = tuple[npt.NDArray[np.float32], int, tuple[str, ...]]  # (frames, channels) samples, rate, notes


def check_nonempty_file(path: str | os.PathLike[str]) -> None:
    """A file there that we may read, with bytes in it: ``InvalidAudioError`` naming the problem
    otherwise (libsndfile would say only "System error.")."""
    try:
        size = os.path.getsize(path)
        if os.path.isdir(path):
            raise InvalidAudioError(f"{os.fspath(path)!r} is a directory, not an audio file")
        if size == 0:  # a FIFO has no size either: never opened here, where it would block
            raise InvalidAudioError(f"file is empty: {os.fspath(path)}")
        with open(path, "rb"):
            pass
    except OSError as e:
        raise InvalidAudioError(f"cannot read {os.fspath(path)!r}: {e.strerror}") from e


def truncation_notes(extra_info: str, what: str) -> tuple[str, ...]:
    """A warning when libsndfile found less data than the header promised (a cut-off upload):
    what is there is transcribed, and the caller is told."""
    found = _TRUNCATED.search(extra_info or "")
    if not found:
        return ()
    promised, present = int(found.group(1)), int(found.group(2))
    note = (f"{what} is truncated: its header promises {promised} bytes of audio, the file holds "
            f"{present}; transcribing what is there")
    logger.warning("%s", note)  # the stderr line; the caller puts it in Transcript.metadata
    return (note,)


_TRUNCATED = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def limits() -> tuple[float, int]:
    """(longest audio accepted in seconds, most bytes decoded into memory at once), from the
    environment (``STT_MAX_AUDIO_SECONDS``, ``STT_MAX_DECODED_MB``) or the defaults."""
    return (
        _positive_env(MAX_AUDIO_SECONDS_ENV, _DEFAULT_MAX_AUDIO_SECONDS),
        int(_positive_env(MAX_DECODED_MB_ENV, _DEFAULT_MAX_DECODED_MB) * 1024 * 1024),
    )


def check_plausible(frames: int, rate: int, channels: int, *, what: str, whole: bool) -> None:
    """Refuse audio whose header claims an implausible rate or more than the limits allow.

    ``whole``: the audio is to be decoded into memory at once (not streamed in pieces).
    """
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise InvalidAudioError(
            f"{what}: sample rate {rate} Hz is not plausible ({MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)"
        )
    max_seconds, max_bytes = limits()
    if frames / rate > max_seconds:
        raise InvalidAudioError(
            f"{what} is {frames / rate / 3600:.1f} h long, over the {max_seconds / 3600:g} h limit "
            f"(set {MAX_AUDIO_SECONDS_ENV} to allow more)"
        )
    decoded = frames * channels * 4  # float32 samples
    if whole and decoded > max_bytes:
        raise InvalidAudioError(
            f"{what} decodes to {decoded / 2**20:.0f} MB, over the {max_bytes / 2**20:g} MB limit for "
            f"audio held in memory (pass a file path to stream it, or set {MAX_DECODED_MB_ENV})"
        )


def _positive_env(name: str, default: float) -> float:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ConfigError(f"{name}={text!r} is not a positive number")
    return value


def decode(file: io.BufferedIOBase | io.BytesIO | io.BufferedReader, *, what: str) -> Decoded:
    """A whole file held open (or in memory), within the limits: libsndfile, else PyAV."""
    try:
        with sf.SoundFile(file) as f:
            check_plausible(f.frames, f.samplerate, f.channels, what=what, whole=True)
            samples = f.read(dtype="float32", always_2d=True)
            rate, notes = f.samplerate, truncation_notes(f.extra_info, what)
    except InvalidAudioError:
        raise
    except sf.LibsndfileError as e:
        if "Format not recognised" not in str(e):
            raise InvalidAudioError(f"cannot decode {what}: {described(e)}") from e
        file.seek(0)
        return _decode_other(file, what=what)
    except Exception as e:  # libsndfile reports every bad input in its own way
        raise InvalidAudioError(f"cannot decode {what}: {described(e)}") from e
    if samples.shape[0] == 0:
        raise InvalidAudioError(f"{what} has no audio samples (only a header)")
    return samples, rate, notes

def _decode_other(file: io.BufferedIOBase | io.BytesIO | io.BufferedReader, *, what: str) -> Decoded:
    """What libsndfile cannot read (m4a/AAC, WebM, MP4 audio, ...), whole, within the limits."""
    _, max_bytes = limits()
    blocks, held = [], 0
    for block in av_blocks(file, what=what):
        blocks.append(block)
        held += block.nbytes
        if held > max_bytes:
            check_plausible(held // 4, DECODE_RATE, 1, what=what, whole=True)
    if not held:
        raise InvalidAudioError(f"{what} has no audio samples")
    return np.concatenate(blocks)[:, np.newaxis], DECODE_RATE, ()


def info(path: str | os.PathLike[str]) -> sf._SoundFileInfo | None:
    """What a file's header says, checked (``None``: a container libsndfile cannot read)."""
    check_nonempty_file(path)
    name = os.fspath(path)
    try:
        info = sf.info(name)
    except OSError as e:  # gone or unreadable since the check
        raise InvalidAudioError(f"cannot read {name!r}: {e.strerror}") from e
    except Exception as e:  # libsndfile's own errors for unreadable data
        if "Format not recognised" in str(e):
            return None  # another container (m4a, WebM ...): decoded whole, through PyAV
        raise InvalidAudioError(f"cannot decode {name}: {described(e)}") from e
    if info.frames <= 0:
        raise InvalidAudioError(f"{name} has no audio samples (only a header)")
    check_plausible(info.frames, info.samplerate, info.channels, what=name, whole=False)
    return info


def sndfile_blocks(
    path: str | os.PathLike[str], header: sf._SoundFileInfo
) -> Iterator[npt.NDArray[np.float32]]:
    """The file's samples as (frames, channels) float32 blocks, read by libsndfile as they are needed."""
    # 30 s blocks, fewer seconds for wide files, so one block never passes _BLOCK_BYTES decoded.
    block = max(1, min(int(_BLOCK_SECONDS * header.samplerate), _BLOCK_BYTES // (4 * header.channels)))
    try:
        with sf.SoundFile(os.fspath(path)) as f:
            yield from f.blocks(blocksize=block, dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:
        raise InvalidAudioError(f"cannot decode {os.fspath(path)}: {described(e)}") from e


def av_blocks(source: Any, *, what: str) -> Iterator[npt.NDArray[np.float32]]:
    """A container libsndfile cannot read (m4a/AAC, WebM, MP4 audio, ...) as 16 kHz mono float32
    blocks, decoded by PyAV (FFmpeg, which faster-whisper installs) as they are read."""
    try:
        import av
    except ImportError:
        raise InvalidAudioError(
            f"cannot decode {what}: not a format libsndfile reads (WAV, FLAC, OGG/Vorbis, Opus, MP3); "
            "for m4a, AAC, WebM and other containers install PyAV: pip install av"
        ) from None
    max_seconds, _ = limits()
    decoded = 0
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.audio:
                raise InvalidAudioError(f"{what} has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=DECODE_RATE)
            frames = container.decode(container.streams.audio[0])
            for out in itertools.chain.from_iterable(resampler.resample(f) for f in frames):
                block = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                decoded += block.size
                if decoded > max_seconds * DECODE_RATE:
                    check_plausible(decoded, DECODE_RATE, 1, what=what, whole=False)
                yield block
            for out in resampler.resample(None):
                yield out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
    except InvalidAudioError:
        raise
    except Exception as e:  # FFmpeg's own words for a file it cannot read either
        raise InvalidAudioError(f"cannot decode {what}: {described(e)}") from e


def is_stream(path: str | os.PathLike[str]) -> bool:
    """A pipe, FIFO or terminal rather than a file: read to its end, it has no size to check."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def read_stream(path: str | os.PathLike[str]) -> bytes:
    """The bytes a pipe gives until it ends, refused past the decoded-size limit."""
    _, max_bytes = limits()
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InvalidAudioError(f"{os.fspath(path)} gave more than the {max_bytes / 2**20:g} MB limit "
                                f"for audio held in memory (set {MAX_DECODED_MB_ENV})")
    if not data:
        raise InvalidAudioError(f"{os.fspath(path)} gave no bytes")
    return data


def described(e: BaseException) -> str:
    """The error's first line; for libsndfile, its own words without the "Error opening <object>" prefix;
    for FFmpeg's (PyAV's) and the OS's, their words without an error number and a path."""
    if isinstance(e, sf.LibsndfileError) and e.error_string:
        return str(e.error_string).strip()
    if isinstance(strerror := getattr(e, "strerror", None), str) and strerror:
        return strerror
    return first_line(e)
