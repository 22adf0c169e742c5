"""stt-core's own test double passes the suite it ships to plugin authors."""

import asyncio
import urllib.error
import urllib.request

import pytest

from stt_core import (
    Provider,
    ProviderError,
    ProviderSettings,
    ProviderUnavailable,
    Transcript,
    error_for_status,
)
from stt_core.testing import FakeProvider, FaultServer
from stt_core.testing.conformance import ProviderConformance, tone


class TestFakeProvider(ProviderConformance):
    @pytest.fixture
    def provider(self) -> FakeProvider:
        return FakeProvider(api_key="sk-fake-secret", delay=0.05)



def test_the_suite_catches_a_provider_that_leaks_its_key() -> None:
    class Leaky(Provider):
        name = "leaky"

        class Settings(ProviderSettings):
            api_key: str = "sk-plain-text"

        async def _transcribe(self, audio, *, language, prompt, word_timestamps):  # type: ignore[no-untyped-def]
            return Transcript("")

    with pytest.raises(AssertionError, match="not a SecretStr"):
        ProviderConformance().test_secrets_are_secret(Leaky())


class RawHTTP(Provider):
    """A cloud provider that lets its HTTP library's errors through unmapped."""

    name = "rawhttp"

    class Settings(ProviderSettings):
        base_url: str = ""

    async def _transcribe(self, audio, *, language, prompt, word_timestamps):  # type: ignore[no-untyped-def]
        url = f"{self.settings.base_url}/v1/transcribe"  # type: ignore[attr-defined]
        await asyncio.to_thread(urllib.request.urlopen, url, b"audio", 5)
        return Transcript("")


class MappedHTTP(RawHTTP):
    name = "mappedhttp"

    async def _transcribe(self, audio, *, language, prompt, word_timestamps):  # type: ignore[no-untyped-def]
        try:
            return await super()._transcribe(audio, language=language, prompt=prompt,
                                             word_timestamps=word_timestamps)
        except urllib.error.HTTPError as e:
            raise error_for_status(e.code, str(e.reason), provider=self.name,
                                   retry_after=e.headers.get("Retry-After")) from e


@pytest.mark.parametrize(("status", "retry_after", "expected", "retryable"), [
    (401, None, ProviderUnavailable, None), (429, 7.0, ProviderError, True), (500, None, ProviderError, True),
])
def test_the_error_mapping_check_fails_an_unmapped_provider_and_passes_a_mapped_one(
    status: int, retry_after: float | None, expected: type, retryable: bool | None
) -> None:
    suite, args = ProviderConformance(), (tone(), status, retry_after, expected, retryable)
    with FaultServer() as server:
        with pytest.raises(AssertionError, match="unmapped"):
            suite.test_vendor_errors_map_to_the_tree(RawHTTP(base_url=server.url), server, *args)
        suite.test_vendor_errors_map_to_the_tree(MappedHTTP(base_url=server.url), server, *args)
