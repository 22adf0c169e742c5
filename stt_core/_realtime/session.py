"""Real time for engines that do not stream: a VAD-driven stream over any Provider, a chain included.

Live audio goes through Silero's VAD frame by frame (``_audio.vad``). For each utterance:

- ``speech_start`` when the speaker starts (after ``min_speech``);
- ``interim`` transcripts while they speak, from the first local engine, as often as its measured
  speed allows within ``interim_share`` of the time;
- ``preflight`` once they pause for ``preflight_pause``: the utterance so far, recognised ahead;
- ``speech_end`` and ``final`` at the VAD's end of speech (``min_silence`` of pause), or
  ``failed`` (with the error) when no engine could transcribe it: the stream goes on, and later
  utterances get their finals, in order.

What keeps it in time (reliability round four, docs/reliability.md):

- At most one recognition ahead of need (interim or preflight, a *speculation*) is in flight per
  stream, and none while a final is: a local engine serves one call at a time, so the final
  never queues behind more than one, and when the engine is slower than speech the speculations
  stop first (a warning and the ``stt_core.realtime.lag`` metric say how far behind it is).
- An utterance is recognised in pieces cut at pauses (``utterance``): a speculation that speech
  overtook is not thrown away but kept as a piece (and shown as an interim), so the final
  recognises only what came after the last piece.
- A speculation is not a request: through a chain it calls each engine once, teaches no breaker
  and probes none (``policy.Purpose``), so the final gets the chain's whole policy; the final is
  an ``utterance`` the chain never skips for a breaker when it is the last hope.
- Every recognition is bounded by ``attempt_timeout`` (a cold model's load, waited for once, is
  not counted in it), and the end of the input waits at most ``drain_timeout`` for each final in
  flight, then reports those it could not finish as ``failed``.

Times are seconds of the stream's audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, Coroutine
from typing import Any

import numpy as np

from .. import telemetry
from .._audio.audio import Audio
from .._audio.vad import FRAME_SECONDS, Boundary, Segmenter, SileroVAD
from .._chain import Chain
from .._chain.links import Link
from .._chain.policy import Purpose, may_speculate
from .._errors import ProviderError, ProviderTimeout, STTError
from .._provider import Provider
from .._types import StreamEvent, Transcript
from .frames import Frames
from .settings import RealtimeSettings
from .utterance import Speculation, Speed, Utterance

logger = logging.getLogger("stt_core.realtime")
_AT_ONCE = 8.0  # audio this many times faster than its own length: read from a file, not spoken


def interim_engine(engine: Provider) -> Provider | None:
    """What recognises interims: the first local engine of a chain (or the engine itself if it is
    local). Cloud engines get no interims: each would be a paid request."""
    engines = engine.providers if isinstance(engine, Chain) else [engine]
    return next((p for p in engines if p.capabilities.offline), None)


async def realtime(
    engine: Provider,
    audio: AsyncIterable[Audio],
    *,
    language: str | None = None,
    settings: RealtimeSettings | None = None,
    vad: SileroVAD | None = None,
) -> AsyncGenerator[StreamEvent, None]:
    """Interim, preflight and final transcripts (or ``failed``) from ``engine`` for live ``audio``."""
    session = Session(engine, language, settings or RealtimeSettings(), vad or SileroVAD())
    events = telemetry.traced_stream(session.run(audio), chain=engine.model or engine.name, language=language)
    async with contextlib.aclosing(events):  # closing this stream stops the session's tasks now, not at GC
        async for event in events:
            yield event


class Session:
    """One real-time stream: frames to the VAD, boundaries to recognitions, results to events."""

    def __init__(self, engine: Provider, language: str | None, settings: RealtimeSettings,
                 vad: SileroVAD) -> None:
        self.engine, self.language, self.settings = engine, language, settings
        self.local = interim_engine(engine)
        self.local_link: Link | None = None  # the chain's record of it (its breaker)
        if isinstance(engine, Chain):
            self.local_link = next((link for link in engine.links if link.provider is self.local), None)
        self.vad, self.segmenter = vad, Segmenter(settings)
        self.vad.reset()
        self.events: asyncio.Queue[StreamEvent | None] = asyncio.Queue()
        keep = round((settings.min_speech + settings.pre_roll) / FRAME_SECONDS) + 2
        self.recent: deque[np.ndarray] = deque(maxlen=keep)  # frames before speech starts: its pre-roll
        self.utterance: Utterance | None = None
        self.speculation: Speculation | None = None
        self.interim_started = 0.0
        self.speed = Speed.of(self.local)
        self.finals: deque[tuple[Utterance, asyncio.Task[None]]] = deque()  # not yet out, in order
        self.tasks: set[asyncio.Task[Any]] = set()
        self.loading: asyncio.Task[None] | None = None  # the local engine's model, while it loads
        self.warned_behind = False

    async def run(self, audio: AsyncIterable[Audio]) -> AsyncGenerator[StreamEvent, None]:
        if self.local is not None:  # a cold model loads as the first words come, not in their time
            self.loading = self._spawn(self.local.warmup())  # (one that cannot load: the chain says so)
            self.loading.add_done_callback(lambda task: task.cancelled() or task.exception())
        feeding = asyncio.ensure_future(self.feed(audio))
        try:
            while (event := await self.events.get()) is not None:
                yield event
            await feeding  # the source's error, if it failed
        finally:
            await self.stop(feeding)

    # -- audio in ------------------------------------------------------------------------------

    async def feed(self, audio: AsyncIterable[Audio]) -> None:
        frames = Frames()
        try:
            async for chunk in audio:
                for frame in frames.push(chunk):
                    self._frame(frame)
                    await frames.breathe()  # a big chunk never holds the loop for long
                await frames.breathe(every_chunk=True)
            for frame in frames.flush():
                self._frame(frame)
            for boundary in self.segmenter.finish():
                self._on(boundary)
            await self._drain()
        finally:
            await self.events.put(None)

    def _frame(self, frame: np.ndarray) -> None:
        probability = self.vad.probability(frame)
        if self.utterance is not None:
            self.utterance.frames.append(frame)
        else:
            self.recent.append(frame)
        for boundary in self.segmenter.push(probability):
            self._on(boundary)
        if self.utterance is not None and self.segmenter.speaking and self.utterance.paused_at is None:
            self._maybe_interim()

    def _on(self, boundary: Boundary) -> None:
        utterance = self.utterance
        if boundary.kind == "start":
            # The frames since the start the VAD gives, and the pre-roll before it, join the utterance.
            now = self.segmenter.frames * FRAME_SECONDS
            back = round((now - max(0.0, boundary.at - self.settings.pre_roll)) / FRAME_SECONDS)
            frames = list(self.recent)[-back:] if back > 0 else []
            self.utterance = Utterance(now - len(frames) * FRAME_SECONDS, frames, speech=boundary.at)
            self.recent.clear()
            self._emit(StreamEvent("speech_start", "", start=boundary.at))
        elif utterance is None:
            return
        elif boundary.kind == "pause":
            utterance.paused_at = len(utterance.frames)
            self._maybe_preflight()
        elif boundary.kind == "resume":
            utterance.resumed(min_piece=self.settings.min_piece)
        elif boundary.kind == "end":
            self.utterance = None
            utterance.speech_end, utterance.ended_at = boundary.at, time.monotonic()
            self._emit(StreamEvent("speech_end", "", start=utterance.speech, end=boundary.at))
            previous = self.finals[-1][1] if self.finals else None
            if previous is not None and not self.warned_behind:
                self._warn_behind()
            self.finals.append((utterance, self._spawn(self._final(utterance, previous))))

    # -- speculation: at most one recognition ahead of need --------------------------------------

    def _engine_free(self) -> bool:
        return self.speculation is None and not self.finals

    def _maybe_preflight(self) -> None:
        """A preflight of the utterance so far, if the speaker is pausing and the engine is free."""
        utterance = self.utterance
        if utterance is None or utterance.paused_at is None or not self._engine_free():
            return
        if utterance.heard_whole() or utterance.paused_at <= utterance.cut:
            return
        self._speculate(Speculation(utterance, "preflight", utterance.cut, utterance.paused_at))

    def _maybe_interim(self) -> None:
        """An interim now, if the local engine is free, the share of time allows it, and it can be
        ready before the speaker could pause long enough for the preflight."""
        utterance, s = self.utterance, self.settings
        if self.local is None or utterance is None or not self._engine_free():
            return
        if self.local_link is not None and not may_speculate(self.local_link.gate()):
            return  # the chain rests it (its breaker is open, or a request probes it): so do interims
        seconds = (len(utterance.frames) - utterance.cut) * FRAME_SECONDS
        expected = self.speed.expected(seconds)
        now = time.monotonic()
        interval = max(s.min_interim_interval, (expected or 0.0) / s.interim_share)
        if now - self.interim_started < interval or seconds < s.min_interim_interval:
            return
        if expected is not None and expected > s.preflight_pause:
            return  # it would still be running when a preflight is due
        self.interim_started = now
        self._speculate(Speculation(utterance, "interim", utterance.cut, len(utterance.frames)))

    def _speculate(self, speculation: Speculation) -> None:
        self.speculation = speculation
        speculation.task = self._spawn(self._speculation(speculation))

    async def _speculation(self, speculation: Speculation) -> None:
        """Run one speculation; what it heard becomes an interim, the preflight, or a piece."""
        utterance, first, end = speculation.utterance, speculation.first, speculation.end
        audio = utterance.audio(first, end)
        try:
            if speculation.kind == "interim":
                result = await self._recognise_locally(audio)
            else:
                result = await self._recognise(audio, "speculation")
        except STTError as e:  # a speculation is a nicety: the final does not depend on it
            logger.debug("%s skipped: %s", speculation.kind, e)
            result = None
        finally:
            self.speculation = None
        if result is not None:
            self._heard(speculation, result)
        if self.utterance is not None and self.utterance.paused_at is not None:
            self._maybe_preflight()  # a pause that came while this ran

    def _heard(self, speculation: Speculation, result: Transcript) -> None:
        utterance, first, end = speculation.utterance, speculation.first, speculation.end
        current = utterance is self.utterance
        if speculation.kind == "preflight" and utterance.paused_at == end:  # no speech since
            utterance.heard = (end, result)
            if current:
                self._emit(self._event("preflight", utterance.joined((first, result)), utterance, end))
            return
        # Speech overtook it (or it was an interim): kept as a piece where it can be, shown as an interim.
        if speculation.kind == "preflight":
            utterance.keep(first, end, result, min_piece=self.settings.min_piece)
        text = utterance.joined(None if utterance.cut == end else (first, result))
        if current and text.text:
            self._emit(self._event("interim", text, utterance, end))

    # -- finals ----------------------------------------------------------------------------------

    async def _final(self, utterance: Utterance, previous: asyncio.Task[None] | None) -> None:
        # One final at a time, in utterance order: a local engine serves one call at a time, and
        # an earlier utterance never waits behind a later one's (a hung one's) recognition.
        if previous is not None:
            await asyncio.wait({previous})
        result: Transcript | Exception
        try:
            result = await self._rest_of(utterance)
        except Exception as e:  # STTError from the engines; anything else is reported the same way
            result = e
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]  # stopped or given up on
                raise
            # An engine raised it of its own (a worker pool shut down under it): its failure, or this
            # final would never be out and every later one would wait behind it.
            result = ProviderError(f"{self.engine.name} cancelled its recognition", provider=self.engine.name)
        if not self.finals or self.finals[0][0] is not utterance:
            return  # given up on by the drain, which reported it
        self.finals.popleft()
        if isinstance(result, Transcript):
            self._emit(self._event("final", result, utterance, len(utterance.frames)))
        else:
            self._failed(utterance, result)
        self._record_lag(utterance)
        self._maybe_preflight()  # the engine is free again

    async def _rest_of(self, utterance: Utterance) -> Transcript:
        """The utterance's transcript: its pieces, what was heard at its last pause, and a
        recognition of what is left after them (the only audio the final itself recognises)."""
        speculation = self.speculation
        if speculation is not None and speculation.utterance is utterance and speculation.task is not None:
            await asyncio.wait({speculation.task})  # at most one: it may cover part of what is left
        if utterance.heard_whole() and utterance.heard is not None:
            return utterance.joined((utterance.cut, utterance.heard[1]))
        first, end = utterance.cut, len(utterance.frames)
        if end <= first:
            return utterance.joined()
        tail = await self._recognise(utterance.audio(first, end), "utterance")
        return utterance.joined((first, tail))

    def _failed(self, utterance: Utterance, error: Exception) -> None:
        logger.warning("an utterance (%.1f-%.1f s) got no transcript: %s", utterance.speech, utterance.end,
                       error)
        self._emit(StreamEvent("failed", utterance.joined().text, start=utterance.speech, end=utterance.end,
                               error=error))

    async def _drain(self) -> None:
        """The input ended: wait for the finals in flight while they come, each within
        ``drain_timeout`` of the one before; report those left when one does not."""
        while self.finals:
            oldest = self.finals[0][1]
            await asyncio.wait({oldest}, timeout=self.settings.drain_timeout)
            if self.finals and self.finals[0][1] is oldest:
                break  # not done in time (or done without its event): reported below
        if not self.finals:
            return
        unfinished = list(self.finals)
        self.finals.clear()
        for _, task in unfinished:
            task.cancel()
        await asyncio.wait([task for _, task in unfinished])
        for utterance, _ in unfinished:
            self._failed(utterance, ProviderTimeout(
                f"not transcribed within drain_timeout ({self.settings.drain_timeout:g} s) of the end "
                "of the input", provider=self.engine.name))

    # -- helpers -----------------------------------------------------------------------------------

    async def _recognise(self, audio: Audio, purpose: Purpose) -> Transcript:
        """The engine's (the chain's) answer for ``audio``, bounded by ``attempt_timeout``; its
        speed is learnt when a local engine answered."""
        await self._loaded(self.engine.providers[0] if isinstance(self.engine, Chain) else self.engine)
        started, limit = time.monotonic(), self.settings.attempt_timeout
        if isinstance(self.engine, Chain):
            result = await self.engine.transcribe(audio, language=self.language, purpose=purpose,
                                                  attempt_timeout=limit)
        else:
            result = await _bounded(self.engine.transcribe(audio, language=self.language), limit,
                                    self.engine.name)
        if self.local is not None and result.provider == self.local.name:
            self.speed.learn(audio.duration, time.monotonic() - started)
        return result

    async def _recognise_locally(self, audio: Audio) -> Transcript:
        """An interim, from the local engine itself (never a paid cloud request)."""
        assert self.local is not None
        await self._loaded(self.local)
        started = time.monotonic()
        result = await _bounded(self.local.transcribe(audio, language=self.language),
                                self.settings.attempt_timeout, self.local.name)
        self.speed.learn(audio.duration, time.monotonic() - started)
        return result

    async def _loaded(self, first: Provider) -> None:
        """When ``first``, the engine asked first, is the local one and can serve, wait once (at most
        ``attempt_timeout``) for its model: its load is in neither a recognition's bound nor its speed."""
        if self.loading is not None and first is self.local and first.why_unavailable() is None:
            await asyncio.wait({self.loading}, timeout=self.settings.attempt_timeout)
            self.loading = None

    def _event(self, kind: str, result: Transcript, utterance: Utterance, end: int) -> StreamEvent:
        return StreamEvent(kind, result.text, start=utterance.speech,  # type: ignore[arg-type]
                           end=utterance.end if kind == "final" else utterance.seconds(end),
                           language=result.language, confidence=result.confidence,
                           provider=result.provider)

    def _warn_behind(self) -> None:
        """An utterance ended while the one before still awaits its final: the engine is slower
        than speech. Said once per stream; speculation is already off while finals wait."""
        oldest = self.finals[0][0]
        behind = time.monotonic() - (oldest.ended_at or time.monotonic())
        if self.segmenter.frames * FRAME_SECONDS - (oldest.speech_end or 0.0) > _AT_ONCE * behind:
            return  # the audio comes far faster than anyone speaks (a file read at once): finals queue
        self.warned_behind = True
        logger.warning("real time is falling behind: %s is slower than speech (%.1f s behind, %d finals "
                       "waiting); interims are off until it catches up", self.engine.name, behind,
                       len(self.finals) + 1)

    def _record_lag(self, utterance: Utterance) -> None:
        if utterance.ended_at is not None:
            telemetry.realtime_lag(self.engine.name, time.monotonic() - utterance.ended_at)

    def _emit(self, event: StreamEvent) -> None:
        self.events.put_nowait(event)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def stop(self, feeding: asyncio.Future[None]) -> None:
        """The caller is done (or gone): nothing of this stream keeps running."""
        for task in [feeding, *self.tasks]:
            task.cancel()
        for task in [feeding, *self.tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _bounded(call: Coroutine[Any, Any, Transcript], limit: float, engine: str) -> Transcript:
    """``call``, as an engine that has not answered within ``limit`` seconds has failed."""
    try:
        async with asyncio.timeout(limit):
            return await call
    except TimeoutError as e:
        raise ProviderTimeout(f"{engine} took longer than {limit:g}s", provider=engine) from e
