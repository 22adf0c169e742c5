"""OpenTelemetry traces and metrics for every chain request, attempt and stream.

Through ``opentelemetry-api`` only: without an SDK configured every call here is a no-op, and
without the API installed (``pip install "stt-core[otel]"`` brings it) nothing is even tried.
The providers are the global ones unless ``configure()`` names others; ``add_meter_provider()``
adds one that gets every metric too (what ``stt-core serve`` does for ``/metrics``).

Spans follow the GenAI conventions' open proposal for speech to text (operation
``speech_to_text``): one per request (the chain), a child per attempt (an engine called), one per
stream and per utterance of it. No attribute, event or metric holds audio, a secret or, unless
``configure(record_text=True)``, transcript text.

Metrics (``stt_core.*``; Prometheus writes ``stt_core_request_duration_seconds`` and so on):
request and attempt durations by engine and outcome, audio seconds by engine, failovers, breaker
state changes, a local engine's queue depth and batch sizes, and how far real time lags behind speech.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context as _context
    from opentelemetry import metrics as _metrics
    from opentelemetry import trace as _trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # the API is optional: everything below is then a no-op
    _context = _metrics = _trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from ._types import StreamEvent

SCOPE = "stt_core"
OPERATION = "speech_to_text"
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCHES = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class _Instruments:
    request: Any
    attempt: Any
    audio: Any
    failovers: Any
    breaker: Any
    queue: Any
    batch: Any
    lag: Any


@dataclass
class _Settings:
    tracer_provider: Any = None  # None: the global one, looked up at each use
    meter_provider: Any = None
    extra_meters: list[Any] = field(default_factory=list)
    record_text: bool = False
    tracer: tuple[Any, Any] | None = None  # (its provider, the tracer)
    # By id(meter provider), with the provider itself: kept alive, so an id is never reused.
    instruments: dict[int, tuple[Any, _Instruments]] = field(default_factory=dict)


_settings = _Settings()


def configure(*, tracer_provider: Any = None, meter_provider: Any = None, record_text: bool = False) -> None:
    """Use these providers instead of the global ones (``None``: the global one), and whether
    spans may hold transcript text (``stt_core.transcript``; off, as LiveKit's ``lk.pii``)."""
    _settings.tracer_provider, _settings.meter_provider = tracer_provider, meter_provider
    _settings.record_text = record_text


def add_meter_provider(provider: Any) -> None:
    """Every metric goes to ``provider`` as well (``stt-core serve``'s Prometheus reader)."""
    _settings.extra_meters.append(provider)


def remove_meter_provider(provider: Any) -> None:
    with contextlib.suppress(ValueError):
        _settings.extra_meters.remove(provider)
    _settings.instruments.pop(id(provider), None)


def _tracer() -> Any:
    provider = _settings.tracer_provider or _trace.get_tracer_provider()
    cached = _settings.tracer
    if cached is None or cached[0] is not provider:  # the SDK makes a new Tracer per get_tracer()
        cached = _settings.tracer = (provider, provider.get_tracer(SCOPE))
    return cached[1]


def _instruments() -> list[_Instruments]:
    if _metrics is None:
        return []
    providers = [_settings.meter_provider or _metrics.get_meter_provider(), *_settings.extra_meters]
    out = []
    for provider in providers:
        entry = _settings.instruments.get(id(provider))
        if entry is None:
            entry = _settings.instruments[id(provider)] = (provider, _make(provider.get_meter(SCOPE)))
        out.append(entry[1])
    return out


def _make(meter: Any) -> _Instruments:
    return _Instruments(
        request=meter.create_histogram("stt_core.request.duration", unit="s",
                                       description="A chain request, first call to answer or failure",
                                       explicit_bucket_boundaries_advisory=_SECONDS),
        attempt=meter.create_histogram("stt_core.attempt.duration", unit="s",
                                       description="One call to one engine",
                                       explicit_bucket_boundaries_advisory=_SECONDS),
        audio=meter.create_counter("stt_core.audio.duration", unit="s",
                                   description="Seconds of audio transcribed, by the engine that answered"),
        failovers=meter.create_counter("stt_core.failovers", unit="{request}",
                                       description="Requests that moved from the engine they were meant "
                                                   "for to another one (or, after two, to none)"),
        breaker=meter.create_counter("stt_core.breaker.transitions", unit="{transition}",
                                     description="Circuit breaker state changes, by engine and new state"),
        queue=meter.create_up_down_counter("stt_core.queue.depth", unit="{request}",
                                           description="Requests waiting for a local engine"),
        batch=meter.create_histogram("stt_core.batch.size", unit="{request}",
                                     description="Requests a local engine recognised together",
                                     explicit_bucket_boundaries_advisory=_BATCHES),
        lag=meter.create_histogram("stt_core.realtime.lag", unit="s",
                                   description="Real time: from the VAD's end of an utterance to "
                                               "its final (or failure); it grows when the engine is "
                                               "slower than speech",
                                   explicit_bucket_boundaries_advisory=_SECONDS),
    )


# -- requests and attempts ------------------------------------------------------------------------


class RequestTrace:
    """One chain request's span, and its metrics when it ends."""

    def __init__(self, chain: str, audio_seconds: float, language: str | None) -> None:
        self.audio_seconds, self.started = audio_seconds, time.perf_counter()
        self.span: Any = None
        if _trace is not None:
            attributes: dict[str, Any] = {"gen_ai.operation.name": OPERATION, "stt_core.chain": chain,
                                          "gen_ai.speech.input.duration": audio_seconds}
            if language:
                attributes["gen_ai.speech.input.language"] = language
            self.span = _tracer().start_span(OPERATION, kind=SpanKind.INTERNAL, attributes=attributes)

    def ended(self, attempts: tuple[Any, ...] | list[Any], *, answered: Any = None, hedged: bool = False,
              error: BaseException | None = None, declined: set[str] | frozenset[str] = frozenset()) -> None:
        """``answered``: the Transcript, or None when ``error`` (every engine failed); ``declined``:
        the engines passed for what they declare (a language, word times), which it never meant
        to call."""
        tried = [a.provider for a in attempts if a.outcome not in ("skipped", "unavailable")]
        engine = answered.provider if answered is not None else "none"
        # A failover is a move away from the engine this request was meant for (the first one that
        # could take it and is here: a breaker's or a Retry-After's skip counts, one passed for its
        # language or for being unable to serve at all does not) to another, or to none after two.
        meant = [a.provider for a in attempts if a.outcome != "unavailable" and a.provider not in declined]
        fell_over = bool(meant) and meant[0] != engine and (answered is not None or len(set(meant)) > 1)
        cancelled = isinstance(error, asyncio.CancelledError)
        outcome = "ok" if answered is not None else "cancelled" if cancelled else "failed"
        took = time.perf_counter() - self.started
        for made in _instruments():
            made.request.record(took, {"stt_core.engine": engine, "stt_core.outcome": outcome})
            if answered is not None:
                made.audio.add(self.audio_seconds, {"stt_core.engine": engine})
            if fell_over and not cancelled:
                made.failovers.add(1, {"stt_core.from": meant[0], "stt_core.to": engine})
        if self.span is None:
            return
        attributes: dict[str, Any] = {"stt_core.fell_over": fell_over, "stt_core.hedged": hedged,
                                      "stt_core.retried": len(tried) > len(set(tried)),
                                      "stt_core.attempts": len(tried)}
        if answered is not None:
            attributes["gen_ai.provider.name"] = answered.provider
            attributes["gen_ai.response.model"] = answered.model or ""
            if answered.language:
                attributes["gen_ai.speech.output.language"] = answered.language
            if _settings.record_text:
                attributes["stt_core.transcript"] = answered.text
        if error is not None and not cancelled:
            attributes["error.type"] = type(error).__name__
            self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self.span.set_attributes(attributes)  # one call: each takes the span's lock
        self.span.end()

    def current(self) -> contextlib.AbstractContextManager[None]:
        """The request's span is the current one inside (attempts, and their tasks, are its children)."""
        return _current(self.span)


def _current(span: Any) -> contextlib.AbstractContextManager[None]:
    """``span`` as the current span inside (ended by its owner, not here); nothing without one.
    What ``trace.use_span`` does, without its decorator's per-call signature checks (a third of
    the cost of tracing a request)."""
    return parent(None if span is None else _trace.set_span_in_context(span))


@contextlib.contextmanager
def attempt(engine: str, model: str | None, *, local: bool) -> Iterator[dict[str, Any]]:
    """One call to one engine: a child span and the attempt histogram. The caller puts the
    outcome (``policy.outcome``'s word) into the dict it gets, for a failure."""
    result: dict[str, Any] = {"outcome": "ok"}
    started = time.perf_counter()
    span: Any = None
    if _trace is not None:
        attributes = {"gen_ai.operation.name": OPERATION, "gen_ai.provider.name": engine,
                      "gen_ai.request.model": model or ""}
        span = _tracer().start_span(f"{OPERATION} {engine}", attributes=attributes,
                                    kind=SpanKind.INTERNAL if local else SpanKind.CLIENT)
    try:
        with _current(span):
            yield result
    except BaseException as e:
        if result["outcome"] == "ok":
            result["outcome"] = "cancelled" if isinstance(e, asyncio.CancelledError) else "error"
        result["error"] = e
        raise
    finally:
        took = time.perf_counter() - started
        for made in _instruments():
            made.attempt.record(took, {"stt_core.engine": engine, "stt_core.outcome": result["outcome"]})
        if span is not None:
            attributes = {"stt_core.attempt.outcome": result["outcome"]}
            error = result.get("error")
            if error is not None and result["outcome"] != "cancelled":
                attributes["error.type"] = type(error).__name__
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.set_attributes(attributes)
            span.end()


def remote_parent(headers: Any) -> contextlib.AbstractContextManager[None]:
    """Inside, the trace a request's headers carry (W3C ``traceparent``, or whatever propagator
    the application set) is the current one: a span started here continues the client's trace."""
    if _trace is None:
        return contextlib.nullcontext()
    from opentelemetry import propagate

    # On top of the current context: without the header, a span an ASGI instrumentation made stays the parent.
    return parent(propagate.extract(headers, context=_context.get_current()))


@contextlib.contextmanager
def parent(context: Any) -> Iterator[None]:
    """Inside, ``context`` (an OpenTelemetry ``Context`` a framework keeps, such as Pipecat's
    turn) is the current one, so the chain's spans are its children; nothing when it is None."""
    if _trace is None or context is None:
        yield
        return
    token = _context.attach(context)
    try:
        yield
    finally:
        _context.detach(token)


# -- breakers and local engines -------------------------------------------------------------------


def breaker_changed(engine: str, state: str) -> None:
    for made in _instruments():
        made.breaker.add(1, {"stt_core.engine": engine, "stt_core.state": state})


def queue_changed(engine: str, by: int) -> None:
    """Requests waiting for a local engine went up (or down) ``by``."""
    for made in _instruments():
        made.queue.add(by, {"stt_core.engine": engine})


def realtime_lag(engine: str, seconds: float) -> None:
    """A real-time utterance's final (or failure) came ``seconds`` after the VAD ended it."""
    for made in _instruments():
        made.lag.record(seconds, {"stt_core.chain": engine})


def batch_formed(engine: str, size: int) -> None:
    """A local engine took ``size`` requests to recognise together."""
    for made in _instruments():
        made.batch.record(size, {"stt_core.engine": engine})


# -- streams ---------------------------------------------------------------------------------------


async def traced_stream(events: AsyncGenerator[StreamEvent, None], *, chain: str,
                        language: str | None) -> AsyncGenerator[StreamEvent, None]:
    """``events`` as they come, inside a span for the stream and one per utterance (from the
    stream's start, or the last final, to the next final), with the seconds to its first
    interim and to its final."""
    if _trace is None:
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()
        return
    tracer = _tracer()
    attributes: dict[str, Any] = {"gen_ai.operation.name": OPERATION, "stt_core.chain": chain,
                                  "stt_core.stream": True}
    if language:
        attributes["gen_ai.speech.input.language"] = language
    stream = tracer.start_span(f"{OPERATION} stream", attributes=attributes)
    context = _trace.set_span_in_context(stream)
    utterance: Any = None
    started, interim_at, finals = 0.0, None, 0
    try:
        async for event in events:
            if utterance is None:
                utterance = tracer.start_span(f"{OPERATION} utterance", context=context,
                                              attributes={"gen_ai.operation.name": OPERATION})
                started, interim_at = time.perf_counter(), None
            if event.type in ("interim", "preflight") and interim_at is None:
                interim_at = time.perf_counter() - started
                utterance.set_attribute("stt_core.time_to_first_interim", interim_at)
            if event.type == "final":
                finals += 1
                utterance.set_attributes({"stt_core.time_to_final": time.perf_counter() - started,
                                          "gen_ai.provider.name": event.provider or ""})
                if _settings.record_text:
                    utterance.set_attribute("stt_core.transcript", event.text)
            elif event.type == "failed":  # that utterance only: the stream goes on
                utterance.set_attribute("error.type", type(event.error).__name__)
                utterance.set_status(Status(StatusCode.ERROR, type(event.error).__name__))
            if event.type in ("final", "failed"):
                utterance.end()
                utterance = None
            yield event
    except BaseException as e:
        for span in (utterance, stream):
            if span is not None and not isinstance(e, asyncio.CancelledError | GeneratorExit):
                span.set_attribute("error.type", type(e).__name__)
                span.set_status(Status(StatusCode.ERROR, type(e).__name__))
        raise
    finally:
        if utterance is not None:
            utterance.end()
        stream.set_attribute("stt_core.utterances", finals)
        stream.end()
        await events.aclose()
