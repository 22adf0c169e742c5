"""The ``[serve]`` table (``STT_SERVE__<FIELD>``), apart from the server so that ``config show``
can read it without FastAPI installed."""

from __future__ import annotations

from pydantic import BaseModel, Field

from .._provider import ApiKey
from .._types import SETTINGS_MODEL

SECTION = "serve"


class ServeSettings(BaseModel):
    """The ``[serve]`` table."""

    model_config = SETTINGS_MODEL
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: ApiKey | None = None
    """Clients must send ``Authorization: Bearer <api_key>``; unset: no key is asked for."""
    max_upload_mb: float = Field(25.0, gt=0, le=2000)
    max_concurrent: int = Field(4, ge=1, le=1024)
    max_waiting: int = Field(64, ge=0, le=100_000)
    shutdown_timeout: int = Field(30, ge=0, le=3600)
    """Seconds a SIGTERM waits for requests in flight."""
    head_timeout: float = Field(10.0, gt=0, le=3600)
    """Seconds a connection may take to send its request's head (line and headers), from when it
    opens or its last answer went out: idle and slowloris connections are closed after it."""
    metrics: bool = True
    """``GET /metrics``: stt-core's metrics in Prometheus text, behind ``api_key`` when one is set."""
    body_timeout: float = Field(120.0, gt=0, le=3600)
    """Seconds a request may take to send its whole body (25 MB in 120 s is 1.7 Mbit/s): a slower
    upload is answered 408. A request waits for a place in line only once its body is in."""
