"""The one error tree of stt-core. Retryability is an attribute, not a class.

    STTError
    ├── ConfigError            bad or unknown config, missing key   (not retried, chain moves on)
    ├── InvalidAudioError      the caller's audio is bad             (never retried, never falls over)
    ├── ProviderUnavailable    cannot serve now: no model, no key, no memory, breaker open (moves on)
    ├── ProviderError          the engine failed; .retryable, .provider, .status_code, .retry_after
    │   ├── ProviderTimeout
    │   └── UnmappedError      an exception outside the tree, wrapped by the base class (the
    │                          conformance suite flags it: the provider should map its own)
    └── AllProvidersFailed     every engine in the chain failed; holds each cause in order
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._text import first_line, shorten

if TYPE_CHECKING:
    from ._types import Attempt


class STTError(Exception):
    """Base of every error stt-core raises on purpose."""


class ConfigError(STTError):
    """Configuration is bad, unknown or incomplete."""


class InvalidAudioError(STTError):
    """The caller's audio cannot be transcribed by anyone: empty, unreadable, NaN, bad rate."""


class ProviderUnavailable(STTError):
    """A provider cannot serve now (no model, no key, not enough memory, breaker open).
    ``status_code`` is the HTTP status when the engine itself refused (401/403: the key)."""

    def __init__(self, message: str, *, provider: str | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code


class ProviderError(STTError):
    """The engine failed while serving a request."""

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        retryable: bool = False,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    """An attempt ran past its time limit. Retryable by default."""

    def __init__(self, message: str, *, provider: str | None = None, retryable: bool = True) -> None:
        super().__init__(message, provider=provider, retryable=retryable)


class UnmappedError(ProviderError):
    """An engine error the provider did not map itself, wrapped by the base class so the chain can
    still go on. The conformance suite flags these: a vendor's 401 or 429 should say what it is."""


class AllProvidersFailed(STTError):
    """Every provider in a chain failed or was skipped; ``errors`` holds each cause in order."""

    def __init__(
        self,
        errors: Sequence[tuple[str, BaseException]],
        *,
        attempts: Sequence[Attempt] = (),
    ) -> None:
        self.errors = list(errors)
        self.attempts = tuple(attempts)
        if self.errors:
            shown = self.errors[:_CAUSES_SHOWN]
            causes = "; ".join(f"{name}: {shorten(first_line(err), _CAUSE_LENGTH)}" for name, err in shown)
            if len(self.errors) > len(shown):
                causes += f"; and {len(self.errors) - len(shown)} more"
        else:
            causes = "the chain is empty"
        super().__init__(f"no provider could transcribe the audio ({causes})")


_CAUSES_SHOWN = 8  # the message stays one readable line; ``errors`` holds every cause


_CAUSE_LENGTH = 500  # characters of one cause in the summary: room for a hint and a path, whole
