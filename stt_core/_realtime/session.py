"""Real time for engines that do not stream: a VAD-driven stream over any Provider, a chain included.

Live audio goes through Silero's VAD frame by frame (``_vad``). For each utterance:

- ``speech_start`` when the speaker starts (after ``min_speech``);
- ``interim`` transcripts while they speak: the utterance so far recognised again by the first
  local engine, as often as its measured speed allows within ``interim_share`` of the time, and
  only when one can be ready before a pause could call for the preflight: an interim never delays
  anything else, and a slow engine simply gets fewer;
- ``preflight`` once they pause for ``preflight_pause``: the utterance so far recognised ahead,
  through the engine (the chain: retries and failover as for any request);
- ``speech_end`` and ``final`` at the VAD's end of speech (``min_silence`` of pause): the
  preflight's result when no speech came after it, else the whole utterance recognised now. A
  chain's first engine that fails hands the whole utterance to the next, as a batch request does:
  nothing is lost, nothing heard twice.

Times are seconds of the stream's audio. Finals come in utterance order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import soxr
from pydantic import Field

from .. import telemetry
from .._audio.audio import Audio
from .._audio.vad import FRAME, FRAME_SECONDS, RATE, Boundary, Segmenter, SileroVAD, VADSettings
from .._errors import STTError
from .._provider import Provider
from .._types import StreamEvent, Transcript

logger = logging.getLogger("stt_core.realtime")
T = TypeVar("T")


class RealtimeSettings(VADSettings):
    """The VAD's settings, and how much time interims may take. ``[realtime]`` in config."""

    interim_share: float = Field(0.5, gt=0, le=1)
    """At most this share of the time goes to recognising interims (the rest is the engine's)."""
    min_interim_interval: float = Field(0.3, ge=0.05, le=10)
    """Seconds between interims at the least, however fast the engine."""
    pre_roll: float = Field(0.3, ge=0, le=2)
    """Seconds of audio before the speech's start that go to the engine with it (recognisers hear
    the first word better with a little lead-in; LiveKit's VAD keeps 0.5 s)."""


def interim_engine(engine: Provider) -> Provider | None:
    """What recognises interims: the first local engine of a chain (or the engine itself if it is
    local). Cloud engines get no interims: each would be a paid request."""
    members = getattr(engine, "providers", None) or [engine]
    return next((p for p in members if p.capabilities.offline), None)


@dataclass
class _Utterance:
    """One utterance's audio (from its pre-roll on) and what is being recognised of it."""

    start: float  # seconds of the stream where its audio starts (the pre-roll's start)
    frames: list[np.ndarray] = field(default_factory=list)
    speech: float = 0.0  # where the VAD says the speech starts
    speech_end: float | None = None
    preflight: asyncio.Task[Transcript] | None = None  # since the last pause, with no speech after it

    def audio(self) -> Audio:
        return Audio(np.concatenate(self.frames), RATE)

    @property
    def end(self) -> float:
        """Where the speech ends (once the VAD said so), else where its audio ends so far."""
        if self.speech_end is not None:
            return self.speech_end
        return self.start + len(self.frames) * FRAME_SECONDS


class _Speed:
    """Seconds of recognition per second of audio, as last measured (None until then)."""

    def __init__(self) -> None:
        self.per_second: float | None = None

    def learn(self, audio_seconds: float, took: float) -> None:
        self.per_second = took / max(audio_seconds, 0.1)

    def at_least(self, audio_seconds: float, took: float) -> None:
        self.per_second = max(self.per_second or 0.0, took / max(audio_seconds, 0.1))


async def realtime(
    engine: Provider,
    audio: AsyncIterable[Audio],
    *,
    language: str | None = None,
    settings: RealtimeSettings | None = None,
    vad: SileroVAD | None = None,
) -> AsyncIterator[StreamEvent]:
    """Interim, preflight and final transcripts from ``engine`` for live ``audio`` (module doc)."""
    events = _events(_Stream(engine, language, settings or RealtimeSettings(), vad or SileroVAD()), audio)
    async for event in telemetry.traced_stream(events, chain=engine.model or engine.name, language=language):
        yield event


async def _events(stream: _Stream, audio: AsyncIterable[Audio]) -> AsyncIterator[StreamEvent]:
    feeding = asyncio.ensure_future(stream.feed(audio))
    try:
        while (event := await stream.events.get()) is not None:
            if isinstance(event, BaseException):
                raise event  # an utterance nobody could transcribe (AllProvidersFailed for a chain)
            yield event
        await feeding  # the source's error, if it failed
    finally:
        await stream.stop(feeding)


class _Stream:
    def __init__(
        self, engine: Provider, language: str | None, settings: RealtimeSettings, vad: SileroVAD
    ) -> None:
        self.engine, self.language, self.settings = engine, language, settings
        self.local = interim_engine(engine)
        self.vad, self.segmenter = vad, Segmenter(settings)
        self.vad.reset()
        self.events: asyncio.Queue[StreamEvent | BaseException | None] = asyncio.Queue()
        keep = round((settings.min_speech + settings.pre_roll) / FRAME_SECONDS) + 2
        self.recent: deque[np.ndarray] = deque(maxlen=keep)  # frames before speech starts: its pre-roll
        self.utterance: _Utterance | None = None
        self.interim: asyncio.Task[None] | None = None
        self.interim_started = 0.0
        self.speed = _Speed()
        self.finals: asyncio.Task[None] | None = None  # the last utterance's final, in order
        self.tasks: set[asyncio.Task[Any]] = set()
        self.preflights: set[asyncio.Task[Transcript]] = set()  # running, current or overtaken

    async def feed(self, audio: AsyncIterable[Audio]) -> None:
        resampler: soxr.ResampleStream | None = None
        rate = 0
        left = np.zeros(0, dtype=np.float32)
        try:
            async for chunk in audio:
                if chunk.sample_rate != rate:  # a new rate: a resampler of its own (stateful, no clicks)
                    rate = chunk.sample_rate
                    resampler = None if rate == RATE else soxr.ResampleStream(rate, RATE, 1, dtype="float32")
                mono = chunk.to(chunk.sample_rate, 1, "float32").samples.reshape(-1)
                samples = mono if resampler is None else resampler.resample_chunk(mono)
                left = np.concatenate([left, samples])
                whole = len(left) // FRAME * FRAME
                for i in range(0, whole, FRAME):
                    self._frame(left[i:i + FRAME])
                left = left[whole:]
                await asyncio.sleep(0)  # let recognitions hand back their results
            for boundary in self.segmenter.finish():
                self._on(boundary)
            if self.finals is not None:
                await self.finals
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
        if self.utterance is not None and self.segmenter.speaking:
            self._maybe_interim()

    def _on(self, boundary: Boundary) -> None:
        if boundary.kind == "start":
            # The frames since the start the VAD gives, and the pre-roll before it, join the utterance.
            now = self.segmenter.frames * FRAME_SECONDS
            back = round((now - max(0.0, boundary.at - self.settings.pre_roll)) / FRAME_SECONDS)
            frames = list(self.recent)[-back:] if back > 0 else []
            self.utterance = _Utterance(now - len(frames) * FRAME_SECONDS, frames, speech=boundary.at)
            self.recent.clear()
            self._emit(StreamEvent("speech_start", "", start=boundary.at))
        elif boundary.kind == "pause" and self.utterance is not None:
            self._stop_interim()  # the preflight needs the engine more
            self.utterance.preflight = self._spawn(self._preflight(self.utterance, self.utterance.audio()))
            self.preflights.add(self.utterance.preflight)
            self.utterance.preflight.add_done_callback(self.preflights.discard)
        elif boundary.kind == "resume" and self.utterance is not None:
            # Speech came after it: it is not the whole utterance, and is neither sent nor reused.
            # It runs to its end (the engine would finish it anyway), and interims wait for it, so
            # they are timed alone.
            self.utterance.preflight = None
        elif boundary.kind == "end" and self.utterance is not None:
            utterance, self.utterance = self.utterance, None
            utterance.speech_end = boundary.at
            self._stop_interim()
            self._emit(StreamEvent("speech_end", "", start=utterance.speech, end=boundary.at))
            previous = self.finals
            self.finals = self._spawn(self._final(utterance, previous))

    async def _final(self, utterance: _Utterance, previous: asyncio.Task[None] | None) -> None:
        result: Transcript | None = None
        try:
            if utterance.preflight is not None:  # no speech came after it: it heard the utterance
                with contextlib.suppress(STTError):  # it failed: recognise the utterance again, below
                    result = await utterance.preflight
            if result is None:
                result = await self._recognise(utterance.audio())
            if previous is not None:
                await previous  # finals in utterance order
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            self._emit(e)
            return
        self._emit(StreamEvent("final", result.text, start=utterance.speech, end=utterance.end,
                               language=result.language, confidence=result.confidence,
                               provider=result.provider))

    async def _preflight(self, utterance: _Utterance, audio: Audio) -> Transcript:
        result = await self._recognise(audio)
        if self.utterance is utterance and utterance.preflight is asyncio.current_task():
            self._emit(StreamEvent("preflight", result.text, start=utterance.speech,
                                   end=utterance.start + audio.duration, language=result.language,
                                   provider=result.provider))
        return result

    async def _recognise(self, audio: Audio) -> Transcript:
        """The engine's (the chain's) answer for ``audio``; its speed is learnt when it was local."""
        started = time.monotonic()
        result = await self.engine.transcribe(audio, language=self.language)
        if self.local is not None and result.provider == self.local.name:
            self.speed.learn(audio.duration, time.monotonic() - started)
        return result

    def _maybe_interim(self) -> None:
        """An interim now, if the local engine is free, the share of time allows it, and it can be
        ready before the speaker could pause long enough for the preflight."""
        utterance, s = self.utterance, self.settings
        if self.local is None or utterance is None or (self.interim is not None and not self.interim.done()):
            return
        if self.preflights:
            return
        seconds = len(utterance.frames) * FRAME_SECONDS
        expected = None if self.speed.per_second is None else self.speed.per_second * seconds
        now = time.monotonic()
        interval = max(s.min_interim_interval, (expected or 0.0) / s.interim_share)
        if now - self.interim_started < interval or seconds < s.min_interim_interval:
            return
        if expected is not None and expected > s.preflight_pause:
            return  # it would still be running when a preflight is due
        self.interim_started = now
        self.interim = self._spawn(self._interim(utterance, utterance.audio()))

    async def _interim(self, utterance: _Utterance, audio: Audio) -> None:
        assert self.local is not None
        started = time.monotonic()
        try:
            result = await self.local.transcribe(audio, language=self.language)
        except STTError as e:  # an interim is a nicety: the final does not depend on it
            logger.debug("interim skipped: %s", e)
            return
        except asyncio.CancelledError:  # stopped for a preflight: it took at least this long
            self.speed.at_least(audio.duration, time.monotonic() - started)
            raise
        self.speed.learn(audio.duration, time.monotonic() - started)
        if self.utterance is utterance and result.text:
            self._emit(StreamEvent("interim", result.text, start=utterance.speech,
                                   end=utterance.start + audio.duration, language=result.language,
                                   provider=result.provider))

    def _stop_interim(self) -> None:
        if self.interim is not None and not self.interim.done():
            self.interim.cancel()

    def _emit(self, event: StreamEvent | BaseException) -> None:
        self.events.put_nowait(event)

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
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
