"""The ``openai`` provider: ``POST /v1/audio/transcriptions`` through the official ``openai`` SDK.

The same API is served by OpenAI (whisper-1, gpt-4o-transcribe) and by self-hosted servers (vLLM,
speaches, LocalAI, ``stt-core serve``): point ``base_url`` at one. Several in one chain are
several config sections naming this provider::

    chain = ["vllm", "openai"]
    [vllm]
    provider = "openai"
    base_url = "http://gpu-box:8000/v1"
    model = "openai/whisper-large-v3"
"""

from __future__ import annotations

from stt_core import ApiKey, ProviderSettings
from stt_core.openai_api import OpenAICompatibleProvider, OpenAICompatibleSettings

OPENAI_URL = "https://api.openai.com/v1"


class OpenAISettings(OpenAICompatibleSettings):
    api_key: ApiKey | None = None
    """OPENAI_API_KEY or STT_OPENAI__API_KEY; a self-hosted server may need none."""
    base_url: str = OPENAI_URL


class OpenAIProvider(OpenAICompatibleProvider):
    name = "openai"
    sdk, client_class = "openai", "AsyncOpenAI"
    Settings = OpenAISettings

    @classmethod
    def unavailable_reason(cls, settings: ProviderSettings) -> str | None:
        assert isinstance(settings, OpenAISettings)
        has_key = settings.api_key is not None and settings.api_key.get_secret_value()
        if not has_key and settings.base_url.rstrip("/") == OPENAI_URL:
            return "no API key; set OPENAI_API_KEY (or [openai] api_key)"
        return None
