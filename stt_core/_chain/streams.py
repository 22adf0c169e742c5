"""The stream driver: live audio goes to the chain's engines in order, as a batch request does.

An engine that fails mid-stream hands over to the next with the audio since its last final result
replayed from the tape, so no word is lost and none is heard twice. Its silence is bounded: an
engine that streams natively must say something within ``stall`` seconds of being given audio;
one that answers at the end must do so within the attempt timeout of the end of the input. The
driver awaits those deadlines; the tape says when they move.

A final result with text is judged as a batch answer is (``quality``): one the chain doubts is
re-asked of the later engines, with the audio it covers, and the better answer is the final.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from .._errors import ProviderTimeout, STTError
from .._provider import Provider
from .._types import StreamEvent, Transcript
from . import batch, quality
from .links import Link, Links, Request, Unanswered
from .tape import Tape


async def stream_through(
    links: Links, tape: Tape, request: Request, *, stall: float | None
) -> AsyncGenerator[StreamEvent, None]:
    for link in links:
        call = await links.admit(link, request)
        if call is None:
            continue
        try:
            with links.falling_over(link, request):
                async for attempt in links.tries(link, call, request):
                    with attempt:
                        started = time.perf_counter()
                        try:
                            events = _engine_events(links, link, tape, request, stall, call.timeout)
                            async for event in events:
                                yield event
                        except STTError as e:
                            links.failed(link, request, e, started)
                            raise
                        links.succeeded(link, request, started)
                        return
        except Unanswered:
            continue
    raise request.failed()


async def _engine_events(
    links: Links, link: Link, tape: Tape, request: Request, stall: float | None, after_end: float | None
) -> AsyncIterator[StreamEvent]:
    """One engine's events for the replayed and live audio, on the stream's clock. Final results
    commit the audio they cover, if they are believable."""
    provider = link.provider
    offset, replay = tape.replay_start, tape.replay()
    events = provider.stream(replay, language=request.language)
    stall = stall if provider.capabilities.streaming else None
    tape.answered()
    try:
        while True:
            try:
                event = await _next_in_time(events, link, tape, stall, after_end)
            except StopAsyncIteration:
                return
            tape.answered()
            event = event.shifted(offset)
            if event.is_final:
                event = await _judged(links, link, event, tape, request)
                tape.commit(event.end, link.name)
            yield event
    finally:
        with contextlib.suppress(RuntimeError):  # still running: the provider leaked a task
            await events.aclose()
        with contextlib.suppress(RuntimeError):
            await replay.aclose()


async def _judged(links: Links, link: Link, event: StreamEvent, tape: Tape, request: Request) -> StreamEvent:
    """``event``, or, if the chain doubts it, the best answer of the later engines for its audio
    (a final with no text is silence: never re-asked in a live stream)."""
    answer = Transcript(event.text, language=event.language, confidence=event.confidence,
                        provider=link.name, duration=None)
    verdict = links.judged(link, answer, request)
    audio = tape.heard(event.start, event.end) if event.text.strip() else None
    if isinstance(verdict, quality.Accept) or audio is None:
        return event
    request.record(link, "low_confidence", 0.0, verdict.reason)
    asked = Request(request.language, on_attempt=request.on_attempt)
    links.doubt(link, answer, asked, verdict.reason)

    def call(provider: Provider) -> Any:
        return provider.transcribe(audio, language=request.language)

    try:
        result = await batch.first_answer(links.after(link), call, asked, hedge_after=None)
    except STTError:  # nobody else could take it: the doubted final stands
        return event
    finally:
        request.attempts.extend(asked.attempts)
    if result.text == event.text and result.provider == link.name:
        return event
    return StreamEvent("final", result.text, start=event.start, end=event.end, language=result.language,
                       confidence=result.confidence, provider=result.provider)


async def _next_in_time(
    events: AsyncIterator[StreamEvent], link: Link, tape: Tape, stall: float | None, after_end: float | None
) -> StreamEvent:
    """The engine's next event, or ``ProviderTimeout`` once its silence passes the deadline."""
    next_event: asyncio.Future[StreamEvent] = asyncio.ensure_future(anext(events))
    try:
        while not next_event.done():
            moved = tape.moved()
            deadline = tape.deadline(stall, after_end)
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            either: set[asyncio.Future[Any]] = {next_event, moved}
            await asyncio.wait(either, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not next_event.done() and deadline is not None and time.monotonic() >= deadline:
                waited = (f"{stall}s of audio" if tape.live
                          else f"{after_end}s of waiting after the end of the audio")
                raise ProviderTimeout(f"{link.name} said nothing for {waited}", provider=link.name)
        return next_event.result()
    finally:
        if not next_event.done():
            next_event.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, STTError):
                await next_event
