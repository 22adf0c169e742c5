"""Any stt-core engine or fallback chain as a Pipecat STT service: ``ChainSTTService``."""

from ._service import PIPECAT_STOP_SECS, ChainSTTService

__all__ = ["PIPECAT_STOP_SECS", "ChainSTTService"]
