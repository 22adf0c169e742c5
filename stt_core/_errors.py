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

import datetime
import difflib
import email.utils
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr, ValidationError

from ._text import first_line, shorten

if TYPE_CHECKING:
    from ._types import Attempt


class STTError(Exception):
    """Base of every error stt-core raises on purpose."""

    def to_dict(self) -> dict[str, Any]:
        """What crosses a process (an inference process, a cluster's replica): its kind and
        message, and for an engine's failure whether it may pass and its HTTP status."""
        kind = next((c.__name__ for c in type(self).__mro__ if c.__name__ in _CROSSING), "ProviderError")
        return {"type": kind, "message": str(self), "retryable": bool(getattr(self, "retryable", False)),
                "status_code": getattr(self, "status_code", None)}

    @staticmethod
    def from_dict(data: Mapping[str, Any], *, provider: str | None = None) -> STTError:
        """The inverse of ``to_dict``, raised as ``provider``'s (a kind it does not know is an
        engine's failure)."""
        kind, message, status = data.get("type"), str(data.get("message", "")), data.get("status_code")
        if kind == "InvalidAudioError":
            return InvalidAudioError(message)
        if kind == "ConfigError":
            return ConfigError(message)
        if kind == "ProviderUnavailable":
            return ProviderUnavailable(message, provider=provider, status_code=status)
        if kind == "ProviderTimeout":
            return ProviderTimeout(message, provider=provider)
        return ProviderError(message, provider=provider, retryable=bool(data.get("retryable", True)),
                             status_code=status)


_CROSSING = ("InvalidAudioError", "ConfigError", "ProviderUnavailable", "ProviderTimeout", "ProviderError")


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

    @property
    def last(self) -> BaseException | None:
        """The last engine's cause: what a framework's own error class should say."""
        return self.errors[-1][1] if self.errors else None

    @property
    def retryable(self) -> bool:
        """Whether trying again later could help: an engine failed in a way that may pass."""
        return any(isinstance(cause, ProviderError) and cause.retryable for _, cause in self.errors)

    @property
    def key_refused(self) -> bool:
        """Whether an engine refused its credentials (HTTP 401/403): refused until config changes."""
        return any(refused_key(cause) for _, cause in self.errors)


def refused_key(error: BaseException | None) -> bool:
    """The engine refused its key (HTTP 401/403): it stays refused until the config changes."""
    return isinstance(error, ProviderError | ProviderUnavailable) and error.status_code in (401, 403)


_CAUSES_SHOWN = 8  # the message stays one readable line; ``errors`` holds every cause


_CAUSE_LENGTH = 500  # characters of one cause in the summary: room for a hint and a path, whole


# -- HTTP failures, for cloud providers: one reading of them as the tree, and what an upstream says
# cleaned of credentials before it goes anywhere.

_AUDIO_WORDS = ("audio", "media", "decod", "corrupt", "format", "encoding", "duration")
# A 400 that speaks of these is the server's own set-up ("could not load model file ...") or a
# parameter it does not take ("Invalid language 'zh_cn' ... ISO-639-1 format"), which the next
# engine may not share: never the caller's audio.
_SETUP_WORDS = ("model", "api key", "api_key", "configur", "permission", "quota",
                "language", "response_format", "granularit")
# What an upstream may echo back that is a credential: bearer tokens, key-shaped words (sk-...,
# gsk_..., key_...) and key=value pairs. Replaced before its text goes anywhere.
_SECRET_PATTERNS = re.compile(
    r"(?i)(?P<prefix>bearer\s+|token\s+(?=[\w.\-]{16,})"
    r"|(?:api[-_ ]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]+?(?=[)\]]*(?:[\s\"',;&]|$))"
    r"|\b(?:sk|gsk|key|dg|pk)[-_][A-Za-z0-9_\-]{8,}"
)
REDACTED = "[redacted]"
# A 429 that is no pace to wait out but an account out of credit (OpenAI's insufficient_quota):
# not "quota" alone, which rate limits also say ("Please retry after 6 seconds ... quotaincrease").
_OUT_OF_QUOTA = ("exceeded your current quota", "insufficient_quota", "billing details")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^/\s]*@")  # https://user:password@host (to its last @)


def without_secrets(text: str, *secrets: str) -> str:
    """``text`` from an upstream (an error message, a log line) with credentials replaced: the
    ``secrets`` given (our own keys, wherever they appear) and anything shaped like one."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)
    return _SECRET_PATTERNS.sub(lambda m: (m.group("prefix") or "") + REDACTED, text)


# A key that names a secret (api_key, apikey, auth_token, client_secret), not keywords or max_tokens.
_SECRET_KEY = re.compile(r"(^|_)(apikey|key|token|secret|password|passwd)$", re.IGNORECASE)


def without_secrets_in(table: Mapping[str, Any]) -> dict[str, Any]:
    """A settings table (``config show``'s) with its secrets replaced, tables within it too: the
    values of keys that name one, and credentials inside any text (a URL's password)."""
    return {key: _scrubbed(key, value) for key, value in table.items()}


def _scrubbed(key: str, value: Any) -> Any:
    if value is not None and (_SECRET_KEY.search(key) or isinstance(value, SecretStr)):
        return "**********"
    if isinstance(value, str):
        return without_secrets(value)
    if isinstance(value, Mapping):
        return without_secrets_in(value)
    if isinstance(value, list | tuple):
        return [_scrubbed(key, item) for item in value]
    return value


def parse_retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header (seconds, or an HTTP date) as seconds from now."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def error_for_status(
    status: int, detail: str, *, provider: str, retry_after: str | None = None
) -> STTError:
    """The error tree's reading of an HTTP status from a speech API.

    401/403: the key is bad (unavailable, never retried); 429: retryable after ``Retry-After``;
    408 and 5xx: retryable; a 400 about the audio: ``InvalidAudioError``; anything else: a
    non-retryable engine failure, so the chain moves on. Credentials in ``detail`` (an upstream
    that echoes the request's key) are replaced.
    """
    detail = shorten(without_secrets(detail), 300)
    if status in (401, 403):
        return ProviderUnavailable(
            f"{provider} rejected the API key (HTTP {status}): {detail}",
            provider=provider, status_code=status,
        )
    if status == 429 and retry_after is None and any(w in detail.lower() for w in _OUT_OF_QUOTA):  # billing
        return ProviderError(f"{provider} is out of quota (HTTP 429): {detail}", provider=provider,
                             status_code=status)
    if status == 429:
        wait = parse_retry_after(retry_after)
        after = "" if wait is None else f", retry after {wait:g} s"
        return ProviderError(
            f"{provider} is rate limiting (HTTP 429{after})",
            provider=provider, retryable=True, status_code=status, retry_after=wait,
        )
    if status == 408 or status >= 500:
        return ProviderError(
            f"{provider} failed (HTTP {status}): {detail}", provider=provider, retryable=True,
            status_code=status,
        )
    said = detail.lower()
    if status == 400 and any(w in said for w in _AUDIO_WORDS) and not any(w in said for w in _SETUP_WORDS):
        return InvalidAudioError(f"{provider} refused the audio (HTTP 400): {detail}")
    return ProviderError(f"{provider} refused the request (HTTP {status}): {detail}", provider=provider,
                         status_code=status)


# -- settings that failed validation, as one line that names each key and never its value --------


def validation_problems(e: ValidationError, model: type[BaseModel] | None = None, prefix: str = "") -> str:
    """pydantic's errors as ``key: problem`` pairs; values are left out, so no secret leaks. With
    the ``model`` that was validated, an unknown key gets a "did you mean" from its table's keys."""
    problems = []
    for err in e.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(settings)"
        if err["type"] == "extra_forbidden":
            known = _keys_beside(model, err["loc"]) if model is not None else set()
            message = "unknown key" + did_you_mean(str(err["loc"][-1]), known)
        else:
            message = err["msg"].removeprefix("Value error, ")  # pydantic's, before our own words
        problems.append(f"{prefix}{key}: {message}")
    return "; ".join(problems)


def did_you_mean(name: str, known: set[str], prefix: str = "") -> str:
    """``"; did you mean 'model'?"`` for a name close to one of ``known``, else ``""``."""
    close = difflib.get_close_matches(name.lower(), sorted(known), n=1, cutoff=0.75)
    if not close:
        return ""
    return f"; did you mean {prefix}{close[0].upper()}?" if prefix else f"; did you mean {close[0]!r}?"


def _keys_beside(model: type[BaseModel], loc: tuple[int | str, ...]) -> set[str]:
    """The keys of the table that holds ``loc``'s last key, following nested models down."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        inner = field.annotation if field is not None else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return set()
        model = inner
    return set(model.model_fields)
