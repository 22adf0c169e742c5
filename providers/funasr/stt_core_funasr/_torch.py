"""funasr's own ``AutoModel`` on torch: the torch backend, and what exports the ONNX model. funasr
(and so torch) is imported when a model is first built, never at import."""

from __future__ import annotations

from typing import Any

from ._settings import FunASRSettings


def auto_model(settings: FunASRSettings, model: str) -> Any:
    """``funasr.AutoModel`` for a local directory (or silero-vad): updates off, so no network."""
    from funasr import AutoModel

    return AutoModel(
        model=model, hub=settings.hub, device=settings.device, ncpu=settings.ncpu,
        trust_remote_code=settings.trust_remote_code, disable_update=True,
        disable_pbar=True, disable_log=True,
    )
