"""Any stt-core engine or fallback chain as a Pipecat STT service: ``ChainSTTService``."""

from ._service import ChainSTTService, never_serves

__all__ = ["ChainSTTService", "never_serves"]
