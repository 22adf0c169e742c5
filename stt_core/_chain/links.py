"""The chain's engines as links: each one's state, and the steps both drivers take at an engine.

- ``Link``: one engine and what the chain knows of it (breaker, recent latencies, health prober).
- ``Request``: one request's record (attempts, why each engine could not answer).
- ``Links``: the ordered links under the chain's policies: ``admit`` a request at a link, the
  retry loop (``tries``, tenacity), one ``attempt`` and what its outcome teaches the breaker.
  Every decision is ``policy``'s; this module does what it says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from tenacity import AsyncRetrying, RetryCallState
from tenacity.wait import wait_exponential_jitter

from .. import telemetry
from .._errors import (
    AllProvidersFailed,
    ConfigError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    STTError,
)
from .._provider import Provider
from .._registry import UnusableEngine
from .._text import first_line
from .._types import Attempt, AttemptOutcome, Transcript, has_words
from . import policy, quality
from .breaker import BreakerPolicy, CircuitBreaker, Gate

logger = logging.getLogger("stt_core.chain")

_LATENCIES_KEPT = 100  # recent answers per engine, for a percentile hedge delay


class Unanswered(Exception):
    """An engine could not answer this request, and the next one may (the cause is recorded)."""


class Doubted(Exception):
    """An engine answered and the chain doubts the answer (``quality.judge``): the next engine is
    asked, and the answer is kept in case no engine does better."""


class Link:
    """One engine of a chain and what the chain knows of it."""

    def __init__(self, provider: Provider, breaker: BreakerPolicy, clock: Callable[[], float]) -> None:
        self.provider = provider
        self.breaker = CircuitBreaker(breaker, clock)
        self.breaker.on_change = lambda state: telemetry.breaker_changed(provider.name, state)
        self.latencies = deque[float](maxlen=_LATENCIES_KEPT)
        # Without a health() check, a user request probes it after the cool-down instead.
        self.has_health = type(provider).health is not Provider.health
        self.loaded = True  # False while its warmup has failed, until it answers
        self.prober: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.provider.name

    def refuses(self, language: str | None, word_timestamps: bool) -> str | None:
        """Why this engine cannot take the request, judged from what it declares. One that is not
        here (not installed, cannot be built) declares nothing: it is not judged by that, so its own
        reason, with how to install it, is what the request records."""
        if isinstance(self.provider, UnusableEngine):
            return None
        if not self.provider.capabilities.supports_language(language):
            return f"does not support language {language!r}"
        if word_timestamps and not self.provider.capabilities.word_timestamps:
            return "does not give word timestamps"
        return None

    def gate(self) -> Gate:
        return self.breaker.gate(probes_in_background=self.has_health)

    def could_answer(self, language: str | None, word_timestamps: bool) -> bool:
        """Whether it could take a request now, judged without calling it."""
        return not (
            self.refuses(language, word_timestamps)
            or self.gate().action == "skip"
            or self.provider.why_unavailable()  # a check that raises says so here, not a crash
        )

    def never_takes(self, language: str | None, word_timestamps: bool,
                    cause: BaseException | None = None) -> str | None:
        """Why it will not take such a request until its install or config changes (``cause``:
        what a request got from it), or ``None`` when waiting may help."""
        return policy.never_takes(refuses=self.refuses(language, word_timestamps),
                                  unavailable=self.provider.why_unavailable(), cause=cause)

    def watch(self) -> None:
        """Probe an open engine's ``health()`` in the background until it passes (in the running
        loop; ``stop_watching`` ends it)."""
        loop = asyncio.get_running_loop()
        if self.prober is not None and not self.prober.done() and self.prober.get_loop() is loop:
            return
        self.prober = loop.create_task(self._probe_until_healthy())

    async def stop_watching(self) -> None:
        if self.prober is None:
            return
        self.prober.cancel()
        with contextlib.suppress(asyncio.CancelledError, RuntimeError):  # RuntimeError: another loop's
            await self.prober

    async def _probe_until_healthy(self) -> None:
        breaker = self.breaker
        if breaker.relapses:  # it failed again right after a probe passed: do not probe at once
            await asyncio.sleep(breaker.probe_delay() * random.uniform(0.8, 1.2))
        while breaker.state == "open":
            started = time.perf_counter()
            try:
                async with asyncio.timeout(breaker.policy.probe_timeout):
                    healthy = await self.provider.health()
            except Exception as e:  # a failing health check is a "no", whatever it raised
                logger.info("%s: health probe failed: %s", self.name, _described(e))
                healthy = False
            if healthy is None:  # no health() after all: a user request will probe it
                self.has_health = False
                return
            logger.info("%s: health probe %s (%.3fs)", self.name, "passed" if healthy else "failed",
                        time.perf_counter() - started)
            if healthy:
                breaker.probe_passed()
                return
            await asyncio.sleep(breaker.probe_delay() * random.uniform(0.8, 1.2))


@dataclass(eq=False)
class Request:
    """One request's record: what it asks, what the chain did, why each engine could not answer."""

    language: str | None
    word_timestamps: bool = False
    on_attempt: Callable[[Attempt], None] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    causes: list[tuple[str, BaseException]] = field(default_factory=list)
    opened: set[Link] = field(default_factory=set)  # links whose breaker this request's failures opened
    declined: set[str] = field(default_factory=set)  # engines passed for what they declare (language...)
    hedged: bool = False  # an engine was raced by the next one
    doubted: list[tuple[Transcript, frozenset[str] | None]] = field(default_factory=list)
    """Answers the chain doubted, each with its engine's languages (``quality.best`` picks)."""
    cloud_reasks: int = 0  # cloud engines asked after a doubted answer
    left_for_the_final: bool = False  # a speculation did not re-ask a cloud engine that the final may

    def heard_nothing(self) -> bool:
        return any(not has_words(answer.text) for answer, _ in self.doubted)

    def heard_words(self) -> bool:
        return any(has_words(answer.text) for answer, _ in self.doubted)

    def best_doubted(self) -> Transcript:
        """When no engine's answer was accepted: the best of the doubted ones (``quality.best``).
        Not for a speculation that left a cloud engine to the final: its answer would stand as the
        utterance's (real time keeps what the preflight heard), and that engine would never be asked."""
        if not self.doubted or self.left_for_the_final:
            raise self.failed()
        return quality.best(self.doubted).replace(attempts=tuple(self.attempts))
    purpose: policy.Purpose = "request"
    attempt_timeout: float | None = None  # tighter than the chain's, for this request

    def record(self, link: Link, outcome: AttemptOutcome, latency: float, error: str | None = None) -> None:
        attempt = Attempt(link.name, outcome, latency, error)
        self.attempts.append(attempt)
        level = logging.DEBUG if outcome == "ok" else logging.INFO
        logger.log(level, "%s: %s (%.3fs)%s", link.name, outcome, latency, f": {error}" if error else "")
        if self.on_attempt is not None:
            self.on_attempt(attempt)

    def failed(self) -> AllProvidersFailed:
        return AllProvidersFailed(self.causes, attempts=self.attempts)


@dataclass
class Links:
    """The chain's links in order, under its policies."""

    ordered: Sequence[Link]
    retry: policy.RetryPolicy
    attempt_timeout: float | None
    judging: quality.QualityPolicy = field(default_factory=quality.QualityPolicy)

    def __post_init__(self) -> None:
        self._backoff = wait_exponential_jitter(
            multiplier=self.retry.initial_backoff, max=self.retry.max_backoff, jitter=self.retry.jitter
        )

    def __iter__(self) -> Iterator[Link]:
        return iter(self.ordered)

    def after(self, link: Link) -> Links:
        """The links after ``link``, under the same policies."""
        later = self.ordered[self.ordered.index(link) + 1:]
        return Links(later, self.retry, self.attempt_timeout, self.judging)

    def could_answer_after(self, link: Link, request: Request) -> bool:
        """Whether an engine after ``link`` could take this request now."""
        later = self.ordered[self.ordered.index(link) + 1:]
        return any(other.could_answer(request.language, request.word_timestamps) for other in later)

    async def admit(self, link: Link, request: Request) -> policy.Plan | None:
        """How to call ``link`` for this request, or ``None`` (skipped, the reason recorded)."""
        may_hold = True
        refuses = link.refuses(request.language, request.word_timestamps)
        while True:
            decision = policy.admit(
                refuses=refuses or self.reask_refusal(link, request),
                gate=link.gate(),
                later=self.could_answer_after(link, request),
                may_hold=may_hold,
                retry=self.retry,
                attempt_timeout=_tighter(self.attempt_timeout, request.attempt_timeout),
                probe_timeout=link.breaker.policy.probe_timeout,
                purpose=request.purpose,
            )
            if not isinstance(decision, policy.Hold):
                break
            await asyncio.sleep(decision.seconds)
            may_hold = False
        if isinstance(decision, policy.Skip):
            if link.breaker.state == "open" and link.has_health:
                link.watch()  # skipped while open: make sure someone is probing it
            if refuses:
                request.declined.add(link.name)
            request.record(link, "skipped", 0.0, decision.reason)
            request.causes.append((link.name, ProviderUnavailable(decision.reason, provider=link.name)))
            return None
        if decision.probe:
            link.breaker.start_probe()
        if request.doubted and not link.provider.capabilities.offline:
            request.cloud_reasks += 1
        return decision

    def reask_refusal(self, link: Link, request: Request) -> str | None:
        """Why ``link`` is not asked after a doubted answer (``quality.may_reask``), or ``None``."""
        if not request.doubted:
            return None
        refusal = quality.may_reask(offline=link.provider.capabilities.offline,
                                    cloud_reasks=request.cloud_reasks, max_reasks=self.judging.max_reasks,
                                    speculation=request.purpose == "speculation")
        request.left_for_the_final |= refusal is not None and request.purpose == "speculation"
        return refusal

    def judged(self, link: Link, answer: Transcript, request: Request) -> quality.Accept | quality.Reask:
        """What the chain makes of ``link``'s answer (``quality.judge``)."""
        return quality.judge(answer, min_confidence=self.judging.min_confidence_of(link.name),
                             languages=link.provider.capabilities.languages,
                             heard_nothing_before=request.heard_nothing(),
                             heard_words_before=request.heard_words())

    def doubt(self, link: Link, answer: Transcript, request: Request, reason: str) -> None:
        """Keep a doubted answer for ``best_doubted``."""
        request.doubted.append((answer, link.provider.capabilities.languages))
        logger.info("%s: answer doubted (%s): asking the next engine", link.name, reason)

    def tries(self, link: Link, call: policy.Plan, request: Request) -> AsyncRetrying:
        """The retry loop for ``call`` at ``link`` (tenacity), deciding by ``policy.after_failure``:
        ``async for attempt in links.tries(...): with attempt: ...``. The last error is reraised."""

        def decided(state: RetryCallState) -> policy.Retry | policy.FallOver | policy.GiveUp:
            error = state.outcome.exception() if state.outcome else None
            may_retry = policy.may_retry_into(link.breaker.state == "closed",
                                              opened_by_this_request=link in request.opened)
            return policy.after_failure(error, attempt=state.attempt_number, call=call, retry=self.retry,
                                        may_retry=may_retry)

        def wait(state: RetryCallState) -> float:
            decision = decided(state)
            after = decision.after if isinstance(decision, policy.Retry) else None
            return float(self._backoff(state)) if after is None else after

        return AsyncRetrying(retry=lambda state: isinstance(decided(state), policy.Retry), wait=wait,
                             reraise=True)

    @contextlib.contextmanager
    def falling_over(self, link: Link, request: Request) -> Iterator[None]:
        """Around all of a request's calls to ``link``: what the next engine may still answer
        becomes ``Unanswered`` (its cause recorded); bad audio and cancellation go on up."""
        try:
            yield
        except Doubted as e:
            raise Unanswered from e
        except ProviderError as e:
            request.causes.append((link.name, e))
            raise Unanswered from e
        except BaseException as e:
            # No verdict on the engine (it cannot serve now, the audio is bad, the caller gave
            # up): a probe in flight is released, so a later request probes again.
            link.breaker.release()
            if isinstance(e, ProviderUnavailable | ConfigError):
                request.causes.append((link.name, e))
                raise Unanswered from e
            raise

    async def answer(
        self, link: Link, call: Callable[[Provider], Awaitable[Transcript]], request: Request
    ) -> Transcript:
        """``link``'s answer to a batch request, with the retries its admission allows; an answer
        the chain doubts is kept on the request and falls over (``Unanswered``) like a failure."""
        admitted = await self.admit(link, request)
        if admitted is None:
            raise Unanswered
        with self.falling_over(link, request):
            async for attempt in self.tries(link, admitted, request):
                with attempt:
                    return await self.attempt(link, call, admitted.timeout, request)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def attempt(
        self, link: Link, call: Callable[[Provider], Awaitable[Transcript]], limit: float | None,
        request: Request,
    ) -> Transcript:
        """One call, bounded by ``limit``; the breaker learns its outcome, and the answer is judged
        (``Doubted`` when the next engine should be asked)."""
        started = time.perf_counter()
        local = link.provider.capabilities.offline
        with telemetry.attempt(link.name, link.provider.model, local=local) as traced:
            try:
                async with asyncio.timeout(limit):
                    result = await call(link.provider)
            except TimeoutError as e:
                error = ProviderTimeout(f"{link.name} took longer than {limit}s", provider=link.name)
                traced["outcome"] = self.failed(link, request, error, started)
                raise error from e
            except STTError as e:
                traced["outcome"] = self.failed(link, request, e, started)
                raise
            except asyncio.CancelledError as e:
                if asyncio.current_task().cancelling():  # type: ignore[union-attr]  # the caller's doing
                    request.record(link, "cancelled", time.perf_counter() - started)
                    raise
                # The engine raised it of its own (a worker pool shut down under it): its failure, and
                # the chain falls over, where it would have ended the caller's task.
                own = ProviderError(f"{link.name} cancelled its own call", provider=link.name)
                traced["outcome"] = self.failed(link, request, own, started)
                raise own from e
            verdict = self.judged(link, result, request)
            if isinstance(verdict, quality.Reask):
                traced["outcome"] = "low_confidence"
        self.succeeded(link, request, started, verdict)
        if isinstance(verdict, quality.Reask):
            self.doubt(link, result, request, verdict.reason)
            raise Doubted(verdict.reason)
        return result

    def succeeded(self, link: Link, request: Request, started: float,
                  verdict: quality.Accept | quality.Reask | None = None) -> None:
        """A call that answered: the engine works (whatever the chain makes of its answer)."""
        latency = time.perf_counter() - started
        link.latencies.append(latency)
        link.loaded = True
        if request.purpose != "speculation":  # a speculation teaches no breaker, failed or answered
            link.breaker.record_success()
        if isinstance(verdict, quality.Reask):
            request.record(link, "low_confidence", latency, verdict.reason)
        else:
            request.record(link, "ok", latency)

    def failed(self, link: Link, request: Request, error: STTError, started: float) -> AttemptOutcome:
        """Record a failed call, and teach the engine's breaker what it means; the outcome."""
        outcome = policy.outcome(error)
        request.record(link, outcome, time.perf_counter() - started, str(error))
        effect = policy.breaker_effect(error, request.purpose)
        if effect == "hold" and isinstance(error, ProviderError) and error.retry_after:
            link.breaker.hold(error.retry_after)
        elif effect == "count" and link.breaker.record_failure():
            request.opened.add(link)
            if link.has_health:
                link.watch()
        return outcome


def _described(error: BaseException) -> str:
    """An error for a log line: the class and the first line of the message."""
    line = first_line(error)
    return line if line == type(error).__name__ else f"{type(error).__name__}: {line}"


def _tighter(a: float | None, b: float | None) -> float | None:
    """The smaller of two optional bounds (``None``: no bound)."""
    return b if a is None else a if b is None else min(a, b)
