"""Each engine's circuit breaker, a state machine on an injected clock (no I/O), and the
``[breaker]`` table that tunes it.

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

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from .._types import SETTINGS_MODEL

_HOUR = 3600.0
_MAX_DOUBLINGS = 6  # probes of a relapsing engine at most every 64 intervals


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
