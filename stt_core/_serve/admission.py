"""Who may open a ``/v1/realtime`` session: the key (checked here for HTTP too), the intent, and how
many sessions run at once."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fastapi import WebSocket

from .settings import ServeSettings

POLICY, TRY_LATER = 1008, 1013  # WebSocket close codes: policy violation, try again later


class Seats:
    """Places up to ``limit`` taken at once: realtime sessions, or HTTP requests inside and in line."""

    def __init__(self, limit: int) -> None:
        self.limit, self.taken = limit, 0

    def take(self) -> bool:
        if self.taken >= self.limit:
            return False
        self.taken += 1
        return True

    def give_back(self) -> None:
        self.taken -= 1


@dataclass(frozen=True)
class Refusal:
    """Why a connection is closed at once: its close code and reason, its error's text and code."""

    code: int
    reason: str
    message: str
    error: str


def refused(websocket: WebSocket, settings: ServeSettings, seats: Seats) -> Refusal | None:
    """Why this connection is to be closed at once, if it is."""
    if seats.limit == 0:
        return Refusal(POLICY, "realtime is off", "/v1/realtime is off on this server "
                                                  "([serve] max_realtime_sessions = 0)", "realtime_off")
    intent = websocket.query_params.get("intent")
    if intent not in (None, "transcription"):
        return Refusal(POLICY, "only intent=transcription", f"intent {intent!r}: this server only "
                       "transcribes (connect with ?intent=transcription)", "unsupported_intent")
    offered = [p.removeprefix("openai-insecure-api-key.") for p in websocket.scope.get("subprotocols") or []
               if p.startswith("openai-insecure-api-key.")]
    if settings.api_key is None or holds_the_key([bearer(websocket.headers), *offered], settings):
        return None
    return Refusal(POLICY, "invalid or missing API key", "invalid or missing API key (Authorization: "
                   "Bearer ..., or the subprotocol openai-insecure-api-key.KEY)", "invalid_api_key")


def bearer(headers: Mapping[str, str]) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (the scheme is case-insensitive, RFC 9110)."""
    scheme, _, sent = headers.get("authorization", "").strip().partition(" ")
    return sent.strip() if scheme.lower() == "bearer" else None


def holds_the_key(given: Iterable[str | None], settings: ServeSettings) -> bool:
    """Whether one of the keys ``given`` is the server's ``api_key`` (compared in constant time)."""
    assert settings.api_key is not None
    key = settings.api_key.get_secret_value().encode()
    return any(g is not None and hmac.compare_digest(g.encode(), key) for g in given)
