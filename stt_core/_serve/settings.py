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
    opens or its last answer went out: idle and slowloris connections are closed after it. A
    ``/v1/realtime`` connection has as long to send its first ``session.update``."""
    metrics: bool = True
    """``GET /metrics``: stt-core's metrics in Prometheus text, behind ``api_key`` when one is set."""
    body_timeout: float = Field(120.0, gt=0, le=3600)
    """Seconds a request may take to send its whole body (25 MB in 120 s is 1.7 Mbit/s): a slower
    upload is answered 408. A request waits for a place in line only once its body is in."""
    page: bool = True
    """``GET /``: a page to try the server in a browser (microphone and file picker)."""
    max_realtime_sessions: int = Field(8, ge=0, le=1024)
    """``/v1/realtime`` sessions at once (a session counts from its first ``session.update``); past
    it a session is closed with 1013 (try again later). 0 turns the endpoint off."""
    max_message_mb: float = Field(1.0, gt=0, le=16)
    """The largest ``/v1/realtime`` message (1 MB of base64 is about 16 s of 24 kHz PCM); a larger
    one closes the session with 1009 (message too big)."""
    max_buffer_seconds: float = Field(60.0, ge=1, le=3600)
    """Seconds of a session's audio the server holds: with ``turn_detection`` null, audio appended
    and not committed (past it the session is closed); with the server's VAD, audio not yet
    transcribed (past it the server stops reading until the engine catches up, so a client faster
    than real time waits; the utterance whose end was heard last may add its own length)."""
    realtime_idle_timeout: float = Field(60.0, gt=0, le=86_400)
    """Seconds a ``/v1/realtime`` session may send nothing before it is closed; a client that does
    not read what it is sent for ``head_timeout`` seconds is cut off."""
