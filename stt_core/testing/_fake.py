"""``FakeProvider``: a scripted provider for tests of chains, adapters and applications."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import numpy as np
from pydantic import SecretStr

from .._audio import Audio
from .._errors import ProviderError
from .._provider import Provider, ProviderSettings
from .._types import Capabilities, Segment, StreamEvent, Transcript

ScriptItem = str | Transcript | BaseException | Callable[[Audio], Awaitable[Transcript | str]]


class FakeSettings(ProviderSettings):
    text: str = "hello world"
    language: str | None = "en"
    model: str = "fake-1"
    api_key: SecretStr | None = None


class FakeProvider(Provider):
    """Answers from a script, one item per call, then with ``settings.text`` (or an echo).

    Script items: a string or ``Transcript`` to return, an exception to raise, or an async
    callable given the audio. ``echo=True`` answers with one token per 0.1 s block of audio,
    the block's mean level times 1000, so tests can see exactly which audio an engine got.
    Streaming is native: an interim event per chunk, a final one every ``final_every`` chunks,
    and a dropped stream (retryable ``ProviderError``) after ``fail_stream_after`` chunks.
    Answers carry ``confidence`` (default: none, so the chain never doubts them) and the
    language asked for, else ``settings.language`` if it declares it, else one it declares.
    """

    name = "fake"
    Settings = FakeSettings
    capabilities = Capabilities(streaming=True, word_timestamps=True, offline=True)

    def __init__(
        self,
        settings: ProviderSettings | None = None,
        /,
        *,
        name: str | None = None,
        script: Sequence[ScriptItem] = (),
        delay: float = 0.0,
        healthy: bool | None = None,
        capabilities: Capabilities | None = None,
        echo: bool = False,
        final_every: int = 1,
        fail_stream_after: int | None = None,
        confidence: float | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(settings, **fields)
        if name is not None:
            self.name = name  # type: ignore[misc]  # an instance may go by another name
        if capabilities is not None:
            self.capabilities = capabilities
        self.script = list(script)
        self.delay = delay
        self.healthy = healthy
        self.echo = echo
        self.final_every = final_every
        self.fail_stream_after = fail_stream_after
        self.confidence = confidence
        self.calls: list[Audio] = []
        self.streams: list[list[Audio]] = []
        self.health_checks = 0
        self.closed_count = 0

    async def _transcribe(
        self, audio: Audio, *, language: str | None, prompt: str | None, word_timestamps: bool
    ) -> Transcript:
        self.calls.append(audio)
        if self.delay:
            await asyncio.sleep(self.delay)
        item: ScriptItem | None = self.script.pop(0) if self.script else None
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            item = await item(audio)
        if isinstance(item, Transcript):
            return item
        text = item if item is not None else (echo_text(audio) if self.echo else self.settings.text)  # type: ignore[attr-defined]
        segment = Segment(text, 0.0, audio.duration, confidence=0.9)
        return Transcript(text, language=language or self._language(), confidence=self.confidence,
                          segments=(segment,))

    def _language(self) -> str | None:
        own: str | None = self.settings.language  # type: ignore[attr-defined]
        declared = self.capabilities.languages
        return own if not declared or own in declared else min(declared)

    async def _stream(
        self, audio: AsyncIterable[Audio], *, language: str | None
    ) -> AsyncIterator[StreamEvent]:
        if not self.capabilities.streaming:  # act as a batch-only engine does
            async for event in super()._stream(audio, language=language):
                yield event
            return
        received: list[Audio] = []
        self.streams.append(received)
        pending: list[Audio] = []
        now = start = 0.0
        async for chunk in audio:
            if self.fail_stream_after is not None and len(received) >= self.fail_stream_after:
                raise ProviderError(f"{self.name}: stream dropped", provider=self.name, retryable=True)
            received.append(chunk)
            pending.append(chunk)
            now += chunk.duration
            if self.delay:
                await asyncio.sleep(self.delay)
            yield self._event("interim", pending, start, now)
            if len(pending) >= self.final_every:
                yield self._event("final", pending, start, now)
                pending, start = [], now
        if pending:
            yield self._event("final", pending, start, now)

    def _event(self, kind: str, pieces: list[Audio], start: float, end: float) -> StreamEvent:
        text = echo_text(Audio.concat(pieces)) if self.echo else self.settings.text  # type: ignore[attr-defined]
        return StreamEvent(kind, text, start=start, end=end, confidence=self.confidence,  # type: ignore[arg-type]
                           provider=self.name)

    async def health(self) -> bool | None:
        self.health_checks += 1
        return self.healthy

    async def _aclose(self) -> None:
        self.closed_count += 1


def echo_text(audio: Audio, block: float = 0.1) -> str:
    """One token per ``block`` seconds: the block's mean level times 1000, rounded."""
    samples = audio.mono_float32()
    size = max(1, round(block * audio.sample_rate))
    means = [float(np.mean(samples[i:i + size])) for i in range(0, len(samples), size)]
    return " ".join(str(round(m * 1000)) for m in means)


def level_chunks(levels: Sequence[int], seconds: float = 0.1, sample_rate: int = 16_000) -> list[Audio]:
    """Chunks of constant level ``n / 1000``: what ``echo_text`` reads back as ``n``."""
    frames = round(seconds * sample_rate)
    return [Audio(np.full(frames, n / 1000, dtype=np.float32), sample_rate) for n in levels]
