"""The fallback chain: itself a Provider that tries its engines in order.

Per engine: skip it if it cannot take the request (language, word times) or its breaker is
open; otherwise call it with tenacity retries on retryable errors (honouring Retry-After) and a
time limit per attempt. Unavailable or misconfigured engines are passed at once, bad audio goes
straight back to the caller, and when nobody answered, ``AllProvidersFailed`` lists every cause.
Streams fail over too: the audio since the last final result is replayed to the next engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from ._audio import Audio
from ._breaker import BreakerPolicy, CircuitBreaker
from ._errors import (
    AllProvidersFailed,
    ConfigError,
    InvalidAudioError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    STTError,
)
from ._provider import Provider
from ._types import Attempt, AttemptOutcome, Capabilities, StreamEvent, Transcript

logger = logging.getLogger("stt_core.chain")
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    """Calls per engine per request, the first included."""
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    jitter: float = 0.2
    max_retry_after: float = 20.0
    """A Retry-After longer than this is not waited for: the chain moves on instead."""


class Chain(Provider):
    """Try ``providers`` in order until one answers."""

    name = "chain"

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        retry: RetryPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        attempt_timeout: float | None = 60.0,
        on_attempt: Callable[[Attempt], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.providers = list(providers)
        self.retry = retry or RetryPolicy()
        self._exponential = wait_exponential_jitter(
            multiplier=self.retry.initial_backoff, max=self.retry.max_backoff, jitter=self.retry.jitter
        )
        self.attempt_timeout = attempt_timeout
        self.on_attempt = on_attempt
        policy = breaker or BreakerPolicy()
        self.breakers = [CircuitBreaker(policy, clock) for _ in self.providers]
        members = [p.capabilities for p in self.providers]
        languages = [c.languages for c in members]
        self.capabilities = Capabilities(
            streaming=any(c.streaming for c in members),
            languages=None if None in languages else frozenset().union(*languages),  # type: ignore[arg-type]
            word_timestamps=any(c.word_timestamps for c in members),
            offline=any(c.offline for c in members),
        )

    @property
    def model(self) -> str:
        return " -> ".join(p.name for p in self.providers)

    def __repr__(self) -> str:
        return f"Chain({self.model})"

    async def warmup(self) -> None:
        for provider in self.providers:
            with contextlib.suppress(ProviderUnavailable, ConfigError):
                await provider.warmup()

    async def _aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()

    # -- batch --------------------------------------------------------------------------------

    async def _transcribe(
        self, audio: Audio, *, language: str | None, prompt: str | None, word_timestamps: bool
    ) -> Transcript:
        attempts: list[Attempt] = []
        causes: list[tuple[str, BaseException]] = []
        for provider, breaker in zip(self.providers, self.breakers, strict=True):
            if not await self._admit(provider, breaker, language, word_timestamps, attempts, causes):
                continue
            try:
                result: Transcript = await self._with_retries(
                    provider,
                    partial(
                        provider.transcribe,
                        audio, language=language, prompt=prompt, word_timestamps=word_timestamps,
                    ),
                    attempts,
                )
            except InvalidAudioError:
                breaker.release()
                raise
            except (ProviderUnavailable, ConfigError) as e:
                breaker.release()
                causes.append((provider.name, e))
            except ProviderError as e:
                breaker.record_failure()
                causes.append((provider.name, e))
            except BaseException:
                breaker.release()
                raise
            else:
                breaker.record_success()
                return result.replace(attempts=tuple(attempts))
        raise AllProvidersFailed(causes, attempts=attempts)

    async def _with_retries(
        self, provider: Provider, call: Callable[[], Awaitable[T]], attempts: list[Attempt]
    ) -> T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._backoff,
            retry=retry_if_exception(self._should_retry),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(provider, call, attempts)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _attempt(
        self, provider: Provider, call: Callable[[], Awaitable[T]], attempts: list[Attempt]
    ) -> T:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.attempt_timeout):
                result = await call()
        except TimeoutError as e:
            error = ProviderTimeout(
                f"{provider.name} took longer than {self.attempt_timeout}s", provider=provider.name
            )
            self._record(attempts, provider, "timeout", time.perf_counter() - started, str(error))
            raise error from e
        except STTError as e:
            self._record(attempts, provider, _outcome(e), time.perf_counter() - started, str(e))
            raise
        self._record(attempts, provider, "ok", time.perf_counter() - started)
        return result

    def _should_retry(self, error: BaseException) -> bool:
        if not (isinstance(error, ProviderError) and error.retryable):
            return False
        return error.retry_after is None or error.retry_after <= self.retry.max_retry_after

    def _backoff(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ProviderError) and error.retry_after is not None:
            return max(0.0, error.retry_after)
        return float(self._exponential(state))

    # -- routing, breakers, reporting ------------------------------------------------------------

    async def _admit(
        self,
        provider: Provider,
        breaker: CircuitBreaker,
        language: str | None,
        word_timestamps: bool,
        attempts: list[Attempt],
        causes: list[tuple[str, BaseException]],
    ) -> bool:
        """Whether to call ``provider`` for this request; a skip is recorded with its reason."""
        blocked = self._route(provider, language, word_timestamps) or await self._pass_breaker(
            provider, breaker
        )
        if blocked:
            self._record(attempts, provider, "skipped", 0.0, blocked)
            causes.append((provider.name, ProviderUnavailable(blocked, provider=provider.name)))
        return not blocked

    @staticmethod
    def _route(provider: Provider, language: str | None, word_timestamps: bool) -> str | None:
        """Why ``provider`` cannot take this request, judged from what it declares."""
        if not provider.capabilities.supports_language(language):
            return f"does not support language {language!r}"
        if word_timestamps and not provider.capabilities.word_timestamps:
            return "does not give word timestamps"
        return None

    async def _pass_breaker(self, provider: Provider, breaker: CircuitBreaker) -> str | None:
        """``None`` if the provider may be called; else why it is skipped."""
        gate = breaker.gate()
        if gate == "call":
            return None
        if gate == "skip":
            return "circuit breaker open after repeated failures"
        # Half-open: a cheap health check decides where the provider has one; where it has
        # none, this request's own call is the probe.
        try:
            async with asyncio.timeout(self.attempt_timeout):
                healthy = await provider.health()
        except Exception:  # a failing health check is a "no", whatever it raised
            healthy = False
        if healthy is False:
            breaker.record_failure()
            return "circuit breaker open: health check failed"
        if healthy:
            breaker.record_success()
        return None

    def _record(
        self,
        attempts: list[Attempt],
        provider: Provider,
        outcome: AttemptOutcome,
        latency: float,
        error: str | None = None,
    ) -> None:
        attempt = Attempt(provider.name, outcome, latency, error)
        attempts.append(attempt)
        level = logging.DEBUG if outcome == "ok" else logging.INFO
        logger.log(level, "%s: %s (%.3fs)%s", provider.name, outcome, latency,
                   f": {error}" if error else "")
        if self.on_attempt is not None:
            self.on_attempt(attempt)

    # -- streaming ----------------------------------------------------------------------------

    async def _stream(
        self, audio: AsyncIterable[Audio], *, language: str | None
    ) -> AsyncIterator[StreamEvent]:
        tape = _Tape(audio)
        try:
            async for event in self._stream_through(tape, language):
                yield event
        finally:
            tape.close()

    async def _stream_through(self, tape: _Tape, language: str | None) -> AsyncIterator[StreamEvent]:
        attempts: list[Attempt] = []
        causes: list[tuple[str, BaseException]] = []
        for provider, breaker in zip(self.providers, self.breakers, strict=True):
            if not await self._admit(provider, breaker, language, False, attempts, causes):
                continue
            offset, replay = tape.replay_start, tape.replay()
            started = time.perf_counter()
            try:
                async for event in provider.stream(replay, language=language):
                    event = event.shifted(offset)
                    if event.is_final:
                        tape.commit(event.end)
                    yield event
            except InvalidAudioError:
                breaker.release()
                raise
            except STTError as e:
                if isinstance(e, ProviderError):
                    breaker.record_failure()
                else:
                    breaker.release()
                self._record(attempts, provider, _outcome(e), time.perf_counter() - started, str(e))
                causes.append((provider.name, e))
                continue
            finally:
                with contextlib.suppress(RuntimeError):  # still running: the provider leaked a task
                    await replay.aclose()
            breaker.record_success()
            self._record(attempts, provider, "ok", time.perf_counter() - started)
            return
        raise AllProvidersFailed(causes, attempts=attempts)


class _Tape:
    """The live input, recorded from the last final result on, so a failed engine's
    unfinished audio can be replayed to the next one."""

    def __init__(self, source: AsyncIterable[Audio]) -> None:
        self._source = aiter(source)
        self._kept: list[tuple[float, Audio]] = []  # (start second in the stream, chunk)
        self._pulled = 0.0  # seconds taken from the source so far
        self._ended = False
        self._next: asyncio.Future[Audio] | None = None  # the source's next chunk, being read

    @property
    def replay_start(self) -> float:
        return self._kept[0][0] if self._kept else self._pulled

    async def replay(self) -> AsyncGenerator[Audio, None]:
        for _, chunk in list(self._kept):
            yield chunk
        while not self._ended:
            if self._next is None:
                self._next = asyncio.ensure_future(anext(self._source))
            try:
                # Shielded: an engine that stops reading mid-chunk (it failed, or was cancelled)
                # must not cancel the caller's source; the next engine picks the read up.
                chunk = await asyncio.shield(self._next)
            except StopAsyncIteration:
                self._ended = True
                return
            self._next = None
            self._kept.append((self._pulled, chunk))
            self._pulled += chunk.duration
            yield chunk

    def close(self) -> None:
        """Stop a read left pending when the stream ends early (the caller gave up)."""
        if self._next is not None and not self._next.done():
            self._next.cancel()

    def commit(self, end: float | None) -> None:
        """Forget the audio before ``end``: a final result covers it. ``None``: keep all."""
        if end is None:
            return
        kept = []
        for start, chunk in self._kept:
            if start + chunk.duration <= end:
                continue
            if start < end:
                chunk, start = chunk.slice(end - start), end
            if chunk.num_frames:
                kept.append((start, chunk))
        self._kept = kept


def _outcome(error: BaseException) -> AttemptOutcome:
    if isinstance(error, ProviderTimeout):
        return "timeout"
    if isinstance(error, ProviderUnavailable | ConfigError):
        return "unavailable"
    return "error"
