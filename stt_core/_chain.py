"""The fallback chain: itself a Provider that tries its engines in order.

Per request and engine: skip it if it cannot take the request (language, word times), cannot
serve (no key, no model), its breaker is open or it asked to be left alone (429 + Retry-After).
Otherwise call it. A retryable failure falls over to the next engine at once when one can take
the request; the last such engine is retried with backoff, honouring Retry-After (tenacity).
With ``hedge_after`` set, an engine that has not answered in time races the rest of the chain.
Unavailable or misconfigured engines are passed at once, bad audio goes straight back to the
caller, and when nobody answered, ``AllProvidersFailed`` lists every cause.

Streams follow the same rules at connect and mid-stream: the audio since the last final result is
replayed to the next engine, and a stream that takes audio but says nothing for
``stream_stall_timeout`` seconds counts as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import statistics
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import SimpleNamespace
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from ._audio import Audio
from ._breaker import BreakerPolicy, CircuitBreaker
from ._errors import (
    AllProvidersFailed,
    ConfigError,
        ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    STTError,
)
from ._provider import Provider
from ._tape import Tape
from ._text import first_line
from ._types import Attempt, AttemptOutcome, Capabilities, StreamEvent, Transcript

logger = logging.getLogger("stt_core.chain")
T = TypeVar("T")

_LATENCIES_KEPT = 100  # recent answers per engine, for a percentile hedge delay
_MIN_LATENCIES = 10  # a percentile hedge waits for this many answers before it hedges


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    """Calls per engine per request, the first included (only where the chain retries: below)."""
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    jitter: float = 0.2
    max_retry_after: float = 20.0
    """A Retry-After longer than this is not waited for: the chain moves on instead."""
    retry_before_fallover: bool = False
    """False (the default): retry only the last engine that can take the request, and fall over
    at once from the others. True: retry every engine before moving on, for users who would
    rather wait for their first engine (cost, privacy) than fall over."""


class _FellOver(Exception):
    """An engine failed this request in a way the next engine may still answer (cause recorded)."""


@dataclass
class _Request:
    """One request's record: what the chain did, and why each engine could not answer."""

    attempts: list[Attempt] = field(default_factory=list)
    causes: list[tuple[str, BaseException]] = field(default_factory=list)
    opened: set[int] = field(default_factory=set)  # engines whose breaker this request's failures opened

    def may_retry(self, index: int, breaker: CircuitBreaker) -> bool:
        """Never retry into an engine whose breaker another request opened meanwhile."""
        return breaker.state == "closed" or index in self.opened

    def failed(self) -> AllProvidersFailed:
        return AllProvidersFailed(self.causes, attempts=self.attempts)


@dataclass(frozen=True)
class _Plan:
    """How to call an engine for one request."""

    attempts: int
    timeout: float | None
    has_next: bool
    """Whether a later engine could take this request now (where a hedge would go)."""


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
        hedge_after: float | str | None = None,
        stream_stall_timeout: float | None = 10.0,
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
        self.hedge_after = hedge_setting(hedge_after)
        self.stream_stall_timeout = stream_stall_timeout
        self.on_attempt = on_attempt
        self.breaker_policy = breaker or BreakerPolicy()
        self.breakers = [CircuitBreaker(self.breaker_policy, clock) for _ in self.providers]
        self._latencies = [deque[float](maxlen=_LATENCIES_KEPT) for _ in self.providers]
        # Engines without a health() check: a user request probes them after the cool-down.
        self._without_health = {
            i for i, p in enumerate(self.providers) if type(p).health is Provider.health
        }
        self._probers: dict[int, asyncio.Task[None]] = {}
        self._not_loaded: set[int] = set()  # engines whose warmup failed, until one answers
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
        for index, provider in enumerate(self.providers):
            try:
                await provider.warmup()
            except (ProviderUnavailable, ConfigError):  # the chain serves without it
                self._not_loaded.add(index)

    async def _aclose(self) -> None:
        probers = list(self._probers.values())
        for task in probers:
            task.cancel()
        for task in probers:
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):  # RuntimeError: another loop's
                await task
        self._probers.clear()
        for provider in self.providers:
            await provider.aclose()

    # -- batch --------------------------------------------------------------------------------

    async def _transcribe(
        self, audio: Audio, *, language: str | None, prompt: str | None, word_timestamps: bool
    ) -> Transcript:
        request = _Request()

        def call(provider: Provider) -> Awaitable[Transcript]:
            return provider.transcribe(
                audio, language=language, prompt=prompt, word_timestamps=word_timestamps
            )

        result = await self._try_from(0, call, request, language, word_timestamps)
        return result.replace(attempts=tuple(request.attempts))

    async def _try_from(
        self,
        first: int,
        call: Callable[[Provider], Awaitable[Transcript]],
        request: _Request,
        language: str | None,
        word_timestamps: bool,
    ) -> Transcript:
        """Engines ``first`` onward, in order, until one answers."""
        for index in range(first, len(self.providers)):
            plan = await self._admit(index, request, language, word_timestamps)
            if plan is None:
                continue
            attempt = self._call(index, plan, call, request)
            delay = self._hedge_delay(index)
            if delay is not None and plan.has_next:
                return await self._hedged(index, attempt, delay, call, request, language, word_timestamps)
            try:
                return await attempt
            except _FellOver:
                continue
        raise request.failed()

    async def _hedged(
        self,
        index: int,
        attempt: Awaitable[Transcript],
        delay: float,
        call: Callable[[Provider], Awaitable[Transcript]],
        request: _Request,
        language: str | None,
        word_timestamps: bool,
    ) -> Transcript:
        """Engine ``index`` and, if it has not answered within ``delay``, the rest of the chain
        beside it: the first answer wins and the other is cancelled."""
        slow = asyncio.ensure_future(attempt)
        racing = {slow}
        try:
            await asyncio.wait(racing, timeout=delay)
            hedged = not slow.done()
            if hedged:
                logger.info("%s: no answer in %.3fs, hedging", self.providers[index].name, delay)
                racing.add(asyncio.ensure_future(
                    self._try_from(index + 1, call, request, language, word_timestamps)))
            while racing:
                done, racing = await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    with contextlib.suppress(_FellOver, AllProvidersFailed):
                        return task.result()
            if not hedged:  # it failed before the delay: the rest of the chain, as without hedging
                return await self._try_from(index + 1, call, request, language, word_timestamps)
            raise request.failed()
        finally:
            for task in racing:
                task.cancel()
            for task in racing:
                with contextlib.suppress(asyncio.CancelledError, _FellOver, STTError):
                    await task

    async def _call(
        self, index: int, plan: _Plan, call: Callable[[Provider], Awaitable[T]], request: _Request
    ) -> T:
        """One engine, with retries where the plan allows.

        Raises ``_FellOver`` when the next engine may answer; bad audio and cancellation go on up.
        """
        provider = self.providers[index]
        try:
            return await self._with_retries(index, plan, partial(call, provider), request)
        except ProviderError as e:
            request.causes.append((provider.name, e))
            raise _FellOver from e
        except BaseException as e:
            # No verdict on the engine (it cannot serve now, the audio is bad, the caller gave
            # up): a probe in flight is released, so a later request probes again.
            self.breakers[index].release()
            if isinstance(e, ProviderUnavailable | ConfigError):
                request.causes.append((provider.name, e))
                raise _FellOver from e
            raise

    async def _with_retries(
        self, index: int, plan: _Plan, call: Callable[[], Awaitable[T]], request: _Request
    ) -> T:
        breaker = self.breakers[index]

        def should_retry(error: BaseException) -> bool:
            return self._retryable(error) and request.may_retry(index, breaker)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(plan.attempts),
            wait=self._backoff,
            retry=retry_if_exception(should_retry),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(index, call, request, plan.timeout)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _attempt(
        self, index: int, call: Callable[[], Awaitable[T]], request: _Request, limit: float | None
    ) -> T:
        """One call; the breaker learns its outcome (each failed call counts)."""
        provider = self.providers[index]
        started = time.perf_counter()
        try:
            async with asyncio.timeout(limit):
                result = await call()
        except TimeoutError as e:
            error = ProviderTimeout(f"{provider.name} took longer than {limit}s", provider=provider.name)
            self._failed(index, request, error, started)
            raise error from e
        except STTError as e:
            self._failed(index, request, e, started)
            raise
        except asyncio.CancelledError:
            self._record(request, provider, "cancelled", time.perf_counter() - started)
            raise
        latency = time.perf_counter() - started
        self._latencies[index].append(latency)
        self._not_loaded.discard(index)
        self.breakers[index].record_success()
        self._record(request, provider, "ok", latency)
        return result

    def _failed(self, index: int, request: _Request, error: STTError, started: float) -> None:
        """Record a failed call: an engine failure counts toward its breaker; a 429 with
        Retry-After holds the engine for every request instead."""
        latency = time.perf_counter() - started
        self._record(request, self.providers[index], _outcome(error), latency, str(error))
        if not isinstance(error, ProviderError):
            return
        breaker = self.breakers[index]
        if error.status_code == 429 and error.retry_after:
            breaker.hold(error.retry_after)  # a rate limit with its own wait: not a broken engine
            return
        if breaker.record_failure():
            request.opened.add(index)
            if self._probes_in_background(index):
                self._start_prober(index)

    def _retryable(self, error: BaseException) -> bool:
        if not (isinstance(error, ProviderError) and error.retryable):
            return False
        return error.retry_after is None or error.retry_after <= self.retry.max_retry_after

    def _backoff(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ProviderError) and error.retry_after is not None:
            return max(0.0, error.retry_after)
        return float(self._exponential(state))

    # -- routing, breakers, probes ------------------------------------------------------------

    async def _admit(
        self, index: int, request: _Request, language: str | None, word_timestamps: bool
    ) -> _Plan | None:
        """How to call engine ``index`` for this request, or ``None`` (skip, reason recorded)."""
        provider, breaker = self.providers[index], self.breakers[index]
        later = self._next_admissible(index, language, word_timestamps)
        blocked = self._route(provider, language, word_timestamps)
        if blocked is None and later is None and breaker.state == "closed":
            # The last engine that can answer: wait out its Retry-After (if we would) rather than fail.
            held = breaker.held_for()
            if 0 < held <= self.retry.max_retry_after:
                await asyncio.sleep(held)
        if blocked is None:
            background = self._probes_in_background(index)
            gate = breaker.gate(probes_in_background=background)
            if gate == "skip":
                blocked = breaker.blocked(probes_in_background=background)
                if breaker.state == "open" and background:
                    self._start_prober(index)
            elif gate == "probe":
                # A user request probes an engine without health(): one short attempt, no retries.
                return _Plan(1, _min(self.attempt_timeout, self.breaker_policy.probe_timeout),
                             has_next=later is not None)
        if blocked:
            self._record(request, provider, "skipped", 0.0, blocked)
            request.causes.append((provider.name, ProviderUnavailable(blocked, provider=provider.name)))
            return None
        retries = self.retry.retry_before_fallover or later is None
        return _Plan(self.retry.attempts if retries else 1, self.attempt_timeout, has_next=later is not None)

    def ready(self) -> list[str]:
        """The engines that could take a request now (installed, configured, model loaded, breaker
        not open), judged without calling them: what a readiness check reports."""
        return [p.name for i, p in enumerate(self.providers)
                if i not in self._not_loaded and self._admissible(i, None, False)]

    def _next_admissible(self, index: int, language: str | None, word_timestamps: bool) -> int | None:
        """The first engine after ``index`` that could take this request now, judged without calling it."""
        later = range(index + 1, len(self.providers))
        return next((i for i in later if self._admissible(i, language, word_timestamps)), None)

    def _admissible(self, index: int, language: str | None, word_timestamps: bool) -> bool:
        provider, breaker = self.providers[index], self.breakers[index]
        return not (
            self._route(provider, language, word_timestamps)
            or breaker.blocked(probes_in_background=self._probes_in_background(index))
            or provider.why_unavailable()  # a check that raises says so here, not a crash
        )

    @staticmethod
    def _route(provider: Provider, language: str | None, word_timestamps: bool) -> str | None:
        """Why ``provider`` cannot take this request, judged from what it declares."""
        if not provider.capabilities.supports_language(language):
            return f"does not support language {language!r}"
        if word_timestamps and not provider.capabilities.word_timestamps:
            return "does not give word timestamps"
        return None

    def _probes_in_background(self, index: int) -> bool:
        return index not in self._without_health

    def _start_prober(self, index: int) -> None:
        """Probe an open engine's ``health()`` in the background until it passes (lazily, in the
        running loop; ``aclose()`` stops it)."""
        task = self._probers.get(index)
        loop = asyncio.get_running_loop()
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        self._probers[index] = loop.create_task(self._probe_until_healthy(index))

    async def _probe_until_healthy(self, index: int) -> None:
        provider, breaker, policy = self.providers[index], self.breakers[index], self.breaker_policy
        if breaker.relapses:  # it failed again right after a probe passed: do not probe at once
            await asyncio.sleep(breaker.probe_delay() * random.uniform(0.8, 1.2))
        while breaker.state == "open":
            started = time.perf_counter()
            try:
                async with asyncio.timeout(policy.probe_timeout):
                    healthy = await provider.health()
            except Exception as e:  # a failing health check is a "no", whatever it raised
                logger.info("%s: health probe failed: %s", provider.name, _described(e))
                healthy = False
            if healthy is None:  # no health(): a user request will probe it after the cool-down
                self._without_health.add(index)
                return
            logger.info("%s: health probe %s (%.3fs)", provider.name, "passed" if healthy else "failed",
                        time.perf_counter() - started)
            if healthy:
                breaker.probe_passed()
                return
            await asyncio.sleep(breaker.probe_delay() * random.uniform(0.8, 1.2))

    def _hedge_delay(self, index: int) -> float | None:
        if self.hedge_after is None or isinstance(self.hedge_after, float):
            return self.hedge_after
        seen = self._latencies[index]
        if len(seen) < _MIN_LATENCIES:
            return None
        return statistics.quantiles(seen, n=100, method="inclusive")[self.hedge_after - 1]

    def _record(
        self,
        request: _Request,
        provider: Provider,
        outcome: AttemptOutcome,
        latency: float,
        error: str | None = None,
    ) -> None:
        attempt = Attempt(provider.name, outcome, latency, error)
        request.attempts.append(attempt)
        level = logging.DEBUG if outcome == "ok" else logging.INFO
        logger.log(level, "%s: %s (%.3fs)%s", provider.name, outcome, latency,
                   f": {error}" if error else "")
        if self.on_attempt is not None:
            self.on_attempt(attempt)

    # -- streaming ----------------------------------------------------------------------------

    async def _stream(
        self, audio: AsyncIterable[Audio], *, language: str | None
    ) -> AsyncIterator[StreamEvent]:
        tape = Tape(audio)
        try:
            async for event in self._stream_through(tape, language):
                yield event
        finally:
            tape.close()

    async def _stream_through(self, tape: Tape, language: str | None) -> AsyncIterator[StreamEvent]:
        request = _Request()
        for index, provider in enumerate(self.providers):
            plan = await self._admit(index, request, language, False)
            if plan is None:
                continue
            breaker, verdict = self.breakers[index], False
            try:
                for number in range(1, plan.attempts + 1):
                    started = time.perf_counter()
                    try:
                        async for event in self._engine_events(provider, tape, language, plan):
                            yield event
                    except (ProviderError, ProviderUnavailable, ConfigError) as e:
                        self._failed(index, request, e, started)
                        verdict = isinstance(e, ProviderError)
                        again = number < plan.attempts and request.may_retry(index, breaker)
                        if isinstance(e, ProviderError) and again and self._retryable(e):
                            await asyncio.sleep(self._wait_before(number, e))
                            continue
                        request.causes.append((provider.name, e))
                        break
                    verdict = True
                    breaker.record_success()
                    self._record(request, provider, "ok", time.perf_counter() - started)
                    return
            finally:
                if not verdict:
                    breaker.release()
        raise request.failed()

    async def _engine_events(
        self, provider: Provider, tape: Tape, language: str | None, plan: _Plan
    ) -> AsyncIterator[StreamEvent]:
        """One engine's events for the replayed and live audio, on the stream's clock.

        Bounds: an engine that streams natively must say something within ``stream_stall_timeout``
        of being given audio; one that answers at the end must do so within the attempt timeout
        of the end of the input. Final results commit the audio they cover, if they are believable.
        """
        offset, replay = tape.replay_start, tape.replay()
        events = provider.stream(replay, language=language)
        stall = self.stream_stall_timeout if provider.capabilities.streaming else None
        tape.answered()
        try:
            while True:
                next_event = asyncio.ensure_future(anext(events))
                try:
                    while not next_event.done():
                        deadline = tape.deadline(stall, plan.timeout)
                        wait = 0.1 if deadline is None else min(0.1, max(0.0, deadline - time.monotonic()))
                        await asyncio.wait({next_event}, timeout=wait)
                        if not next_event.done() and deadline is not None and time.monotonic() >= deadline:
                            raise ProviderTimeout(
                                f"{provider.name} said nothing for {stall if tape.live else plan.timeout}s "
                                f"of {'audio' if tape.live else 'waiting after the end of the audio'}",
                                provider=provider.name,
                            )
                    event = next_event.result()
                except StopAsyncIteration:
                    return
                finally:
                    if not next_event.done():
                        next_event.cancel()
                        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, STTError):
                            await next_event
                tape.answered()
                event = event.shifted(offset)
                if event.is_final:
                    tape.commit(event.end, provider.name)
                yield event
        finally:
            with contextlib.suppress(RuntimeError):  # still running: the provider leaked a task
                await events.aclose()  # type: ignore[attr-defined]
            with contextlib.suppress(RuntimeError):
                await replay.aclose()

    def _wait_before(self, attempt_number: int, error: ProviderError) -> float:
        """The backoff before retry ``attempt_number + 1`` of a stream: as for batch requests."""
        if error.retry_after is not None:
            return max(0.0, error.retry_after)
        return float(self._exponential(SimpleNamespace(attempt_number=attempt_number)))  # type: ignore[arg-type]


def hedge_setting(value: float | str | None) -> float | int | None:
    """``hedge_after`` as seconds (a float) or a percentile (an int from 1 to 99)."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower().startswith("p"):
        try:
            percentile = int(value.strip()[1:])
        except ValueError:
            percentile = 0
        if not 1 <= percentile <= 99:
            raise ConfigError(f"hedge_after {value!r}: a percentile is written p1 to p99, e.g. 'p95'")
        return percentile
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"hedge_after {value!r}: give seconds (e.g. 0.5) or a percentile ('p95')") from None
    if not 0 <= seconds <= 3600:
        raise ConfigError(f"hedge_after {value!r}: seconds must be between 0 and 3600")
    return seconds


def _min(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def _described(error: BaseException) -> str:
    """An attempt's error for its record: the class and the first line of the message."""
    line = first_line(error)
    return line if line == type(error).__name__ else f"{type(error).__name__}: {line}"


def _outcome(error: BaseException) -> AttemptOutcome:
    if isinstance(error, ProviderTimeout):
        return "timeout"
    if isinstance(error, ProviderUnavailable | ConfigError):
        return "unavailable"
    return "error"

