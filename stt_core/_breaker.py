"""A circuit breaker per provider: skip an engine that keeps failing or asked to be left alone.

- closed: calls pass.
- open: calls skip. An engine with a ``health()`` check is probed in the background by the chain
  and closed as soon as it passes; one without is probed after ``cooldown`` by one user request,
  with a single short attempt (half-open while that request runs).
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

Gate = Literal["call", "probe", "skip"]
_MAX_DOUBLINGS = 6  # probes of a relapsing engine at most every 64 intervals


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 1
    """Consecutive failed calls that open the breaker (each retry is a call). One, because opening
    is cheap: an engine with ``health()`` is probed at once and closes again if that passes (a
    blip costs one health check), while an engine that is down gets no more traffic."""
    cooldown: float = 5.0
    """Seconds an open breaker skips an engine without ``health()`` before one request probes it."""
    probe_interval: float = 1.0
    """Seconds between background ``health()`` probes of an open engine (jittered by 20 %)."""
    probe_timeout: float = 2.0
    """Bound on one probe: a ``health()`` call, or the single attempt of a probing request."""


class CircuitBreaker:
    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self.state: Literal["closed", "open", "half_open"] = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._held_until = 0.0
        self._probation = False
        self.relapses = 0  # times it failed again right after a health check closed it

    def held_for(self) -> float:
        """Seconds left of a Retry-After hold (0 when none)."""
        return max(0.0, self._held_until - self._clock())

    def blocked(self, *, probes_in_background: bool) -> str | None:
        """Why a request would skip this engine now, without changing any state; else ``None``."""
        if self.state == "half_open":
            return "circuit breaker half-open: another request is probing it"
        if self.state == "open" and (probes_in_background or not self._cooled_down()):
            return "circuit breaker open: it failed and has not recovered yet"
        if held := self.held_for():
            return f"rate limited: asked to wait {held:.1f} s more (Retry-After)"
        return None

    def gate(self, *, probes_in_background: bool) -> Gate:
        """What to do with this request: call, probe (this request is the one probe), or skip."""
        if self.held_for():
            return "skip"
        if self.state == "closed":
            return "call"
        if self.state == "open" and not probes_in_background and self._cooled_down():
            self.state = "half_open"  # this caller is the one probe; others skip meanwhile
            return "probe"
        return "skip"

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
