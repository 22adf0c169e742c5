"""Any stt-core engine or chain as a ``livekit.agents.stt.STT``.

One retry layer: the stt-core chain retries, bounds each attempt and falls over, so the
adapter runs LiveKit's own loop with ``max_retry=0`` (whatever ``conn_options`` says) and hands
LiveKit one ``APIError`` when the whole chain has failed, its ``retryable`` flag telling a
``FallbackAdapter`` above whether trying again later could help.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
    stt,
)
from livekit.agents.language import LanguageCode
from livekit.agents.types import NOT_GIVEN, NotGivenOr, TimedString
from livekit.agents.utils import AudioBuffer, aio, is_given, merge_frames
from livekit.agents.utils.audio import AudioByteStream

import stt_core
from stt_core import (
    AllProvidersFailed,
    Audio,
    Chain,
    InvalidAudioError,
    Provider,
    ProviderError,
    ProviderTimeout,
    StreamEvent,
    STTError,
    Transcript,
)

from ._prewarm import configured_chain, prewarmed_chain


class STT(stt.STT[Any]):
    """A LiveKit STT over an stt-core engine or chain (``stt_core.Hearing`` says how it is heard).

    It streams, with interim results, when the chain's first engine streams natively (Deepgram,
    through the chain's stream failover), and when it is local (FunASR, whisper): then
    ``stt_core.realtime`` runs Silero's VAD on onnxruntime and sends START_OF_SPEECH, interims,
    a PREFLIGHT_TRANSCRIPT at the speaker's pause (LiveKit starts preemptive generation from it),
    END_OF_SPEECH and the final, which reuses the preflight when no speech came after it; an
    utterance no engine could transcribe is a recoverable error, and the stream goes on.
    Otherwise LiveKit's ``StreamAdapter`` calls ``recognize()`` per utterance.

    Args:
        engine: the engine or chain (a single engine is wrapped in a chain).
        language: the language asked for when a call gives none (``None``: the engines detect it).
        word_timestamps: ask for word times; ``None`` (the default): when every engine gives them
            (asking routes around any engine that cannot).
        realtime: ``False`` leaves a local first engine to LiveKit's ``StreamAdapter``; ``None``:
            real time wherever it can run (a Silero model installed).
        realtime_settings: real time's VAD and time bounds (``[realtime]``).
    """

    def __init__(self, engine: Provider, *, language: str | None = None,
                 word_timestamps: bool | None = None, realtime: bool | None = None,
                 realtime_settings: stt_core.RealtimeSettings | None = None) -> None:
        self._hearing = stt_core.Hearing(engine, realtime=realtime, settings=realtime_settings)
        every = all(p.capabilities.word_timestamps for p in self.chain.providers)
        self._word_timestamps = every if word_timestamps is None else word_timestamps
        streams = self._hearing.continuous
        super().__init__(capabilities=stt.STTCapabilities(
            streaming=streams, interim_results=streams, offline_recognize=True,
            aligned_transcript="word" if self._word_timestamps else False))
        self._language = language
        first = self._hearing.first
        self._answered = (first.name, first.model) if first else ("none", None)

    @classmethod
    def from_config(cls, path: str | Path | None = None, **options: Any) -> STT:
        """The chain that ``stt.toml`` (or ``path``) and the environment declare."""
        options.setdefault("realtime_settings", stt_core.load_config(path).realtime())
        return cls(configured_chain(path), **options)

    @classmethod
    def from_process(cls, proc: Any, config: str | Path | None = None, **options: Any) -> STT:
        """The chain ``prewarm`` loaded in this worker process, or a fresh one from config."""
        chain = prewarmed_chain(proc)
        return cls(chain, **options) if chain is not None else cls.from_config(config, **options)

    @property
    def chain(self) -> Chain:
        return self._hearing.chain

    @property
    def realtime(self) -> bool:
        """Whether streams run ``stt_core.realtime`` (a local first engine and a VAD model)."""
        return self._hearing.mode == "realtime"

    @property
    def provider(self) -> str:
        """The engine that answered last (LiveKit labels its STT metrics with this)."""
        return self._answered[0]

    @property
    def model(self) -> str:
        return self._answered[1] or "unknown"

    def _answered_by(self, provider: str, model: str | None) -> None:
        if provider:
            self._answered = (provider, model)

    def _language_for(self, language: NotGivenOr[str]) -> str | None:
        return str(language) if is_given(language) and language else self._language

    async def recognize(self, buffer: AudioBuffer, *, language: NotGivenOr[str] = NOT_GIVEN,
                        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> stt.SpeechEvent:
        return await super().recognize(buffer, language=language, conn_options=_one_try(conn_options))

    async def _recognize_impl(
        self, buffer: AudioBuffer, *, language: NotGivenOr[str] = NOT_GIVEN, conn_options: APIConnectOptions
    ) -> stt.SpeechEvent:
        try:
            result = await self._hearing.utterance(
                frames_to_audio(buffer), language=self._language_for(language),
                word_timestamps=self._word_timestamps)
        except STTError as e:
            raise to_livekit_error(e) from e
        self._answered_by(result.provider, result.model)
        return stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT, alternatives=[_speech_data(result)],
                               request_id=str(result.metadata.get("request_id") or uuid.uuid4()))

    def stream(self, *, language: NotGivenOr[str] = NOT_GIVEN,
               conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> SpeechStream:
        return SpeechStream(stt=self, language=self._language_for(language),
                            conn_options=_one_try(conn_options))

    async def aclose(self) -> None:
        await self.chain.aclose()


class SpeechStream(stt.RecognizeStream):
    """Frames in, interim and final transcripts out, through the chain's stream failover.

    Each ``flush()`` (LiveKit's end of a user turn) ends one chain stream and the next audio
    starts another, so an engine without native streaming, reached by failover, answers per
    utterance rather than at the end of the call.
    """

    def __init__(self, *, stt: STT, language: str | None, conn_options: APIConnectOptions) -> None:
        # No sample_rate here: LiveKit's own resampling assumes mono frames; the engines convert
        # any rate and channel count themselves (soxr), so frames go through as they come.
        super().__init__(stt=stt, conn_options=conn_options)
        self._adapter = stt
        self._language = language
        self._heard = 0.0  # seconds of audio pushed so far, over all segments

    async def _run(self) -> None:
        ended = False
        while not ended:
            queue: asyncio.Queue[Audio | None] = asyncio.Queue()
            segment: asyncio.Task[None] | None = None
            ended = True
            try:
                async for item in self._input_ch:
                    if isinstance(item, self._FlushSentinel):
                        ended = False
                        break
                    if segment is not None and segment.done():  # the whole chain failed it (said): hear on
                        await segment  # (it raises only for a chain that can never serve)
                        queue = asyncio.Queue()  # and it waits a moment: not a new error every frame
                        segment = asyncio.create_task(self._recognise(queue, self._heard, _RESTART_AFTER))
                    if item.samples_per_channel == 0:
                        continue  # an empty frame holds nothing to hear (recognize() refuses audio of none)
                    audio = frames_to_audio(item)
                    if segment is None:
                        segment = asyncio.create_task(self._recognise(queue, self._heard))
                    self._heard += audio.duration
                    queue.put_nowait(audio)
                queue.put_nowait(None)
                if segment is not None:
                    await segment
            finally:
                # Closed mid-utterance (the caller hung up): the chain's stream ends now, not with the input.
                if segment is not None and not segment.done():
                    await aio.cancel_and_wait(segment)

    async def _recognise(self, queue: asyncio.Queue[Audio | None], offset: float, wait: float = 0.0) -> None:
        """One segment's events as LiveKit's (real time's END_OF_SPEECH comes before its final, as
        LiveKit's StreamAdapter sends it), after ``wait``; an utterance no engine transcribed, or a
        stream the whole chain failed, is a recoverable error, and the stream goes on."""
        await asyncio.sleep(wait)
        adapter, reported = self._adapter, offset
        events = adapter._hearing.events(stt_core.queued_audio(queue), language=self._language)
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    if event.type == "failed":
                        self._failed(event.error)
                    elif event.type in ("speech_start", "speech_end"):
                        self._event_ch.send_nowait(stt.SpeechEvent(type=_KINDS[event.type]))
                    else:
                        data = _stream_data(event, offset + self.start_time_offset, self._language)
                        self._event_ch.send_nowait(stt.SpeechEvent(_KINDS[event.type], alternatives=[data]))
                    if event.is_final:
                        adapter._answered_by(event.provider, adapter._hearing.model_of(event.provider))
                        reported = self._report_usage(reported, offset + (event.end or 0.0))
        except STTError as e:
            if isinstance(e, InvalidAudioError) or adapter._hearing.never_serves(e, language=self._language):
                raise to_livekit_error(e) from e  # a new stream would fail the same way
            self._failed(e)
        self._report_usage(reported, self._heard)

    def _failed(self, error: BaseException | None) -> None:
        self._adapter.emit("error", stt.STTError(timestamp=time.time(), label=self._adapter.label,
                                                 error=to_livekit_error(error), recoverable=True))

    def _report_usage(self, since: float, until: float) -> float:
        """A RECOGNITION_USAGE event for the audio in [since, until): LiveKit's STT metrics."""
        if until <= since:
            return since
        self._event_ch.send_nowait(stt.SpeechEvent(type=_KIND.RECOGNITION_USAGE,
                                                   recognition_usage=stt.RecognitionUsage(until - since)))
        return until


# -- conversions ---------------------------------------------------------------------------------


def frames_to_audio(buffer: AudioBuffer) -> Audio:
    """LiveKit frames (any rate, any channel count, int16 interleaved) as one ``Audio``."""
    if isinstance(buffer, list) and not buffer:
        raise InvalidAudioError("no audio frames (an empty frame list)")
    frame = merge_frames(buffer) if isinstance(buffer, list) else buffer
    return Audio.from_bytes(bytes(frame.data), sample_rate=frame.sample_rate, channels=frame.num_channels)


def audio_to_frames(audio: Audio, *, frame_ms: int = 20) -> list[rtc.AudioFrame]:
    """``Audio`` as LiveKit frames of ``frame_ms`` (for tests, examples and custom inputs)."""
    if (samples := audio.sample_rate * frame_ms // 1000) < 1:  # LiveKit's chunker would loop for ever
        raise ValueError(f"frame_ms = {frame_ms} holds no sample at {audio.sample_rate} Hz")
    frames = AudioByteStream(audio.sample_rate, audio.channels, samples)
    return [*frames.push(audio.pcm_bytes()), *frames.flush()]  # the last one shorter


def to_livekit_error(e: BaseException | None) -> APIError:
    """The stt-core error tree as LiveKit's ``APIError`` family, with an honest ``retryable``."""
    if isinstance(e, AllProvidersFailed) and e.last is not None:  # the last cause's kind, the whole story
        error = to_livekit_error(e.last)
        error.args, error.message, error.retryable = (str(e),), str(e), e.retryable
        return error
    if isinstance(e, ProviderTimeout):
        return APITimeoutError(str(e), retryable=e.retryable)
    if isinstance(e, ProviderError):
        if e.status_code is not None:
            return APIStatusError(str(e), status_code=e.status_code, retryable=e.retryable)
        return APIConnectionError(str(e), retryable=e.retryable)
    if isinstance(e, InvalidAudioError):
        return APIStatusError(str(e), status_code=400, retryable=False)
    return APIError(str(e), retryable=False)  # ConfigError, ProviderUnavailable: retrying will not help


_RESTART_AFTER = 1.0  # seconds before a stream the whole chain failed is followed by another
_KIND = stt.SpeechEventType
_KINDS = {"speech_start": _KIND.START_OF_SPEECH, "interim": _KIND.INTERIM_TRANSCRIPT,
          "preflight": _KIND.PREFLIGHT_TRANSCRIPT, "final": _KIND.FINAL_TRANSCRIPT,
          "speech_end": _KIND.END_OF_SPEECH}


def _one_try(options: APIConnectOptions) -> APIConnectOptions:
    """LiveKit's retry loop off: the chain already retried (see the module docstring)."""
    return APIConnectOptions(max_retry=0, retry_interval=options.retry_interval, timeout=options.timeout)


def _speech_data(result: Transcript) -> stt.SpeechData:
    """A recognised utterance as LiveKit's, through the same conversion as a stream's final; its
    confidence the engine's own for the whole answer (what the chain judged), else its segments'."""
    confidences = [s.confidence for s in result.segments if s.confidence is not None]
    confidence = result.confidence
    if confidence is None and confidences:
        confidence = sum(confidences) / len(confidences)
    final = StreamEvent("final", result.text, start=result.segments[0].start if result.segments else 0.0,
                        end=result.segments[-1].end if result.segments else (result.duration or 0.0),
                        language=result.language, words=result.words, provider=result.provider,
                        confidence=confidence)
    return _stream_data(final, 0.0, None, {"model": result.model, **result.metadata})


def _stream_data(event: StreamEvent, offset: float, language: str | None,
                 metadata: dict[str, Any] | None = None) -> stt.SpeechData:
    return stt.SpeechData(
        language=LanguageCode(event.language or language or ""), text=event.text,
        start_time=(event.start or 0.0) + offset, end_time=(event.end or event.start or 0.0) + offset,
        confidence=event.confidence or 0.0,
        words=[TimedString(w.text, start_time=w.start + offset, end_time=w.end + offset,
                           confidence=NOT_GIVEN if w.confidence is None else w.confidence)
               for w in event.words] or None,
        metadata={"provider": event.provider, **(metadata or {})})
