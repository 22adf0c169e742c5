"""How a chain is heard by a framework's adapter (LiveKit, Pipecat, serve's WebSocket): the rules
every adapter shares, in one place, so each adapter only translates events into its framework's.

- ``stream``: the chain's first engine streams natively (Deepgram): the chain's stream, with its
  failover and replay of the audio since the last final;
- ``realtime``: its first engine that can serve is local (FunASR, whisper) and a Silero model is installed:
  ``stt_core.realtime``, with interims, a preflight at the pause and a final per utterance;
- ``segmented``: otherwise (cloud batch engines, or ``realtime=False``): the framework's VAD cuts
  the utterances and each goes through the chain as a live ``utterance``.

Both continuous modes give the same events, so an adapter needs one loop for them: speech_start,
interim, final (or failed), speech_end; real time also a preflight, and its speech_end comes at the
VAD's decision, before the final, where a native stream's comes with its final.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from typing import Literal

from .._audio.audio import Audio
from .._audio.vad import find_vad_model
from .._chain import Chain
from .._errors import STTError
from .._provider import Provider
from .._registry import UnusableEngine
from .._types import Capabilities, StreamEvent, Transcript
from .session import realtime
from .settings import RealtimeSettings

Mode = Literal["stream", "realtime", "segmented"]
_MERGED = 1000  # chunks at most joined into one when they have queued up


class Hearing:
    """How an adapter hears an engine or chain (a single engine is wrapped in a chain).

    Args:
        engine: the engine or chain to hear.
        realtime: ``None`` (the default): real time wherever it can run (a local first engine and
            a Silero model installed); ``False``: the framework's VAD cuts utterances instead.
        settings: real time's settings (``[realtime]``); its ``attempt_timeout`` also bounds each
            call for a segmented utterance, and its ``drain_timeout`` an adapter's end.
    """

    def __init__(self, engine: Provider, *, realtime: bool | None = None,
                 settings: RealtimeSettings | None = None) -> None:
        self.chain = engine if isinstance(engine, Chain) else Chain([engine])
        # The engine that will answer first: the first that can serve here (funasr not installed,
        # or groq with no key, before whisper: whisper's real time), else the first installed (a
        # stand-in for one that is not declares nothing), else the first.
        engines = self.chain.providers
        installed = [p for p in engines if not isinstance(p, UnusableEngine)]
        self.first: Provider | None = next(
            (p for p in installed if p.why_unavailable() is None), next(iter(installed or engines), None))
        first = self.first.capabilities if self.first else Capabilities()
        can_realtime = not first.streaming and first.offline and find_vad_model() is not None
        self.mode: Mode = "stream" if first.streaming else \
            "realtime" if can_realtime and realtime is not False else "segmented"
        self.settings = settings or RealtimeSettings()

    @property
    def continuous(self) -> bool:
        """Whether it hears a continuous stream (``events``), rather than cut utterances."""
        return self.mode != "segmented"

    def events(self, audio: AsyncIterable[Audio], *,
               language: str | None = None) -> AsyncGenerator[StreamEvent, None]:
        """The events of a continuous stream over ``audio``: real time, or the chain's stream."""
        if self.mode == "realtime":
            return realtime(self.chain, audio, language=language, settings=self.settings)
        return _with_speech_bounds(self.chain.stream(audio, language=language))

    async def utterance(self, audio: Audio, *, language: str | None = None,
                        word_timestamps: bool = False) -> Transcript:
        """One utterance the framework cut, through the chain: a live utterance, each call bounded
        by ``attempt_timeout`` as in real time."""
        return await self.chain.transcribe(audio, language=language, word_timestamps=word_timestamps,
                                           purpose="utterance", attempt_timeout=self.settings.attempt_timeout)

    def never_serves(self, error: STTError, *, language: str | None = None) -> bool:
        """``Chain.never_serves`` for what it hears in ``language``: when an adapter should say it
        cannot work (not just failed)."""
        return bool(self.chain.never_serves(error, language=language))

    def model_of(self, engine: str) -> str | None:
        """The model of the chain's engine named ``engine`` (what answered an event)."""
        return next((p.model for p in self.chain.providers if p.name == engine), None)


async def queued_audio(queue: asyncio.Queue[Audio | None]) -> AsyncIterator[Audio]:
    """The audio a framework's frames put in ``queue`` until ``None``; chunks that queued up
    meanwhile go on joined, so tiny frames (one sample each) cost about what 20 ms frames do."""
    ended = False
    while not ended and (chunk := await queue.get()) is not None:
        chunks = [chunk]
        while not queue.empty() and len(chunks) < _MERGED:
            if (more := queue.get_nowait()) is None:
                ended = True
                break
            chunks.append(more)
        yield chunks[0] if len(chunks) == 1 else Audio.concat(chunks)


async def _with_speech_bounds(events: AsyncGenerator[StreamEvent, None]) -> AsyncGenerator[StreamEvent, None]:
    """A native stream's events with each utterance's bounds said, as real time says them: its
    start before its first event, its end with its final."""
    speaking = False
    async with contextlib.aclosing(events):
        async for event in events:
            if not speaking:
                speaking = True
                yield StreamEvent("speech_start", "", start=event.start)
            yield event
            if event.is_final:
                speaking = False
                yield StreamEvent("speech_end", "", start=event.start, end=event.end)
