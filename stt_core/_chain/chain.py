"""The fallback chain: itself a Provider that tries its engines in order.

Per request and engine: skip it if it cannot take the request (language, word times), cannot
serve (no key, no model), its breaker is open or it asked to be left alone (429 + Retry-After).
Otherwise call it. A retryable failure falls over to the next engine at once when one can take
the request; the last such engine is retried with backoff, honouring Retry-After (tenacity).
With ``hedge_after`` set, an engine that has not answered in time races the rest of the chain.
An answer the chain doubts (less confident than ``min_confidence``, or in a language its engine
does not transcribe: ``quality``) is re-asked of the next engine that can take the request; when
every answer is doubted, the most confident is given.
Unavailable or misconfigured engines are passed at once, bad audio goes straight back to the
caller, and when nobody answered, ``AllProvidersFailed`` lists every cause.

Streams follow the same rules at connect and mid-stream: the audio since the last final result is
replayed to the next engine, and a stream that takes audio but says nothing for
``stream_stall_timeout`` seconds counts as failed.

How it is built (docs/architecture.md): the rules are ``policy``'s, each engine's state is a ``Link``
(``links``), and two drivers do what the rules say: ``batch`` and ``streams``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any

from .. import telemetry
from .._audio.audio import Audio, AudioSource
from .._errors import AllProvidersFailed, ConfigError, ProviderUnavailable, STTError
from .._provider import Provider
from .._types import Attempt, Capabilities, StreamEvent, Transcript
from . import batch, streams
from .breaker import BreakerPolicy, CircuitBreaker
from .links import Link, Links, Request
from .policy import Purpose, RetryPolicy, hedge_setting
from .quality import QualityPolicy
from .tape import Tape

# Why the current request was asked, with its tighter bound: set by ``Chain.transcribe`` around the
# base class's checks, read by ``_transcribe``. (Provider.transcribe's signature is every engine's,
# so these two options of the chain's cross it here; a nested chain sets its own.)
_ASKED: ContextVar[tuple[Purpose, float | None]] = ContextVar("stt_core_chain_asked",
                                                           default=("request", None))


class Chain(Provider):
    """Try its engines in order until one answers (the module's docstring says how).

    Args:
        providers: the engines, in the order they are tried.
        retry: how often and how patiently each engine is called (``[retry]``).
        breaker: when an engine is skipped and how it is tried again (``[breaker]``).
        quality: when an answer is doubted and re-asked of the next engine (``min_confidence``,
            ``max_reasks``, each engine's ``min_confidence``; ``QualityPolicy(min_confidence=0)``: never).
        attempt_timeout: seconds one call to one engine may take (``None``: no bound).
        hedge_after: seconds, or a percentile of an engine's own recent latencies (``"p95"``),
            after which the next engine races an engine that has not answered (``None``: off).
        stream_stall_timeout: seconds a streaming engine may take audio and say nothing before it
            counts as failed and the stream falls over (``None``: no bound).
        on_attempt: called with each ``Attempt`` as it is made (a call, or a skip and why).
        clock: the breakers' clock (tests pass their own).
    """

    name = "chain"

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        retry: RetryPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        quality: QualityPolicy | None = None,
        attempt_timeout: float | None = 60.0,
        hedge_after: float | str | None = None,
        stream_stall_timeout: float | None = 10.0,
        on_attempt: Callable[[Attempt], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.retry = retry or RetryPolicy()
        self.breaker_policy = breaker or BreakerPolicy()
        self.quality = quality or QualityPolicy()
        if unknown := set(self.quality.per_engine) - {p.name for p in providers}:
            raise ValueError(f"min_confidence is set for {', '.join(sorted(unknown))}, not in the chain")
        self.attempt_timeout = attempt_timeout
        self.hedge_after = hedge_setting(hedge_after)
        self.stream_stall_timeout = stream_stall_timeout
        self.on_attempt = on_attempt
        self.links = Links([Link(p, self.breaker_policy, clock) for p in providers],
                           retry=self.retry, attempt_timeout=attempt_timeout, judging=self.quality)
        declared = [p.capabilities for p in providers]
        languages = [c.languages for c in declared]
        self.capabilities = Capabilities(
            streaming=any(c.streaming for c in declared),
            languages=None if None in languages else frozenset().union(*languages),  # type: ignore[arg-type]
            word_timestamps=any(c.word_timestamps for c in declared),
            offline=any(c.offline for c in declared),
        )

    @property
    def providers(self) -> list[Provider]:
        return [link.provider for link in self.links]

    @property
    def breakers(self) -> list[CircuitBreaker]:
        return [link.breaker for link in self.links]

    @property
    def model(self) -> str:
        return " -> ".join(link.name for link in self.links)

    def __repr__(self) -> str:
        return f"Chain({self.model})"

    def ready(self) -> list[str]:
        """The engines that could take a request now (installed, configured, model loaded, breaker
        not open), judged without calling them: what a readiness check reports."""
        return [link.name for link in self.links if link.loaded and link.could_answer(None, False)]

    def never_serves(self, error: STTError | None = None, *, language: str | None = None,
                     word_timestamps: bool = False) -> dict[str, str]:
        """Why each engine will not take such a request until the install or config changes (not
        installed, no key or model, a refused key or config, a language or word times it does not
        declare), judged without calling them and from ``error``, what a request got; empty when
        one may. A breaker, a 429, a 5xx or a timeout pass, so an adapter stays usable after those.
        What ``stt-core serve`` refuses to start on, and answers without Retry-After."""
        causes = dict(error.errors) if isinstance(error, AllProvidersFailed) else {}
        reasons = {}
        for link in self.links:
            reason = link.never_takes(language, word_timestamps, causes.get(link.name))
            if reason is None:
                return {}
            reasons[link.name] = reason
        return reasons

    def of(self, names: Sequence[str]) -> Chain:
        """A chain of this chain's engines ``names``, in that order, under its policies (each
        engine's ``min_confidence`` among them) and sharing its links: their breakers and what the
        chain has learnt of them, so a failure counts once whichever chain met it."""
        links = {link.name: link for link in self.links}
        quality = self.quality.model_copy(
            update={"per_engine": {n: v for n, v in self.quality.per_engine.items() if n in names}})
        made = Chain([links[name].provider for name in names], retry=self.retry, breaker=self.breaker_policy,
                     quality=quality, attempt_timeout=self.attempt_timeout, hedge_after=self.hedge_after,
                     stream_stall_timeout=self.stream_stall_timeout, on_attempt=self.on_attempt)
        made.links = Links([links[name] for name in names], retry=self.retry,
                           attempt_timeout=self.attempt_timeout, judging=quality)
        return made

    async def warmup(self) -> None:
        for link in self.links:
            try:
                await link.provider.warmup()
            except (ProviderUnavailable, ConfigError):  # the chain serves without it
                link.loaded = False

    async def _aclose(self) -> None:
        for link in self.links:
            await link.stop_watching()
        for link in self.links:
            await link.provider.aclose()

    async def transcribe(
        self,
        audio: AudioSource,
        *,
        language: str | None = None,
        prompt: str | None = None,
        word_timestamps: bool = False,
        purpose: Purpose = "request",
        attempt_timeout: float | None = None,
    ) -> Transcript:
        """``Provider.transcribe``; and for callers that recognise live audio (``stt_core.realtime``),
        why they ask (``purpose``: a speculation, or an utterance's final; see ``policy.Purpose``)
        and ``attempt_timeout``, a tighter bound than the chain's on each call of this request."""
        asked = _ASKED.set((purpose, attempt_timeout))  # read by _transcribe, under the base's checks
        try:
            return await super().transcribe(audio, language=language, prompt=prompt,
                                            word_timestamps=word_timestamps)
        finally:
            _ASKED.reset(asked)

    async def _transcribe_piece(self, piece: Audio, **options: Any) -> Transcript:
        # Its last engine that can take it is called even while its breaker rests it: one piece that
        # failed (a 503) opened the breaker, and every piece after it was skipped.
        return await self.transcribe(piece, purpose="utterance", **options)

    def _fails_every_piece(self, error: STTError, *, language: str | None, word_timestamps: bool) -> bool:
        return bool(self.never_serves(error, language=language, word_timestamps=word_timestamps))

    async def _transcribe(
        self, audio: Audio, *, language: str | None, prompt: str | None, word_timestamps: bool
    ) -> Transcript:
        def call(provider: Provider) -> Awaitable[Transcript]:
            return provider.transcribe(
                audio, language=language, prompt=prompt, word_timestamps=word_timestamps
            )

        purpose, attempt_timeout = _ASKED.get()
        request = Request(language, word_timestamps, self.on_attempt, purpose=purpose,
                          attempt_timeout=attempt_timeout)
        traced = telemetry.RequestTrace(self.model, audio.duration, language)
        try:
            with traced.current():  # each attempt's span is a child of the request's
                result = await batch.first_answer(self.links, call, request, hedge_after=self.hedge_after)
        except BaseException as e:
            traced.ended(request.attempts, hedged=request.hedged, error=e, declined=request.declined)
            raise
        traced.ended(request.attempts, answered=result, hedged=request.hedged, declined=request.declined)
        return result.replace(attempts=tuple(request.attempts))

    async def _stream(
        self, audio: AsyncIterable[Audio], *, language: str | None
    ) -> AsyncIterator[StreamEvent]:
        tape = Tape(audio)
        request = Request(language, on_attempt=self.on_attempt)
        try:
            events = telemetry.traced_stream(
                streams.stream_through(self.links, tape, request, stall=self.stream_stall_timeout),
                chain=self.model, language=language)
            async for event in events:
                yield event
        finally:
            tape.close()
