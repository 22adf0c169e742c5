"""Any stt-core engine or chain as a Pipecat STT service, a ``FrameProcessor`` in a pipeline.

How it hears is ``stt_core.Hearing``'s rule, as for every adapter: the chain's own stream for a streaming
first engine (Deepgram), real time for a local one (FunASR, whisper) when a Silero model is installed, and
otherwise the pipeline's VAD cuts. Each way is a class of its own, the service's collaborator, as Pipecat
splits its ``STTService`` (streams) and ``SegmentedSTTService``: every frame goes to one stream
(``Continuous``), or each utterance the pipeline's VAD cut goes through the chain once, in order
(``Segmented``). Each turns what it hears into the service's frames (``interim``, ``final``, ``failed``) and
counts the utterances that came out (``answered``): how the service's end sees progress.

One retry layer: the chain retries and falls over. An ``ErrorFrame`` goes upstream only when the whole chain
failed (in real time: for that utterance, and the stream goes on), and the service marks itself unusable
only when no engine of the chain can ever serve (no key, no model, a key refused), so a ``ServiceSwitcher``
above it still has its say.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    StartFrame,
    TranscriptionFrame,
    UserAudioRawFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_latency import DEFAULT_TTFS_P99
from pipecat.services.stt_service import STTService
from pipecat.transcriptions.language import Language
from pipecat.utils.errors import ErrorCategory, classify_http_status_code
from pipecat.utils.time import time_now_iso8601

import stt_core
from stt_core import (
    AllProvidersFailed,
    Audio,
    Chain,
    InvalidAudioError,
    Provider,
    ProviderError,
    ProviderTimeout,
    RealtimeSettings,
    STTError,
    Transcript,
    telemetry,
)

PIPECAT_STOP_SECS = 0.2
"""Pipecat's ``VADParams.stop_secs`` default: the silence that ends a user's speech there. Real
time uses it as the silence that ends an utterance, so finals come when Pipecat expects them."""
_LEARNT = 5  # speech-end-to-final times measured before the measured p99 replaces the default
_RESTART_AFTER = 1.0  # seconds between a stream the whole chain failed and the next one
_MOST_QUEUED = 1500  # frames of audio kept for a stream while none reads (30 s of 20 ms frames)


class ChainSTTService(STTService):
    """A Pipecat STT service over an stt-core engine or chain.

    Args:
        engine: the engine or chain (a single engine is wrapped in a chain).
        language: the language asked for (``None``: the engines detect it).
        realtime: ``False`` leaves a local first engine to the pipeline's VAD; ``None`` (the
            default): real time, with interims, wherever it can run (a Silero model installed).
        realtime_settings: real time's VAD and time bounds; its ``min_silence`` defaults to
            Pipecat's 0.2 s, and its ``drain_timeout`` bounds how long the pipeline's end waits
            for each utterance still being transcribed (any way it hears).
        pre_roll: seconds kept from before the pipeline's VAD says speech started, when it cuts (it
            says so late, later for a soft first word): 1 s, as Pipecat's ``SegmentedSTTService``.
        ttfs_p99_latency: Pipecat's time-to-final estimate; ``None``: measured, from each
            utterance's end of speech (the pipeline's VAD) to its final, and broadcast again
            once it is known and whenever it moves by a tenth.
        **kwargs: Pipecat's ``STTService`` options.
    """

    def __init__(self, engine: Provider, *, language: str | None = None, realtime: bool | None = None,
                 realtime_settings: RealtimeSettings | None = None, pre_roll: float = 1.0,
                 ttfs_p99_latency: float | None = None, **kwargs: Any) -> None:
        settings = realtime_settings or RealtimeSettings(min_silence=PIPECAT_STOP_SECS)
        self.hearing = stt_core.Hearing(engine, realtime=realtime, settings=settings)
        self._measures_ttfs = ttfs_p99_latency is None
        first = self.hearing.first
        super().__init__(ttfs_p99_latency=DEFAULT_TTFS_P99 if ttfs_p99_latency is None else ttfs_p99_latency,
                         settings=STTSettings(model=first.model if first else None, language=language),
                         **kwargs)
        self._way = Continuous(self) if self.hearing.continuous else Segmented(self, pre_roll)
        self._owns_chain = False
        self._worker: asyncio.Task[None] | None = None
        self._speech_end: float | None = None  # wall time of a speech end still awaiting its final
        self._final_at = 0.0
        self._ttfs: deque[float] = deque(maxlen=200)

    @classmethod
    def from_config(cls, path: str | Path | None = None, **options: Any) -> ChainSTTService:
        """The chain that ``stt.toml`` (or ``path``) and the environment declare, closed with the
        pipeline. ``[realtime]`` applies, its ``min_silence`` defaulting to Pipecat's 0.2 s."""
        loaded = stt_core.load_config(path)
        options.setdefault("realtime_settings", loaded.realtime(min_silence=PIPECAT_STOP_SECS))
        service = cls(loaded.build_chain(), **options)
        service._owns_chain = True
        return service

    @property
    def chain(self) -> Chain:
        return self.hearing.chain

    @property
    def mode(self) -> str:
        """How it hears: ``"stream"`` (a streaming first engine), ``"realtime"`` or ``"segmented"``."""
        return self.hearing.mode

    @property
    def realtime_settings(self) -> RealtimeSettings:
        return self.hearing.settings

    @property
    def measured_ttfs(self) -> list[float]:
        """Seconds from each recent utterance's end of speech to its final, oldest first."""
        return list(self._ttfs)

    @property
    def language(self) -> str | None:
        code = getattr(self._settings.language, "value", self._settings.language)
        return code if isinstance(code, str) and code else None

    def can_generate_metrics(self) -> bool:
        return True

    # -- the pipeline's frames ------------------------------------------------------------------

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        self._worker = self.create_task(self._way.run(), name="stt_core_chain")

    async def stop(self, frame: EndFrame) -> None:
        """An end: what is queued (and an utterance still being spoken) is transcribed first, each
        utterance within ``drain_timeout`` of the one before; what is left then gets an ErrorFrame."""
        self._way.end(speaking=self._user_speaking)
        drain = self.hearing.settings.drain_timeout
        while self._worker is not None and not self._worker.done():
            answered = self._way.answered
            await asyncio.wait({self._worker}, timeout=drain)
            if self._way.answered == answered:
                break  # no utterance came out in that time: the rest is not waited for
        if self._worker is not None and not self._worker.done():
            left = self._way.waiting()
            more = f" and {left} more" if left else ""
            await self._stop_worker()
            await self.failed(STTError(f"not transcribed within drain_timeout ({drain:g} s) of the "
                                       f"pipeline's end: the utterance in flight{more}"))
        self._worker = None
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        """A cancel: recognition in flight stops, and nothing of this service keeps running."""
        await self._stop_worker()
        await super().cancel(frame)

    async def cleanup(self) -> None:
        await self._stop_worker()
        if self._owns_chain:
            await self.chain.aclose()
        await super().cleanup()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        # Audio reaches process_audio_frame from here, and STTService's own VAD frame handlers
        # keep ``_user_speaking``.
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            if frame.stop_secs:  # the speech ended stop_secs before the VAD said so (now)
                await self._speech_ended(time.time() - frame.stop_secs)
            self._way.speech_stopped()

    async def process_audio_frame(self, frame: InputAudioRawFrame, direction: FrameDirection) -> None:
        if self._muted or not self.is_usable or not frame.audio:
            return
        self._user_id = frame.user_id if isinstance(frame, UserAudioRawFrame) else ""
        if self.hearing.continuous:
            self._record_stt_audio_usage(frame.audio)
        self._way.hear(Audio.from_bytes(frame.audio, sample_rate=frame.sample_rate,
                                        channels=frame.num_channels))

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        """Pipecat's per-chunk hook, unused: audio is queued by ``process_audio_frame`` instead."""
        raise NotImplementedError("ChainSTTService queues audio itself")
        yield None  # pragma: no cover

    # -- what goes out (the ways call these) ------------------------------------------------------

    async def interim(self, text: str, language: str | None, result: Any) -> None:
        await self.push_frame(InterimTranscriptionFrame(text, self._user_id, time_now_iso8601(),
                                                        _pipecat_language(language), result=result))

    async def final(self, text: str, language: str | None, result: Any) -> None:
        await self.push_frame(TranscriptionFrame(text, self._user_id, time_now_iso8601(),
                                                 _pipecat_language(language), result=result, finalized=True))
        await self.emit_stt_usage_metrics()
        self._final_at = time.time()
        if self._speech_end is not None:
            await self._learn(self._final_at - self._speech_end)
            self._speech_end = None

    async def failed(self, error: BaseException | None) -> None:
        """The whole chain failed (for an utterance, or a stream): an ``ErrorFrame`` upstream
        (``_classify_error`` says whether the service is still usable)."""
        error = error if isinstance(error, Exception) else STTError(str(error))
        await self.push_error(f"{self.name}: {error}", exception=error)

    def usage_pending(self, seconds: float) -> None:
        """Seconds of audio a cut utterance sends: Pipecat's usage metric, emitted as it is sent."""
        self._stt_usage_pending_seconds += seconds

    def pipecat_trace(self, scope: str) -> Any:
        """Pipecat's current turn (or conversation) span context, where its tracing is on: the
        chain's spans become its children. A stream spans turns, so it goes under the conversation."""
        tracing = getattr(self, "_tracing_context", None)
        if tracing is None:
            return None
        turn = tracing.get_turn_context() if scope == "turn" else None
        return turn or tracing.get_conversation_context()

    def _classify_error(self, exception: Exception) -> ErrorCategory | None:
        """Permanent (the service becomes unusable) only when no engine of the chain can ever serve."""
        if not isinstance(exception, STTError):
            return None
        failed = exception if isinstance(exception, AllProvidersFailed) else None
        if self.hearing.never_serves(exception, language=self.language):
            refused = failed is not None and failed.key_refused
            return ErrorCategory.AUTHENTICATION if refused else ErrorCategory.INVALID_REQUEST
        last = failed.last if failed and failed.last else exception
        if isinstance(last, InvalidAudioError):
            return ErrorCategory.APPLICATION  # this audio, not the service
        if isinstance(last, ProviderTimeout):
            return ErrorCategory.CONNECTIVITY
        if isinstance(last, ProviderError) and last.status_code is not None:
            category = classify_http_status_code(last.status_code)
            return ErrorCategory.UNKNOWN if category.is_permanent else category
        return ErrorCategory.UNKNOWN

    # -- ttfs_p99_latency, measured ------------------------------------------------------------------

    async def _speech_ended(self, at: float) -> None:
        if self._final_at >= at:  # real time's final came before the pipeline's VAD said so
            await self._learn(self._final_at - at)
        else:
            self._speech_end = at

    async def _learn(self, seconds: float) -> None:
        self._ttfs.append(max(0.0, seconds))
        if not self._measures_ttfs or len(self._ttfs) < _LEARNT:
            return
        ordered = sorted(self._ttfs)
        p99 = ordered[math.ceil(0.99 * len(ordered)) - 1]
        current = self._ttfs_p99_latency or 0.0
        if abs(p99 - current) > 0.1 * max(current, 0.05):
            self._ttfs_p99_latency = p99
            await self.broadcast_service_metadata()

    async def _stop_worker(self) -> None:
        if self._worker is not None:
            await self.cancel_task(self._worker)
            self._worker = None


def _pipecat_language(code: str | None) -> Language | None:
    return next((language for language in Language if language == code), None) if code else None


# -- the two ways of hearing ------------------------------------------------------------------------


class Continuous:
    """One stream over every frame; a stream the whole chain failed is reported, and another
    takes the audio after it."""

    def __init__(self, service: ChainSTTService) -> None:
        self.service = service
        self.audio: asyncio.Queue[Audio | None] = asyncio.Queue()
        self.answered = 0
        self._ended = self._ending = False

    def hear(self, audio: Audio) -> None:
        self.audio.put_nowait(audio)
        while self.audio.qsize() > _MOST_QUEUED:  # no engine is reading: the oldest goes
            self.audio.get_nowait()

    def speech_stopped(self) -> None:
        """The pipeline's VAD: the stream has its own ends of speech."""

    def end(self, *, speaking: bool) -> None:
        """An end: the audio queued is all there will be."""
        self._ending = True
        self.audio.put_nowait(None)

    def waiting(self) -> int:
        return 0  # a stream has one utterance at a time

    async def run(self) -> None:
        service = self.service
        while not self._ended:
            try:
                with telemetry.parent(service.pipecat_trace("conversation")):
                    await self._one_stream()
            except STTError as e:
                await service.failed(e)
                # A second before the next stream (failing before it reads, it would send an error per
                # frame; the audio waits queued), or until a settings update makes the service usable.
                while not self._ending:
                    await asyncio.sleep(_RESTART_AFTER)
                    if service.is_usable:
                        break
                if self._ending:
                    return  # the chain has just failed: the pipeline's end does not wait on it

    async def _one_stream(self) -> None:
        """Real time's preflight (the utterance so far) goes out as an interim too; the bounds of
        speech go nowhere (the pipeline's VAD says those)."""
        service = self.service
        events = service.hearing.events(self._queued(), language=service.language)
        async with contextlib.aclosing(events):
            async for event in events:
                self.answered += event.type in ("final", "failed")
                if event.type in ("interim", "preflight") and event.text:
                    await service.interim(event.text, event.language, event)
                elif event.is_final and event.text:
                    await service.final(event.text, event.language, event)
                elif event.type == "failed":  # that utterance only: one ErrorFrame, the stream goes on
                    await service.failed(event.error)

    async def _queued(self) -> AsyncIterator[Audio]:
        async for chunk in stt_core.queued_audio(self.audio):
            yield chunk
        self._ended = True


class Segmented:
    """Each utterance the pipeline's VAD cuts, from ``pre_roll`` before its start."""

    def __init__(self, service: ChainSTTService, pre_roll: float) -> None:
        self.service, self.pre_roll = service, pre_roll
        self.utterances: asyncio.Queue[Audio | None] = asyncio.Queue()
        self.answered = 0
        self._recent: deque[Audio] = deque()  # the utterance so far, or the pre-roll

    def hear(self, audio: Audio) -> None:
        self._recent.append(audio)
        while not self.service._user_speaking and len(self._recent) > 1 and \
                sum(a.duration for a in self._recent) - self._recent[0].duration >= self.pre_roll:
            self._recent.popleft()  # out of the pre-roll

    def speech_stopped(self) -> None:
        heard = list(self._recent)
        self._recent.clear()
        if heard and self.service.is_usable:
            utterance = Audio.concat(heard)
            self.service.usage_pending(utterance.duration)
            self.utterances.put_nowait(utterance)

    def end(self, *, speaking: bool) -> None:
        """An end: an utterance still being spoken is cut here, and nothing more comes."""
        if speaking:
            self.speech_stopped()
        self.utterances.put_nowait(None)

    def waiting(self) -> int:
        """Utterances queued behind the one in flight."""
        return max(0, self.utterances.qsize() - 1)  # less the end's None

    async def run(self) -> None:
        service = self.service
        while (utterance := await self.utterances.get()) is not None:
            await service.emit_stt_usage_metrics()
            await service.start_processing_metrics()
            result: Transcript | STTError
            try:
                with telemetry.parent(service.pipecat_trace("turn")):
                    result = await service.hearing.utterance(utterance, language=service.language)
            except STTError as e:
                result = e
            await service.stop_processing_metrics()
            self.answered += 1
            if isinstance(result, STTError):
                await service.failed(result)
            elif result.text:
                await service.final(result.text, result.language, result)
