"""Real time on engines that do not stream: a VAD-driven session over any engine or chain."""

from .session import RealtimeSettings, realtime

__all__ = ["RealtimeSettings", "realtime"]
