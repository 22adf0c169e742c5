"""Real time on engines that do not stream: a VAD-driven session over any engine or chain
(``session``, with its ``settings``), live audio cut into the VAD's frames (``frames``), an
utterance recognised in pieces (``utterance``), and how an adapter hears a chain (``hearing``)."""

from .hearing import Hearing, queued_audio
from .session import interim_engine, realtime
from .settings import RealtimeSettings

__all__ = ["Hearing", "RealtimeSettings", "interim_engine", "queued_audio", "realtime"]
