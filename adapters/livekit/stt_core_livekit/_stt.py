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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
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
from livekit.agents.utils import AudioBuffer, is_given, merge_frames

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
    Word,
)


class STT(stt.STT[Any]):
    """A LiveKit STT over an stt-core engine or chain (a single engine is wrapped in a chain).

    It streams, with interim results, when the chain's first engine streams natively (Deepgram,
    through the chain's stream failover), and when it is local (FunASR, whisper): then
    ``stt_core.realtime`` runs Silero's VAD on onnxruntime and sends START_OF_SPEECH, interims,
    a PREFLIGHT_TRANSCRIPT at the speaker's pause (LiveKit starts preemptive generation from it),
    END_OF_SPEECH and the final, which reuses the preflight when no speech came after it.
    ``realtime=False`` (or no VAD model installed) leaves a local chain to LiveKit's
    ``StreamAdapter``, which calls ``recognize()`` per utterance.
    """

    def __init__(self, engine: Provider, *, language: str | None = None,
                 word_timestamps: bool | None = None, realtime: bool | None = None,
                 realtime_settings: stt_core.RealtimeSettings | None = None) -> None:
        self._chain = engine if isinstance(engine, Chain) else Chain([engine])
        first_engine = self._chain.providers[0] if self._chain.providers else None
        first = first_engine.capabilities if first_engine else stt_core.Capabilities()
        # Ask for word times only when every engine can give them: asking routes around any that cannot.
        every = all(p.capabilities.word_timestamps for p in self._chain.providers)
        self._word_timestamps = every if word_timestamps is None else word_timestamps
        can_realtime = not first.streaming and first.offline and stt_core.find_vad_model() is not None
        self._realtime = can_realtime if realtime is None else realtime and can_realtime
        self._realtime_settings = realtime_settings or stt_core.RealtimeSettings()
        streams = first.streaming or self._realtime
        super().__init__(capabilities=stt.STTCapabilities(
            streaming=streams,
            interim_results=streams,
            aligned_transcript="word" if self._word_timestamps else False,
            offline_recognize=True,
        ))
        self._language = language
        self._answered = (first_engine.name, first_engine.model) if first_engine else ("none", None)

    @classmethod
    def from_config(cls, path: str | Path | None = None, **options: Any) -> STT:
        """The chain that ``stt.toml`` (or ``path``) and the environment declare."""
        from ._prewarm import configured_chain

        options.setdefault("realtime_settings", stt_core.load_config(path).config.realtime)
        return cls(configured_chain(path), **options)

    @classmethod
    def from_process(cls, proc: Any, config: str | Path | None = None, **options: Any) -> STT:
        """The chain ``prewarm`` loaded in this worker process, or a fresh one from config."""
        from ._prewarm import prewarmed_chain

        chain = prewarmed_chain(proc)
        return cls(chain, **options) if chain is not None else cls.from_config(config, **options)

    @property
    def chain(self) -> Chain:
        return self._chain

    @property
    def realtime(self) -> bool:
        """Whether streams run ``stt_core.realtime`` (a local first engine and a VAD model)."""
        return self._realtime

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

    async def recognize(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.SpeechEvent:
        return await super().recognize(buffer, language=language, conn_options=_one_try(conn_options))

    async def _recognize_impl(
        self, buffer: AudioBuffer, *, language: NotGivenOr[str] = NOT_GIVEN, conn_options: APIConnectOptions
    ) -> stt.SpeechEvent:
        try:
            audio = frames_to_audio(buffer)
            result = await self._chain.transcribe(
                audio, language=self._language_for(language), word_timestamps=self._word_timestamps
            )
        except STTError as e:
            raise to_livekit_error(e) from e
        self._answered_by(result.provider, result.model)
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=str(result.metadata.get("request_id") or uuid.uuid4()),
            alternatives=[_speech_data(result)],
        )

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> SpeechStream:
        return SpeechStream(
            stt=self, language=self._language_for(language), conn_options=_one_try(conn_options)
        )

    async def aclose(self) -> None:
        await self._chain.aclose()


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
                    audio = frames_to_audio(item)
                    if segment is None:
                        segment = asyncio.create_task(self._recognise(queue, offset=self._heard))
                    self._heard += audio.duration
                    queue.put_nowait(audio)
                queue.put_nowait(None)
                if segment is not None:
                    await segment
            finally:
                # Closed mid-utterance (the caller hung up): the chain's stream, its engine's
                # socket and tasks end with it, not whenever the input would have ended.
                if segment is not None and not segment.done():
                    segment.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await segment

    async def _recognise(self, queue: asyncio.Queue[Audio | None], *, offset: float) -> None:
        async def audio() -> AsyncIterator[Audio]:
            # What has queued up meanwhile goes on as one chunk: tiny frames (one sample each)
            # then cost about what 20 ms frames do per second of audio.
            ended = False
            while not ended and (chunk := await queue.get()) is not None:
                more = [chunk]
                while not queue.empty() and len(more) < 1000:
                    if (item := queue.get_nowait()) is None:
                        ended = True
                        break
                    more.append(item)
                yield more[0] if len(more) == 1 else Audio.concat(more)

        if self._adapter.realtime:
            await self._realtime(audio(), offset=offset)
            return
        speaking, reported = False, offset
        try:
            async for event in self._adapter.chain.stream(audio(), language=self._language):
                if not speaking:
                    speaking = True
                    self._event_ch.send_nowait(stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH))
                data = _stream_data(event, offset + self.start_time_offset, self._language)
                if not event.is_final:
                    self._event_ch.send_nowait(stt.SpeechEvent(
                        type=stt.SpeechEventType.INTERIM_TRANSCRIPT, alternatives=[data]))
                    continue
                self._adapter._answered_by(event.provider, _model_of(self._adapter.chain, event.provider))
                self._event_ch.send_nowait(stt.SpeechEvent(
                    type=stt.SpeechEventType.FINAL_TRANSCRIPT, alternatives=[data]))
                self._event_ch.send_nowait(stt.SpeechEvent(type=stt.SpeechEventType.END_OF_SPEECH))
                speaking = False
                reported = self._report_usage(reported, offset + (event.end or 0.0))
        except STTError as e:
            raise to_livekit_error(e) from e
        self._report_usage(reported, self._heard)

    async def _realtime(self, audio: AsyncIterator[Audio], *, offset: float) -> None:
        """``stt_core.realtime``'s events as LiveKit's, in the order its ``StreamAdapter`` sends
        them (END_OF_SPEECH before the final), plus interims and the preflight."""
        kinds = {"speech_start": stt.SpeechEventType.START_OF_SPEECH,
                 "interim": stt.SpeechEventType.INTERIM_TRANSCRIPT,
                 "preflight": stt.SpeechEventType.PREFLIGHT_TRANSCRIPT,
                 "speech_end": stt.SpeechEventType.END_OF_SPEECH,
                 "final": stt.SpeechEventType.FINAL_TRANSCRIPT}
        adapter, reported = self._adapter, offset
        events = stt_core.realtime(adapter.chain, audio, language=self._language,
                                   settings=adapter._realtime_settings)
        try:
            async for event in events:
                if event.type == "failed":  # that utterance only: LiveKit hears of it, the stream goes on
                    error = event.error if isinstance(event.error, STTError) else STTError(str(event.error))
                    adapter.emit("error", stt.STTError(timestamp=time.time(), label=adapter.label,
                                                       error=to_livekit_error(error), recoverable=True))
                    continue
                if event.type in ("speech_start", "speech_end"):
                    self._event_ch.send_nowait(stt.SpeechEvent(type=kinds[event.type]))
                    continue
                data = _stream_data(event, offset + self.start_time_offset, self._language)
                self._event_ch.send_nowait(stt.SpeechEvent(type=kinds[event.type], alternatives=[data]))
                if event.is_final:
                    adapter._answered_by(event.provider, _model_of(adapter.chain, event.provider))
                    reported = self._report_usage(reported, offset + (event.end or 0.0))
        except STTError as e:
            raise to_livekit_error(e) from e
        finally:
            with contextlib.suppress(RuntimeError):
                await events.aclose()  # type: ignore[attr-defined]
        self._report_usage(reported, self._heard)

    def _report_usage(self, since: float, until: float) -> float:
        """A RECOGNITION_USAGE event for the audio in [since, until): LiveKit's STT metrics."""
        if until > since:
            self._event_ch.send_nowait(stt.SpeechEvent(
                type=stt.SpeechEventType.RECOGNITION_USAGE,
                recognition_usage=stt.RecognitionUsage(audio_duration=until - since),
            ))
            return until
        return since


# -- conversions ---------------------------------------------------------------------------------


def frames_to_audio(buffer: AudioBuffer) -> Audio:
    """LiveKit frames (any rate, any channel count, int16 interleaved) as one ``Audio``."""
    if isinstance(buffer, list) and not buffer:
        raise InvalidAudioError("no audio frames (an empty frame list)")
    frame = merge_frames(buffer) if isinstance(buffer, list) else buffer
    samples = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, frame.num_channels)
    return Audio(samples.copy(), frame.sample_rate)


def audio_to_frames(audio: Audio, *, frame_ms: int = 20) -> list[rtc.AudioFrame]:
    """``Audio`` as LiveKit frames of ``frame_ms`` (for tests, examples and custom inputs)."""
    pcm = audio.to(sample_format="int16").samples
    step = audio.sample_rate * frame_ms // 1000
    return [
        rtc.AudioFrame(pcm[i:i + step].tobytes(), audio.sample_rate, audio.channels, len(pcm[i:i + step]))
        for i in range(0, len(pcm), step)
    ]


def to_livekit_error(e: STTError) -> APIError:
    """The stt-core error tree as LiveKit's ``APIError`` family, with an honest ``retryable``."""
    if isinstance(e, AllProvidersFailed) and e.errors:
        last = e.errors[-1][1]
        mapped = to_livekit_error(last) if isinstance(last, STTError) else APIError(str(last))
        retryable = any(isinstance(c, ProviderError) and c.retryable for _, c in e.errors)
        return _with(mapped, str(e), retryable)
    if isinstance(e, ProviderTimeout):
        return APITimeoutError(str(e), retryable=e.retryable)
    if isinstance(e, ProviderError):
        if e.status_code is not None:
            return APIStatusError(str(e), status_code=e.status_code, retryable=e.retryable)
        return APIConnectionError(str(e), retryable=e.retryable)
    if isinstance(e, InvalidAudioError):
        return APIStatusError(str(e), status_code=400, retryable=False)
    return APIError(str(e), retryable=False)  # ConfigError, ProviderUnavailable: retrying will not help


def _with(error: APIError, message: str, retryable: bool) -> APIError:
    error.args = (message,)
    error.message = message
    error.retryable = retryable
    return error


def _one_try(options: APIConnectOptions) -> APIConnectOptions:
    """LiveKit's retry loop off: the chain already retried (see the module docstring)."""
    return APIConnectOptions(max_retry=0, retry_interval=options.retry_interval, timeout=options.timeout)


def _timed(words: tuple[Word, ...], offset: float) -> list[TimedString]:
    return [TimedString(w.text, start_time=w.start + offset, end_time=w.end + offset,
                        confidence=w.confidence if w.confidence is not None else NOT_GIVEN)
            for w in words]


def _speech_data(result: Transcript) -> stt.SpeechData:
    confidences = [s.confidence for s in result.segments if s.confidence is not None]
    return stt.SpeechData(
        language=LanguageCode(result.language or ""),
        text=result.text,
        start_time=result.segments[0].start if result.segments else 0.0,
        end_time=result.segments[-1].end if result.segments else (result.duration or 0.0),
        confidence=sum(confidences) / len(confidences) if confidences else 0.0,
        words=_timed(result.words, 0.0) or None,
        metadata={"provider": result.provider, "model": result.model, **result.metadata},
    )


def _stream_data(event: StreamEvent, offset: float, language: str | None) -> stt.SpeechData:
    return stt.SpeechData(
        language=LanguageCode(event.language or language or ""),
        text=event.text,
        start_time=(event.start or 0.0) + offset,
        end_time=(event.end or event.start or 0.0) + offset,
        confidence=event.confidence or 0.0,
        words=_timed(event.words, offset) or None,
        metadata={"provider": event.provider},
    )


def _model_of(chain: Chain, provider: str) -> str | None:
    return next((p.model for p in chain.providers if p.name == provider), None)
