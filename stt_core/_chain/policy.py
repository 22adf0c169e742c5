"""The chain's rules, all of them, as decisions without I/O: no socket, no event loop, and a clock
that is passed in. The drivers (``_batch``, ``_streams``) ask and do what they are told.

Before a call, per engine and request, ``admit``::

    cannot take it (language, word times) ─► Skip(why)
    the last engine that can answer, held by a Retry-After we would wait ─► Hold(seconds), then ask again
    breaker says skip (open, another request probing, held) ─► Skip(why)
    breaker open and cooled down, no health() ─► Plan(1 attempt, probe timeout): this request probes
    otherwise ─► Plan(attempts: all if it is the last that can answer or retry_before_fallover, else 1)

After a failed call, ``after_failure``; and what the engine's breaker learns, ``breaker_effect``::

    ProviderError, retryable, attempts left, a Retry-After we would wait,
        and its breaker not opened by another request meanwhile ─► Retry(after Retry-After or backoff)
    ProviderError otherwise, ProviderUnavailable, ConfigError ─► FallOver
    anything else (bad audio, cancellation) ─► GiveUp: it goes to the caller
    a 429 with Retry-After ─► hold the engine for everyone; other ProviderErrors ─► count a failure

Each engine's breaker is ``breaker``'s (its states are drawn there).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from .._errors import ConfigError, ProviderError, ProviderTimeout, ProviderUnavailable, refused_key
from .._types import SETTINGS_MODEL, AttemptOutcome
from .breaker import Gate

_HOUR = 3600.0
MIN_LATENCIES = 10  # a percentile hedge waits for this many answers before it hedges


class RetryPolicy(BaseModel):
    """How often and how patiently the chain calls each engine. What ``[retry]`` builds."""

    model_config = SETTINGS_MODEL
    attempts: int = Field(3, ge=1, le=20)
    """Calls per engine per request, the first included (only where the chain retries: below)."""
    initial_backoff: float = Field(0.2, ge=0, le=60)
    max_backoff: float = Field(5.0, ge=0, le=300)
    jitter: float = Field(0.2, ge=0, le=60)
    max_retry_after: float = Field(20.0, ge=0, le=_HOUR)
    """A Retry-After longer than this is not waited for: the chain moves on instead."""
    retry_before_fallover: bool = False
    """False (the default): retry only the last engine that can take the request, and fall over
    at once from the others. True: retry every engine before moving on, for users who would
    rather wait for their first engine (cost, privacy) than fall over."""


# -- before a call ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    attempts: int
    timeout: float | None
    probe: bool = False  # this request is the one probe of an open breaker


@dataclass(frozen=True)
class Hold:
    seconds: float


@dataclass(frozen=True)
class Skip:
    reason: str


Purpose = Literal["request", "speculation", "utterance"]
"""Why the chain is asked. ``request``: a caller's request. ``speculation``: a recognition ahead
of need that nobody waits on (real time's preflight): each engine is called once, never as a probe
and never after a wait, and its failure teaches no breaker, so the request that follows has the
whole policy. ``utterance``: the final of a live utterance, which nobody will ask for again: a
request, except that the last engine that could take it is called once even while its breaker
would skip it (skipping it would lose the utterance for certain)."""


def admit(
    *,
    refuses: str | None,
    gate: Gate,
    later: bool,
    may_hold: bool,
    retry: RetryPolicy,
    attempt_timeout: float | None,
    probe_timeout: float,
    purpose: Purpose = "request",
) -> Plan | Hold | Skip:
    """What to do with a request at an engine.

    ``refuses``: why the engine cannot take this request, from what it declares; ``later``: whether
    a later engine could take it now; ``may_hold``: whether waiting out a Retry-After is allowed
    (once per request and engine); ``purpose``: above.
    """
    if refuses:
        return Skip(refuses)
    if purpose == "speculation":
        if not may_speculate(gate):
            return Skip(gate.reason or "a speculative recognition never probes an engine")
        return Plan(1, attempt_timeout)
    if may_hold and not later and gate.closed and 0 < gate.held_for <= retry.max_retry_after:
        return Hold(gate.held_for)  # the last engine that can answer: wait rather than fail
    if gate.action == "skip":
        if purpose == "utterance" and not later and not gate.held_for:
            return Plan(1, attempt_timeout)  # the utterance's last hope: no one will ask again
        return Skip(gate.reason or "skipped")
    if gate.action == "probe":
        timeout = probe_timeout if attempt_timeout is None else min(attempt_timeout, probe_timeout)
        return Plan(1, timeout, probe=True)
    retries = retry.retry_before_fallover or not later
    return Plan(retry.attempts if retries else 1, attempt_timeout)


def may_speculate(gate: Gate) -> bool:
    """Whether a recognition ahead of need may call an engine: only one its breaker lets every
    request call (never one it skips or that a request is probing)."""
    return gate.action == "call"


def never_takes(*, refuses: str | None, unavailable: str | None, cause: BaseException | None) -> str | None:
    """Why an engine will not take such a request until its install or config changes, or
    ``None`` when waiting may help. ``refuses``: what it declares (a language, word times);
    ``unavailable``: its own check (not installed, no key, no model); ``cause``: what a request
    got from it (a refused key, a config error). A breaker, a Retry-After and failed calls clear."""
    if unavailable or refuses:  # not installed says how to install; that comes first
        return unavailable or refuses
    if refused_key(cause) or isinstance(cause, ConfigError):
        return str(cause)
    return None


def may_retry_into(gate_closed: bool, *, opened_by_this_request: bool) -> bool:
    """Never retry into an engine whose breaker another request opened meanwhile."""
    return gate_closed or opened_by_this_request


# -- after a failed call ------------------------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    after: float | None  # seconds (its Retry-After), or None: back off exponentially


@dataclass(frozen=True)
class FallOver:
    pass


@dataclass(frozen=True)
class GiveUp:
    pass


def after_failure(
    error: BaseException | None, *, attempt: int, call: Plan, retry: RetryPolicy, may_retry: bool
) -> Retry | FallOver | GiveUp:
    """What to do after call number ``attempt`` (from 1) of ``call`` failed with ``error``."""
    if isinstance(error, ProviderError):
        waits = error.retry_after is None or error.retry_after <= retry.max_retry_after
        if error.retryable and waits and attempt < call.attempts and may_retry:
            return Retry(None if error.retry_after is None else max(0.0, error.retry_after))
        return FallOver()
    if isinstance(error, ProviderUnavailable | ConfigError):
        return FallOver()  # no verdict on the engine: it cannot serve now
    return GiveUp()


def breaker_effect(error: BaseException, purpose: Purpose = "request") -> Literal["count", "hold", "none"]:
    """What an engine's breaker learns from a failed call."""
    if not isinstance(error, ProviderError):
        return "none"  # unavailable or misconfigured: not a broken engine
    if error.status_code == 429 and error.retry_after:
        return "hold"  # a rate limit with its own wait: hold it for every request
    return "none" if purpose == "speculation" else "count"


def outcome(error: BaseException) -> AttemptOutcome:
    """A failed call, as its ``Attempt`` records it."""
    if isinstance(error, ProviderTimeout):
        return "timeout"
    if isinstance(error, ProviderUnavailable | ConfigError):
        return "unavailable"
    return "error"


# -- hedging ------------------------------------------------------------------------------------


class Percentile(int):
    """``hedge_after`` as a percentile of an engine's own recent latencies: 'p95' is Percentile(95)."""

    def __str__(self) -> str:
        return f"p{int(self)}"

    __repr__ = __str__


def hedge_setting(value: float | str | None) -> float | Percentile | None:
    """``hedge_after`` as seconds (a float) or a ``Percentile``; ``ValueError`` naming the problem
    otherwise. A value already read (a float or a ``Percentile``) is taken as it is, so config
    reads it once and the chain does not read it again."""
    if value is None or isinstance(value, Percentile):
        return value
    if isinstance(value, str) and value.strip().lower().startswith("p"):
        try:
            percentile = int(value.strip()[1:])
        except ValueError:
            percentile = 0
        if not 1 <= percentile <= 99:
            raise ValueError(f"hedge_after {value!r}: a percentile is written p1 to p99, e.g. 'p95'")
        return Percentile(percentile)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"hedge_after {value!r}: give seconds (e.g. 0.5) or a percentile ('p95')") from None
    if not 0 <= seconds <= _HOUR:
        raise ValueError(f"hedge_after {value!r}: seconds must be between 0 and 3600")
    return seconds


def hedge_delay(hedge_after: float | Percentile | None, latencies: Sequence[float]) -> float | None:
    """Seconds to wait for an engine before the next one races it (``None``: do not hedge)."""
    if hedge_after is None or not isinstance(hedge_after, Percentile):
        return hedge_after
    if len(latencies) < MIN_LATENCIES:
        return None
    return statistics.quantiles(latencies, n=100, method="inclusive")[hedge_after - 1]
