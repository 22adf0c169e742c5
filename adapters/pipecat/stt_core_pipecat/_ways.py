"""The two ways ``ChainSTTService`` hears, one class each, as Pipecat's own services split
(``STTService`` streams, ``SegmentedSTTService`` waits for the pipeline's VAD):

- ``Continuous``: every frame goes to one stream (``stt_core.Hearing.events``: the chain's own
  stream for a streaming first engine, real time for a local one), which says what it heard;
- ``Segmented``: the pipeline's VAD cuts the audio, with a pre-roll, and each utterance goes
  through the chain once, in order.

Each turns what it hears into the service's frames (``interim``, ``final``, ``failed``) and
counts the utterances that came out (``answered``): how the service's end sees progress.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Protocol

import stt_core
from stt_core import Audio, STTError, telemetry


class ChainSTTService(Protocol):
    """What a way of hearing uses of the service it hears for (``_service.ChainSTTService``)."""

    hearing: stt_core.Hearing

    @property
    def language(self) -> str | None: ...
    @property
    def user_speaking(self) -> bool: ...
    @property
    def is_usable(self) -> bool: ...

    async def interim(self, text: str, language: str | None, result: Any) -> None: ...
    async def final(self, text: str, language: str | None, result: Any) -> None: ...
    async def failed(self, error: BaseException | None) -> None: ...
    def usage_pending(self, seconds: float) -> None: ...
    def pipecat_trace(self, scope: str) -> Any: ...
    async def emit_stt_usage_metrics(self) -> None: ...
    async def start_processing_metrics(self) -> None: ...
    async def stop_processing_metrics(self) -> None: ...

_RESTART_AFTER = 1.0  # seconds between a stream the whole chain failed and the next one
_MOST_QUEUED = 1500  # frames of audio kept for a stream while none reads (30 s of 20 ms frames)


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
        """Utterances queued apart from the one in flight: none, a stream has one at a time."""
        return 0

    async def run(self) -> None:
        service = self.service
        while not self._ended:
            try:
                with telemetry.parent(service.pipecat_trace("conversation")):
                    await self._one_stream()
            except STTError as e:
                await service.failed(e)
                if self._ending:
                    return  # the chain has just failed: the pipeline's end does not wait on it
                # Not at once: a chain that fails before it reads (every breaker open) would send
                # an error per frame. The audio of that second waits in the queue for the next.
                await asyncio.sleep(_RESTART_AFTER)

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
    """The pipeline's VAD cuts: the audio of each utterance (from ``pre_roll`` before its start),
    through the chain as a live utterance, in order."""

    def __init__(self, service: ChainSTTService, pre_roll: float) -> None:
        self.service, self.pre_roll = service, pre_roll
        self.utterances: asyncio.Queue[Audio | None] = asyncio.Queue()
        self.answered = 0
        self._recent: deque[Audio] = deque()  # the utterance so far, or the pre-roll

    def hear(self, audio: Audio) -> None:
        self._recent.append(audio)
        while not self.service.user_speaking and len(self._recent) > 1 and \
                sum(a.duration for a in self._recent) - self._recent[0].duration >= self.pre_roll:
            self._recent.popleft()  # out of the pre-roll

    def speech_stopped(self) -> None:
        if not self._recent or not self.service.is_usable:
            self._recent.clear()
            return
        utterance = Audio.concat(list(self._recent))
        self._recent.clear()
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
            try:
                with telemetry.parent(service.pipecat_trace("turn")):
                    result = await service.hearing.utterance(utterance, language=service.language)
            except STTError as e:
                await service.stop_processing_metrics()
                self.answered += 1
                await service.failed(e)
                continue
            await service.stop_processing_metrics()
            self.answered += 1
            if result.text:
                await service.final(result.text, result.language, result)
