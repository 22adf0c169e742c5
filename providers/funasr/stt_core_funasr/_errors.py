"""Where funasr's, torch's and onnxruntime's exceptions become stt-core's: the one place.

Loading fails as ``ProviderUnavailable`` (this engine cannot serve; the request moves on and no
breaker opens), inference as a retryable ``ProviderError``, except out of memory, which is read
as the base class reads it: this request cannot be served here now, and it moves on.
"""

from __future__ import annotations

from pathlib import Path

from stt_core import ProviderError, ProviderUnavailable

NAME = "funasr"


def unavailable(message: str) -> ProviderUnavailable:
    return ProviderUnavailable(message, provider=NAME)


def load_failed(what: str, e: BaseException) -> ProviderUnavailable:
    """``what`` (the model, the VAD) did not load: a corrupt or incomplete directory, a wrong
    config, not enough memory."""
    if isinstance(e, ProviderUnavailable):
        return e
    if isinstance(e, MemoryError):
        return unavailable(f"not enough memory to load {what}: {e}")
    return unavailable(f"cannot load {what}: {type(e).__name__}: {e}")


def bad_file(path: Path, problem: str, e: BaseException) -> ProviderUnavailable:
    """One of the model's files is unreadable or foreign."""
    return unavailable(f"{path} {problem}: {type(e).__name__}: {_one_line(e)}")


def inference_failed(e: BaseException) -> ProviderError | ProviderUnavailable:
    if isinstance(e, ProviderError | ProviderUnavailable):
        return e
    if isinstance(e, MemoryError) or "out of memory" in str(e).lower():
        return unavailable(f"funasr ran out of memory for this request: {e}")
    return ProviderError(f"funasr inference failed: {type(e).__name__}: {e}", provider=NAME)


def _one_line(e: BaseException, limit: int = 200) -> str:
    """What a library said, as one line of at most ``limit`` characters."""
    said = " ".join(str(e).split())
    return said if len(said) <= limit else said[:limit - 3] + "..."
