"""The ``groq`` provider: Whisper on Groq's cloud, through the official ``groq`` SDK (async client).

Groq speaks the OpenAI transcription API, and its SDK has the OpenAI SDK's shape, so the request,
the answer checks and the error mapping are ``stt_core.openai_api``'s; this module holds what is
Groq's own: its defaults, its key and its request id.
"""

from __future__ import annotations

from typing import Any

from stt_core import ApiKey, ProviderSettings
from stt_core.openai_api import OpenAICompatibleProvider, OpenAICompatibleSettings


class GroqSettings(OpenAICompatibleSettings):
    api_key: ApiKey | None = None
    """GROQ_API_KEY or STT_GROQ__API_KEY."""
    model: str = "whisper-large-v3-turbo"
    base_url: str = "https://api.groq.com"  # the groq SDK adds /openai/v1 itself


class GroqProvider(OpenAICompatibleProvider):
    name = "groq"
    sdk, client_class = "groq", "AsyncGroq"
    Settings = GroqSettings

    @classmethod
    def unavailable_reason(cls, settings: ProviderSettings) -> str | None:
        assert isinstance(settings, GroqSettings)
        if settings.api_key is None or not settings.api_key.get_secret_value():
            return "no API key; set GROQ_API_KEY (or [groq] api_key)"
        return None

    def answer_metadata(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"request_id": (data.get("x_groq") or {}).get("id")}
