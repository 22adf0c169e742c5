"""A circuit breaker per provider: skip an engine that keeps failing, probe it after a cool-down."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Gate = Literal["call", "probe", "skip"]


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 3
    """Consecutive failed requests that open the breaker."""
    cooldown: float = 30.0
    """Seconds an open breaker skips its provider before one probe decides."""


class CircuitBreaker:
    """closed: calls pass. open: calls skip until the cool-down ends. half-open: one probe
    is let through; success closes the breaker, failure opens it again."""

    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self.state: Literal["closed", "open", "half_open"] = "closed"
        self._failures = 0
        self._opened_at = 0.0

    def gate(self) -> Gate:
        """What to do with the next request."""
        if self.state == "closed":
            return "call"
        if self.state == "open" and self._clock() - self._opened_at >= self.policy.cooldown:
            self.state = "half_open"  # this caller is the one probe; others skip meanwhile
            return "probe"
        return "skip"

    def record_success(self) -> None:
        self.state = "closed"
        self._failures = 0

    def record_failure(self) -> None:
        self._failures += 1
        if self.state == "half_open" or self._failures >= self.policy.failures:
            self.state = "open"
            self._opened_at = self._clock()

    def release(self) -> None:
        """The probe ended without a verdict (bad input, cancelled): the next request probes."""
        if self.state == "half_open":
            self.state = "open"
