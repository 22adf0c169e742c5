"""How much audio stt-core takes, and whether a file's header is believable: the decoding limits
and plausibility checks that decoding in memory (``_audio``) and in pieces (``_files``) share."""

from __future__ import annotations

import logging
import os
import re

from .._errors import ConfigError, InvalidAudioError

MAX_SAMPLE_RATE = 384_000  # the highest rate real audio hardware uses; above it is a bad header
MIN_SAMPLE_RATE = 2_000  # below any speech codec's (8 kHz telephony): a lower rate is a bad header
# Shorter audio holds no word, and engines fail on it (SenseVoice's front end needs one 25 ms
# window; whisper pads it to noise): bad audio before any engine, or batch, sees it.
MIN_AUDIO_SECONDS = 0.03
MAX_AUDIO_SECONDS_ENV, MAX_DECODED_MB_ENV = "STT_MAX_AUDIO_SECONDS", "STT_MAX_DECODED_MB"
_DEFAULT_MAX_AUDIO_SECONDS, _DEFAULT_MAX_DECODED_MB = 4 * 3600.0, 1024.0
logger = logging.getLogger("stt_core.audio")


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
