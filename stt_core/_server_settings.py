"""The ``[serve]`` table (``STT_SERVE__<FIELD>``), apart from the server so that ``config show``
can read it without FastAPI installed."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ._provider import ApiKey

SECTION = "serve"


class ServeSettings(BaseModel):
    """The ``[serve]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: ApiKey | None = None
    """Clients must send ``Authorization: Bearer <api_key>``; unset: no key is asked for."""
    max_upload_mb: float = Field(25.0, gt=0, le=2000)
    max_concurrent: int = Field(4, ge=1, le=1024)
    max_waiting: int = Field(64, ge=0, le=100_000)
    shutdown_timeout: int = Field(30, ge=0, le=3600)
    """Seconds a SIGTERM waits for requests in flight."""
