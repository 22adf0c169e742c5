"""Real time on engines that do not stream: a VAD-driven session over any engine or chain
(``session``), live audio cut into the VAD's frames (``frames``), and an utterance recognised in
pieces (``utterance``)."""

from .session import RealtimeSettings, interim_engine, realtime

__all__ = ["RealtimeSettings", "interim_engine", "realtime"]
