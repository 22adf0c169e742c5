"""The fallback chain (docs/architecture.md): ``chain`` is the Provider, ``policy`` every rule,
``links`` each engine's state and the steps at it, ``batch`` and ``streams`` the two drivers, and
``tape`` a stream's replayable input."""

from .breaker import BreakerPolicy, CircuitBreaker
from .chain import Chain
from .policy import Percentile, RetryPolicy, hedge_setting

__all__ = ["BreakerPolicy", "Chain", "CircuitBreaker", "Percentile", "RetryPolicy", "hedge_setting"]
