"""The fallback chain (docs/architecture.md): ``chain`` is the Provider, ``policy`` every rule
about failures and ``quality`` about answers, ``links`` each engine's state and the steps at it,
``batch`` and ``streams`` the two drivers, and ``tape`` a stream's replayable input."""

from .breaker import BreakerPolicy, CircuitBreaker
from .chain import Chain
from .policy import Percentile, RetryPolicy, hedge_setting
from .quality import DEFAULT_MIN_CONFIDENCE, QualityPolicy, WhisperWindow, whisper_speech

__all__ = ["DEFAULT_MIN_CONFIDENCE", "BreakerPolicy", "Chain", "CircuitBreaker", "Percentile",
           "QualityPolicy", "RetryPolicy", "WhisperWindow", "hedge_setting", "whisper_speech"]
