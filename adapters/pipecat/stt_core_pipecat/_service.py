"""Any stt-core engine or chain as a Pipecat STT service, a ``FrameProcessor`` in a pipeline.

How it hears is picked from the chain's first engine, as the LiveKit adapter does:

- it streams natively (Deepgram): the audio goes through the chain's stream, with its failover
  and replay (a stream that dies mid-utterance hands that utterance's audio to the next engine);
- it is local (FunASR, whisper) and a Silero model is installed: ``stt_core.realtime`` runs its own
  VAD, with interim transcripts while the user speaks and each utterance's final at its end;
- otherwise (cloud batch engines, or ``realtime=False``): the pipeline's VAD frames cut the
  audio, as Pipecat's ``SegmentedSTTService`` does, with a pre-roll, and each utterance goes to
  the chain once, in order.

One retry layer: the chain retries and falls over. An ``ErrorFrame`` goes upstream only when the
whole chain failed, and the service marks itself unusable only when no engine of the chain can
ever serve (no key, no model, a key refused), so a ``ServiceSwitcher`` above it still has its say.
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

import numpy as np
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
    ProviderUnavailable,
    RealtimeSettings,
    STTError,
    telemetry,
)

PIPECAT_STOP_SECS = 0.2
"""Pipecat's ``VADParams.stop_secs`` default: the silence that ends a user's speech there. Real
time uses it as the silence that ends an utterance, so finals come when Pipecat expects them."""
_REFUSED = (401, 403)  # a key the engine refuses: it stays refused until the config changes
_RESTART_AFTER = 1.0  # seconds between a stream the whole chain failed and the next one
_MOST_QUEUED = 1500  # frames of audio kept for a stream while none reads (30 s of 20 ms frames)
_LEARNT = 5  # speech-end-to-final times measured before the measured p99 replaces the default


class ChainSTTService(STTService):
    """A Pipecat STT service over an stt-core engine or chain (a single engine is wrapped in one).

    ``realtime`` (default: when the first engine is local and a Silero model is installed) gives
    interim transcripts from local engines; ``realtime_settings`` are its VAD's settings (the
    silence that ends an utterance defaults to Pipecat's 0.2 s). ``pre_roll`` is the audio kept
    before the pipeline's VAD says speech started, in segmented mode. ``ttfs_p99_latency``, when
    not given, is measured: from each utterance's end of speech (the pipeline's VAD) to its final,
    broadcast again once it is known and whenever it moves by a tenth.
    """

    def __init__(self, engine: Provider, *, language: str | None = None, realtime: bool | None = None,
                 realtime_settings: RealtimeSettings | None = None, pre_roll: float = 0.5,
                 ttfs_p99_latency: float | None = None, **kwargs: Any) -> None:
        self._chain = engine if isinstance(engine, Chain) else Chain([engine])
        first = self._chain.providers[0] if self._chain.providers else None
        capabilities = first.capabilities if first else stt_core.Capabilities()
        self._streams = capabilities.streaming
        can_realtime = not capabilities.streaming and capabilities.offline and \
            stt_core.find_vad_model() is not None
        self._realtime = can_realtime if realtime is None else realtime and can_realtime
        self._realtime_settings = realtime_settings or RealtimeSettings(min_silence=PIPECAT_STOP_SECS)
        self._pre_roll = pre_roll
        self._measures_ttfs = ttfs_p99_latency is None
        super().__init__(ttfs_p99_latency=DEFAULT_TTFS_P99 if ttfs_p99_latency is None else ttfs_p99_latency,
                         settings=STTSettings(model=first.model if first else None, language=language),
                         **kwargs)
        self._owns_chain = False
        self._worker: asyncio.Task[None] | None = None
        self._audio: asyncio.Queue[Audio | None] = asyncio.Queue()  # streams: audio for the chain
        self._input_ended = False
        self._ending = False  # an EndFrame came: the audio queued is all there will be
        self._segments: asyncio.Queue[Audio | None] = asyncio.Queue()  # segmented: utterances, in order
        self._recent: deque[Audio] = deque()  # segmented: the utterance so far, or the pre-roll
        self._speech_end: float | None = None  # wall time of a speech end still awaiting its final
        self._final_at = 0.0
        self._ttfs: deque[float] = deque(maxlen=200)
        self._answered = 0  # utterances out, finals and failures: how stop() sees progress

    @classmethod
    def from_config(cls, path: str | Path | None = None, **options: Any) -> ChainSTTService:
        """The chain that ``stt.toml`` (or ``path``) and the environment declare, closed with the
        pipeline. ``[realtime]`` applies, its ``min_silence`` defaulting to Pipecat's 0.2 s."""
        loaded = stt_core.load_config(path)
        settings = loaded.config.realtime
        if "min_silence" not in settings.model_fields_set:
            settings = settings.model_copy(update={"min_silence": PIPECAT_STOP_SECS})
        options.setdefault("realtime_settings", settings)
        service = cls(loaded.build_chain(), **options)
        service._owns_chain = True
        return service

    @property
    def chain(self) -> Chain:
        return self._chain

    @property
    def mode(self) -> str:
        """How it hears: ``"stream"`` (a streaming first engine), ``"realtime"`` or ``"segmented"``."""
        return "stream" if self._streams else "realtime" if self._realtime else "segmented"

    @property
    def measured_ttfs(self) -> list[float]:
        """Seconds from each recent utterance's end of speech to its final, oldest first."""
        return list(self._ttfs)

    def can_generate_metrics(self) -> bool:
        return True

    # -- the pipeline's frames ------------------------------------------------------------------

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        work = self._hear_segments() if self.mode == "segmented" else self._hear_streams()
        self._worker = self.create_task(work, name="stt_core_chain")

    async def stop(self, frame: EndFrame) -> None:
        """An end: what is queued (and an utterance still being spoken) is transcribed first, each
        utterance within ``drain_timeout`` of the one before; what is left then gets an ErrorFrame."""
        if self.mode == "segmented":
            if self._user_speaking:
                self._end_segment()
            self._segments.put_nowait(None)
        else:
            self._ending = True
            self._audio.put_nowait(None)
        if self._worker is not None:
            while not self._worker.done():
                answered = self._answered
                await asyncio.wait({self._worker}, timeout=self._realtime_settings.drain_timeout)
                if self._answered == answered:
                    break  # no utterance came out in that time: the rest is not waited for
            if not self._worker.done():
                left = self._segments.qsize() if self.mode == "segmented" else 0
                await self._stop_worker()
                await self._failed(STTError(
                    f"not transcribed within drain_timeout ({self._realtime_settings.drain_timeout:g} s) "
                    f"of the pipeline's end: the utterance in flight{f' and {left} more' if left else ''}"))
            self._worker = None
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        """A cancel: recognition in flight stops, and nothing of this service keeps running."""
        await self._stop_worker()
        await super().cancel(frame)

    async def cleanup(self) -> None:
        await self._stop_worker()
        if self._owns_chain:
            await self._chain.aclose()
        await super().cleanup()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        # Audio reaches process_audio_frame from here, and STTService's own VAD frame handlers
        # keep ``_user_speaking``.
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStoppedSpeakingFrame):
            if frame.stop_secs:  # the speech ended stop_secs before the VAD said so (now)
                await self._speech_ended(time.time() - frame.stop_secs)
            if self.mode == "segmented":
                self._end_segment()

    async def process_audio_frame(self, frame: InputAudioRawFrame, direction: FrameDirection) -> None:
        if self._muted or not self.is_usable or not frame.audio:
            return
        self._user_id = frame.user_id if isinstance(frame, UserAudioRawFrame) else ""
        pcm = np.frombuffer(frame.audio, dtype=np.int16).reshape(-1, frame.num_channels)
        audio = Audio(pcm.copy(), frame.sample_rate)
        if self.mode != "segmented":
            self._record_stt_audio_usage(frame.audio)
            self._audio.put_nowait(audio)
            while self._audio.qsize() > _MOST_QUEUED:  # no engine is reading: the oldest goes
                self._audio.get_nowait()
            return
        self._recent.append(audio)
        while not self._user_speaking and sum(a.duration for a in self._recent) - self._recent[0].duration \
                >= self._pre_roll:
            self._recent.popleft()  # out of the pre-roll

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        """Pipecat's per-chunk hook, unused: audio is queued by ``process_audio_frame`` instead."""
        raise NotImplementedError("ChainSTTService queues audio itself")
        yield None  # pragma: no cover

    # -- segmented: one request per utterance the pipeline's VAD cut --------------------------------

    def _end_segment(self) -> None:
        if not self._recent or not self.is_usable:
            self._recent.clear()
            return
        utterance = Audio.concat(list(self._recent))
        self._recent.clear()
        self._stt_usage_pending_seconds += utterance.duration
        self._segments.put_nowait(utterance)

    async def _hear_segments(self) -> None:
        while (utterance := await self._segments.get()) is not None:
            await self.emit_stt_usage_metrics()
            await self.start_processing_metrics()
            try:
                with telemetry.parent(self._pipecat_trace("turn")):  # live: bounded as real time is
                    result = await self._chain.transcribe(
                        utterance, language=self._language(), purpose="utterance",
                        attempt_timeout=self._realtime_settings.attempt_timeout)
            except STTError as e:
                await self.stop_processing_metrics()
                self._answered += 1
                await self._failed(e)
                continue
            await self.stop_processing_metrics()
            self._answered += 1
            if result.text:
                await self._final(result.text, result.language, result)

    # -- streams: the chain's stream (a streaming engine), or real time on a local one -----------

    async def _hear_streams(self) -> None:
        """Streams over the queued audio until it ends. When a whole stream failed (every engine),
        that is reported and a new stream takes the audio after it."""
        while not self._input_ended:
            try:
                with telemetry.parent(self._pipecat_trace("conversation")):
                    await self._one_stream()
            except STTError as e:
                await self._failed(e)
                if self._ending:
                    return  # the chain has just failed: the pipeline's end does not wait on it
                # Not at once: a chain that fails before it reads (every breaker open) would send
                # an error per frame. The audio of that second waits in the queue for the next.
                await asyncio.sleep(_RESTART_AFTER)

    async def _queued_audio(self) -> AsyncIterator[Audio]:
        while (chunk := await self._audio.get()) is not None:
            yield chunk
        self._input_ended = True

    async def _one_stream(self) -> None:
        """One stream over the queued audio: real time on a local first engine, else the chain's
        own stream. Both say ``interim`` (real time also ``preflight``, the utterance so far, sent
        as an interim too) and ``final``; real time's speech start and end go nowhere."""
        if self._realtime:
            events = stt_core.realtime(self._chain, self._queued_audio(), language=self._language(),
                                       settings=self._realtime_settings)
        else:
            events = self._chain.stream(self._queued_audio(), language=self._language())
        try:
            async for event in events:
                self._answered += event.type in ("final", "failed")
                if event.type in ("interim", "preflight") and event.text:
                    await self._interim(event.text, event.language, event)
                elif event.is_final and event.text:
                    await self._final(event.text, event.language, event)
                elif event.type == "failed":  # that utterance only: one ErrorFrame, the stream goes on
                    error = event.error if isinstance(event.error, STTError) else STTError(str(event.error))
                    await self._failed(error)
        finally:
            await _close(events)

    # -- what goes out ------------------------------------------------------------------------------

    async def _interim(self, text: str, language: str | None, result: Any) -> None:
        await self.push_frame(InterimTranscriptionFrame(text, self._user_id, time_now_iso8601(),
                                                        _pipecat_language(language), result=result))

    async def _final(self, text: str, language: str | None, result: Any) -> None:
        await self.push_frame(TranscriptionFrame(text, self._user_id, time_now_iso8601(),
                                                 _pipecat_language(language), result=result, finalized=True))
        await self.emit_stt_usage_metrics()
        self._final_at = time.time()
        if self._speech_end is not None:
            await self._learn(self._final_at - self._speech_end)
            self._speech_end = None

    async def _failed(self, error: STTError) -> None:
        """The whole chain failed: an ``ErrorFrame`` upstream (``_classify_error`` says whether
        the service is still usable)."""
        await self.push_error(f"{self.name}: {error}", exception=error)

    def _classify_error(self, exception: Exception) -> ErrorCategory | None:
        """Permanent (the service becomes unusable) only when no engine of the chain can ever serve."""
        if not isinstance(exception, STTError):
            return None
        if never_serves(self._chain, exception):
            causes = exception.errors if isinstance(exception, AllProvidersFailed) else []
            refused = any(_refused(cause) for _, cause in causes)
            return ErrorCategory.AUTHENTICATION if refused else ErrorCategory.INVALID_REQUEST
        last = exception.errors[-1][1] if isinstance(exception, AllProvidersFailed) and exception.errors \
            else exception
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

    # -- helpers -------------------------------------------------------------------------------------

    def _pipecat_trace(self, scope: str) -> Any:
        """Pipecat's current turn (or conversation) span context, where its tracing is on: the
        chain's spans become its children. A stream spans turns, so it goes under the conversation."""
        tracing = getattr(self, "_tracing_context", None)
        if tracing is None:
            return None
        turn = tracing.get_turn_context() if scope == "turn" else None
        return turn or tracing.get_conversation_context()

    def _language(self) -> str | None:
        language = self._settings.language
        code = getattr(language, "value", language)
        return code if isinstance(code, str) and code else None

    async def _stop_worker(self) -> None:
        if self._worker is not None:
            await self.cancel_task(self._worker)
            self._worker = None


def never_serves(chain: Chain, error: STTError) -> bool:
    """Whether no engine of ``chain`` can ever serve, judged after ``error`` (``Chain.never_serves``:
    not installed, no key or model, a refused key or config). A breaker, a 429, a 5xx or a timeout
    pass; so those leave the service usable."""
    return bool(chain.never_serves(error=error))


def _refused(cause: BaseException | None) -> bool:
    """The engine refused its key (HTTP 401/403): it stays refused until the config changes."""
    return isinstance(cause, ProviderError | ProviderUnavailable) and cause.status_code in _REFUSED


async def _close(events: AsyncIterator[Any]) -> None:
    """A stream's generator closed now (its engine's socket, its tasks), not when collected."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(RuntimeError):  # already running its own close
            await aclose()


def _pipecat_language(code: str | None) -> Language | None:
    try:
        return Language(code) if code else None
    except ValueError:
        return None
