"""The provider conformance suite: what every stt-core provider promises, as pytest tests.

A provider author subclasses ``ProviderConformance`` and defines one fixture::

    from stt_core.testing.conformance import ProviderConformance

    class TestMyProvider(ProviderConformance):
        @pytest.fixture
        def provider(self):
            return MyProvider(model="small")

Optional fixtures: ``conformance_audio`` (audio your engine can answer; default 1 s of a
tone), and, for an engine behind HTTP, ``failing_provider``: your provider pointed at the
``fault_server`` fixture (a ``FaultServer`` on 127.0.0.1 that answers what each test queues),
to check that your vendor's errors land in the right place of the stt-core tree::

    @pytest.fixture
    def failing_provider(self, fault_server):
        return MyProvider(api_key="k", base_url=fault_server.url)

Those checks are skipped for engines with no HTTP backend (a local model). The tests run their
own event loops, so no async plugin is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import numpy as np
import pytest
from pydantic import SecretStr

from .._audio import Audio
from .._errors import InvalidAudioError, ProviderError, ProviderUnavailable, STTError, UnmappedError
from .._provider import Provider, ProviderSettings
from .._types import Capabilities, Transcript
from ._faults import FaultServer

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def tone(seconds: float = 1.0, sample_rate: int = 16_000, hz: float = 440.0) -> Audio:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return Audio((0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), sample_rate)


class ProviderConformance:
    """Subclass this and define the ``provider`` fixture."""

    @pytest.fixture
    def provider(self) -> Provider:
        pytest.fail("define a 'provider' fixture that returns your provider")

    @pytest.fixture
    def conformance_audio(self) -> Audio:
        return tone()

    @pytest.fixture
    def failing_provider(self) -> Provider | None:
        return None

    def test_declares_name_settings_capabilities(self, provider: Provider) -> None:
        assert isinstance(type(provider).name, str) and type(provider).name
        assert issubclass(provider.Settings, ProviderSettings)
        assert provider.Settings.model_config.get("extra") == "forbid"
        assert isinstance(provider.capabilities, Capabilities)

    def test_secrets_are_secret(self, provider: Provider) -> None:
        for name, field in provider.Settings.model_fields.items():
            if any(word in name for word in ("key", "token", "secret", "password")):
                assert field.annotation is not None and "SecretStr" in str(field.annotation), (
                    f"setting {name!r} looks like a secret but is not a SecretStr"
                )
        assert not any(
            isinstance(v, str) and v and v in repr(provider)
            for v in (_secret_values(provider.settings))
        ), "a secret appears in the provider's repr"

    def test_returns_a_valid_transcript(self, provider: Provider, conformance_audio: Audio) -> None:
        async def scenario() -> Transcript:
            async with provider:
                return await provider.transcribe(conformance_audio)

        result = _run(scenario())
        assert isinstance(result, Transcript)
        assert isinstance(result.text, str)
        assert result.provider == provider.name
        assert result.latency >= 0
        assert result.duration is not None and result.duration > 0
        for segment in result.segments:
            assert 0 <= segment.start <= segment.end

    def test_empty_audio_is_invalid(self, provider: Provider) -> None:
        empty = Audio(np.zeros((0, 1), dtype=np.float32), 16_000)
        with pytest.raises(InvalidAudioError):
            _run(provider.transcribe(empty))

    @pytest.fixture
    def fault_server(self) -> Iterator[FaultServer]:
        with FaultServer() as server:
            yield server

    @pytest.mark.parametrize(("status", "retry_after", "expected", "retryable"), [
        (401, None, ProviderUnavailable, None),  # a bad key: pass the engine, never retry
        (429, 7.0, ProviderError, True),         # rate limited: retry after what it asked
        (500, None, ProviderError, True),        # its own failure: worth another try
    ])
    def test_vendor_errors_map_to_the_tree(
        self, failing_provider: Provider | None, fault_server: FaultServer, conformance_audio: Audio,
        status: int, retry_after: float | None, expected: type[STTError], retryable: bool | None,
    ) -> None:
        if failing_provider is None:
            pytest.skip("no HTTP backend: define 'failing_provider' (pointed at fault_server) if it has one")
        fault_server.fail_with(status, retry_after=retry_after)
        with pytest.raises(STTError) as raised:
            _run(failing_provider.transcribe(conformance_audio))
        error = raised.value
        assert not isinstance(error, UnmappedError), (
            f"HTTP {status} reached the base class unmapped ({error}): map your SDK's errors in the provider")
        became = type(error).__name__
        assert isinstance(error, expected), f"HTTP {status} became {became}, not {expected.__name__}"
        if retryable is not None:
            assert isinstance(error, ProviderError) and error.retryable is retryable
        if retry_after is not None:
            assert isinstance(error, ProviderError) and error.retry_after == pytest.approx(retry_after)

    def test_cancellation_leaves_no_task_behind(
        self, provider: Provider, conformance_audio: Audio
    ) -> None:
        async def scenario() -> set[asyncio.Task[Any]]:
            before = asyncio.all_tasks()
            task = asyncio.create_task(provider.transcribe(conformance_audio))
            await asyncio.sleep(0.01)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, STTError):
                await task
            for _ in range(3):
                await asyncio.sleep(0)
            return asyncio.all_tasks() - before - {task}

        assert _run(scenario()) == set()

    def test_aclose_is_idempotent(self, provider: Provider) -> None:
        async def scenario() -> None:
            await provider.aclose()
            await provider.aclose()

        _run(scenario())


def _secret_values(settings: ProviderSettings) -> list[str]:
    return [
        value.get_secret_value()
        for value in settings.__dict__.values()
        if isinstance(value, SecretStr)
    ]
