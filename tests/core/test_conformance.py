"""stt-core's own test double passes the suite it ships to plugin authors."""

import pytest

from stt_core import ProviderError
from stt_core.testing import FakeProvider
from stt_core.testing.conformance import ProviderConformance


class TestFakeProvider(ProviderConformance):
    @pytest.fixture
    def provider(self) -> FakeProvider:
        return FakeProvider(api_key="sk-fake-secret", delay=0.05)

    @pytest.fixture
    def failing_provider(self) -> FakeProvider:
        return FakeProvider(script=[ProviderError("vendor said no", status_code=500)])


def test_the_suite_catches_a_provider_that_leaks_its_key() -> None:
    from stt_core import Provider, ProviderSettings, Transcript

    class Leaky(Provider):
        name = "leaky"

        class Settings(ProviderSettings):
            api_key: str = "sk-plain-text"

        async def _transcribe(self, audio, *, language, prompt, word_timestamps):  # type: ignore[no-untyped-def]
            return Transcript("")

    with pytest.raises(AssertionError, match="not a SecretStr"):
        ProviderConformance().test_secrets_are_secret(Leaky())
