"""The chain's rules, all of them, as decisions without I/O: no socket, no event loop, and a clock
that is passed in. The drivers (``_batch``, ``_streams``) ask and do what they are told.

Before a call, per engine and request, ``admit``::

    cannot take it (language, word times) ─► Skip(why)
    the last engine that can answer, held by a Retry-After we would wait ─► Hold(seconds), then ask again
    breaker says skip (open, another request probing, held) ─► Skip(why)
    breaker open and cooled down, no health() ─► Call(1 attempt, probe timeout): this request probes
    otherwise ─► Call(attempts: all if it is the last that can answer or retry_before_fallover, else 1)

After a failed call, ``after_failure``; and what the engine's breaker learns, ``breaker_effect``::

    ProviderError, retryable, attempts left, a Retry-After we would wait,
        and its breaker not opened by another request meanwhile ─► Retry(after Retry-After or backoff)
    ProviderError otherwise, ProviderUnavailable, ConfigError ─► FallOver
    anything else (bad audio, cancellation) ─► GiveUp: it goes to the caller
    a 429 with Retry-After ─► hold the engine for everyone; other ProviderErrors ─► count a failure

Each engine's breaker (``CircuitBreaker``):

- closed: calls pass.
- open: calls skip. An engine with a ``health()`` check is probed in the background and closed as
  soon as it passes; one without is probed after ``cooldown`` by one user request, with a single
  short attempt (half-open while that request runs).
- on probation: closed by a health check, which can pass while transcription still fails (a
  partial outage). The first failed call reopens it at once and the probes back off, doubling
  their interval each time (``relapses``), until a real call succeeds.
- held: an engine that answered 429 with Retry-After N is skipped by every request for N seconds,
  then used again without a probe.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from .._errors import ConfigError, ProviderError, ProviderTimeout, ProviderUnavailable
from .._types import SETTINGS_MODEL, AttemptOutcome

_HOUR = 3600.0
_MAX_DOUBLINGS = 6  # probes of a relapsing engine at most every 64 intervals
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


class BreakerPolicy(BaseModel):
    """When an engine is skipped and how it is tried again. What ``[breaker]`` builds."""

    model_config = SETTINGS_MODEL
    failures: int = Field(1, ge=1)
    """Consecutive failed calls that open the breaker (each retry is a call). One, because opening
    is cheap: an engine with ``health()`` is probed at once and closes again if that passes (a
    blip costs one health check), while an engine that is down gets no more traffic."""
    cooldown: float = Field(5.0, ge=0, le=_HOUR)
    """Seconds an open breaker skips an engine without ``health()`` before one request probes it."""
    probe_interval: float = Field(1.0, ge=0.01, le=_HOUR)
    """Seconds between background ``health()`` probes of an open engine (jittered by 20 %)."""
    probe_timeout: float = Field(2.0, ge=0.01, le=_HOUR)
    """Bound on one probe: a ``health()`` call, or the single attempt of a probing request."""


# -- the breaker --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """A breaker's answer for a request now: call, probe (this request is the one probe), or skip."""

    action: Literal["call", "probe", "skip"]
    reason: str | None = None  # why it skips
    held_for: float = 0.0  # seconds left of a Retry-After hold
    closed: bool = True


class CircuitBreaker:
    """One engine's breaker: the states above, on an injected clock."""

    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._state: Literal["closed", "open", "half_open"] = "closed"
        self.on_change: Callable[[str], None] | None = None  # told each new state (the chain's metrics)
        self._failures = 0
        self._opened_at = 0.0
        self._held_until = 0.0
        self._probation = False
        self.relapses = 0  # times it failed again right after a health check closed it

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        return self._state

    @state.setter
    def state(self, state: Literal["closed", "open", "half_open"]) -> None:
        changed, self._state = state != self._state, state
        if changed and self.on_change is not None:
            self.on_change(state)

    def held_for(self) -> float:
        """Seconds left of a Retry-After hold (0 when none)."""
        return max(0.0, self._held_until - self._clock())

    def gate(self, *, probes_in_background: bool) -> Gate:
        """What a request would do with this engine now; it changes nothing (``start_probe`` does)."""
        held, closed = self.held_for(), self.state == "closed"
        if self.state == "half_open":
            return Gate("skip", "circuit breaker half-open: another request is probing it", held, closed)
        if self.state == "open" and (probes_in_background or not self._cooled_down()):
            return Gate("skip", "circuit breaker open: it failed and has not recovered yet", held, closed)
        if held:
            return Gate("skip", f"rate limited: asked to wait {held:.1f} s more (Retry-After)", held, closed)
        return Gate("probe" if self.state == "open" else "call", None, held, closed)

    def start_probe(self) -> None:
        """This request is the one probe; the others skip meanwhile."""
        self.state = "half_open"

    def hold(self, seconds: float) -> None:
        """Skip this engine for ``seconds`` (its Retry-After), for every request."""
        self._held_until = max(self._held_until, self._clock() + seconds)

    def record_success(self) -> None:
        self.state = "closed"
        self._failures = 0
        self._probation = False
        self.relapses = 0

    def probe_passed(self) -> None:
        """A background health check passed: calls again, on probation until one succeeds."""
        self.state = "closed"
        self._failures = 0
        self._probation = True

    def record_failure(self) -> bool:
        """Count a failed call; whether it opened the breaker."""
        self._failures += 1
        if self.state == "open":
            return False
        if self._probation:
            self.relapses += 1
        elif self.state != "half_open" and self._failures < self.policy.failures:
            return False
        self.state = "open"
        self._probation = False
        self._opened_at = self._clock()
        return True

    def probe_delay(self) -> float:
        """Seconds before the next background probe: the interval, doubled for each relapse."""
        return self.policy.probe_interval * float(2 ** min(self.relapses, _MAX_DOUBLINGS))

    def release(self) -> None:
        """The probe ended without a verdict (bad input, cancelled): a later request probes."""
        if self.state == "half_open":
            self.state = "open"

    def _cooled_down(self) -> bool:
        return self._clock() - self._opened_at >= self.policy.cooldown


# -- before a call ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    attempts: int
    timeout: float | None
    probe: bool = False  # this request is the one probe of an open breaker


@dataclass(frozen=True)
class Hold:
    seconds: float


@dataclass(frozen=True)
class Skip:
    reason: str


def admit(
    *,
    refuses: str | None,
    gate: Gate,
    later: bool,
    may_hold: bool,
    retry: RetryPolicy,
    attempt_timeout: float | None,
    probe_timeout: float,
) -> Call | Hold | Skip:
    """What to do with a request at an engine.

    ``refuses``: why the engine cannot take this request, from what it declares; ``later``: whether
    a later engine could take it now; ``may_hold``: whether waiting out a Retry-After is allowed
    (once per request and engine).
    """
    if refuses:
        return Skip(refuses)
    if may_hold and not later and gate.closed and 0 < gate.held_for <= retry.max_retry_after:
        return Hold(gate.held_for)  # the last engine that can answer: wait rather than fail
    if gate.action == "skip":
        return Skip(gate.reason or "skipped")
    if gate.action == "probe":
        timeout = probe_timeout if attempt_timeout is None else min(attempt_timeout, probe_timeout)
        return Call(1, timeout, probe=True)
    retries = retry.retry_before_fallover or not later
    return Call(retry.attempts if retries else 1, attempt_timeout)


REFUSED_KEY = (401, 403)  # an engine that refused its credentials stays refused until config changes


def never_takes(*, refuses: str | None, unavailable: str | None, cause: BaseException | None) -> str | None:
    """Why an engine will not take such a request until its install or config changes, or
    ``None`` when waiting may help. ``refuses``: what it declares (a language, word times);
    ``unavailable``: its own check (not installed, no key, no model); ``cause``: what a request
    got from it (a refused key, a config error). A breaker, a Retry-After and failed calls clear."""
    if refuses or unavailable:
        return refuses or unavailable
    refused = isinstance(cause, ProviderError | ProviderUnavailable) and cause.status_code in REFUSED_KEY
    if refused or isinstance(cause, ConfigError):
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
    error: BaseException | None, *, attempt: int, call: Call, retry: RetryPolicy, may_retry: bool
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


def breaker_effect(error: BaseException) -> Literal["count", "hold", "none"]:
    """What an engine's breaker learns from a failed call."""
    if not isinstance(error, ProviderError):
        return "none"  # unavailable or misconfigured: not a broken engine
    if error.status_code == 429 and error.retry_after:
        return "hold"  # a rate limit with its own wait: hold it for every request
    return "count"


def outcome(error: BaseException) -> AttemptOutcome:
    """A failed call, as its ``Attempt`` records it."""
    if isinstance(error, ProviderTimeout):
        return "timeout"
    if isinstance(error, ProviderUnavailable | ConfigError):
        return "unavailable"
    return "error"


# -- hedging ------------------------------------------------------------------------------------


def hedge_setting(value: float | str | None) -> float | int | None:
    """``hedge_after`` as seconds (a float) or a percentile (an int from 1 to 99); ``ValueError``
    naming the problem otherwise."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower().startswith("p"):
        try:
            percentile = int(value.strip()[1:])
        except ValueError:
            percentile = 0
        if not 1 <= percentile <= 99:
            raise ValueError(f"hedge_after {value!r}: a percentile is written p1 to p99, e.g. 'p95'")
        return percentile
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"hedge_after {value!r}: give seconds (e.g. 0.5) or a percentile ('p95')") from None
    if not 0 <= seconds <= _HOUR:
        raise ValueError(f"hedge_after {value!r}: seconds must be between 0 and 3600")
    return seconds


def hedge_delay(hedge_after: float | int | None, latencies: Sequence[float]) -> float | None:
    """Seconds to wait for an engine before the next one races it (``None``: do not hedge)."""
    if hedge_after is None or isinstance(hedge_after, float):
        return hedge_after
    if len(latencies) < MIN_LATENCIES:
        return None
    return statistics.quantiles(latencies, n=100, method="inclusive")[hedge_after - 1]
