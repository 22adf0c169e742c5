"""One ``stt_core.realtime`` stream of a ``/v1/realtime`` session, and the items it makes.

A session hears its audio through one real-time stream at a time: from its first audio until
a flush (a commit with client turns, a ``session.update`` that changes how it hears), then the
next. Each utterance the stream finds is a *part*. With the server's VAD each part is an item
of its own (``speech_started``, deltas, ``speech_stopped``, ``committed``, ``completed``); with
``turn_detection`` null every part of the stream is the one item the client commits, its
transcript their finals joined.

What the stream holds is bounded: audio put in but not yet heard by the VAD, and audio of parts
whose speech ended and whose final has not come, count as *held*; ``wait_room`` holds the
session's reader back while they pass ``max_buffer_seconds``, so a client faster than real time
waits for the engine instead of filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from .._audio.audio import Audio
from .._chain.chain import Chain
from .._errors import STTError
from .._realtime import RealtimeSettings, realtime
from .._types import StreamEvent
from .deltas import Deltas, join
from .protocol import EMPTY_COMMIT, error_event, event, new_id

Send = Callable[[dict[str, Any]], None]


@dataclass
class Item:
    """One conversation item: the audio the client or the VAD committed, and its transcript."""

    id: str = field(default_factory=lambda: new_id("item"))
    texts: list[str] = field(default_factory=list)  # its parts' finals, in order
    deltas: Deltas = field(default_factory=Deltas)
    provider: str = ""
    language: str | None = None
    error: Exception | None = None
    seconds: float = 0.0  # of audio, for usage
    done: bool = False


@dataclass
class _Part:
    item: Item
    start: float  # seconds of the stream where its audio starts (its pre-roll included)
    ended: bool = False
    dropped: bool = False  # cleared while it was spoken: nothing of it is sent


class Listening:
    """A real-time stream over ``chain`` for the audio put in until ``end()``; its events go out
    through ``send`` as the protocol's. ``item`` is the client's item with ``turn_detection``
    null (``None``: the server's VAD makes the items). ``offset`` is where the stream starts in
    the session's audio (for ``audio_start_ms``), and ``previous`` a stream still finishing,
    which this one waits for, so that the items complete in order. ``committing(item_id)`` notes
    an item committed and gives the one committed before it."""

    def __init__(self, chain: Chain, settings: RealtimeSettings, *, language: str | None, send: Send,
                 max_buffer: float, offset: float, item: Item | None,
                 previous: Listening | None, committing: Callable[[str], str | None]) -> None:
        self.chain, self.settings, self.language, self.send = chain, settings, language, send
        self.max_buffer, self.offset, self.item = max_buffer, offset, item
        self.committing = committing
        self.queue: asyncio.Queue[Audio | None] = asyncio.Queue()
        self.queued = 0.0  # seconds put in, not yet taken by the stream
        self.heard = 0.0  # seconds taken by the stream
        self.parts: deque[_Part] = deque()
        self._moved = asyncio.Event()
        self.cleared = False
        self.commit_asked = False  # a client's commit ends it (server VAD)
        self.ended_at_end = 0  # turns the end of its audio ended (not the VAD)
        self.exhausted = False  # all its audio was taken
        self.task = asyncio.ensure_future(self._run(previous))

    # -- the session's side ----------------------------------------------------------------------

    def put(self, audio: Audio) -> None:
        self.queued += audio.duration
        self.queue.put_nowait(audio)

    def end(self, *, commit: bool = False) -> None:
        """No more audio: what was said is transcribed, and the stream ends. ``commit``: a client's
        commit with the server's VAD, answered once all of it is heard: by the turn it ended, or
        by an ``input_audio_buffer_commit_empty`` error when no speech was in progress."""
        self.commit_asked = commit
        self.queue.put_nowait(None)

    def cut(self) -> None:
        """A clear with the server's VAD: the speech in progress, and any in the audio not yet heard,
        is dropped; turns that already ended are still transcribed. Then the stream ends."""
        self.cleared = True
        for part in self.parts:
            part.dropped = part.dropped or not part.ended
        self.end()

    async def stop(self) -> None:
        """Drop it all now (a clear, a client that left): nothing of it keeps running."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    @property
    def held(self) -> float:
        """Seconds of audio held and not yet answered (module doc)."""
        waiting = next((self.heard - p.start for p in self.parts if p.ended), 0.0)
        return self.queued + waiting

    @property
    def busy(self) -> bool:
        """Whether it holds audio not yet heard, or an utterance not yet answered."""
        return not self.task.done() and (self.queued > 0 or bool(self.parts))

    async def wait_room(self) -> None:
        while self.held > self.max_buffer and not self.task.done():
            self._moved.clear()
            await self._moved.wait()

    # -- the stream --------------------------------------------------------------------------------

    async def _chunks(self) -> AsyncIterator[Audio]:
        while (audio := await self.queue.get()) is not None:
            self.queued -= audio.duration
            self.heard += audio.duration
            self._moved.set()
            yield audio
        self.exhausted = True

    async def _run(self, previous: Listening | None) -> None:
        if previous is not None:
            await asyncio.wait({previous.task})  # done or cancelled: either way, its turn is over
        try:
            heard = realtime(self.chain, self._chunks(), language=self.language, settings=self.settings)
            async for ev in heard:
                self._on(ev)
                self._moved.set()
        except STTError as e:  # real time could not run at all (no VAD model): said, not hidden
            self.send(error_event(f"real time is not available on this server: {e}", kind="server_error",
                                  code="realtime_unavailable"))
            for part in self.parts:
                if not part.dropped:
                    self._failed(part.item, e)
            self.parts.clear()
        finally:
            self._moved.set()
        if self.item is not None and not self.item.done:  # turn_detection null: the commit's item
            self._finish(self.item)
        elif self.commit_asked and not self.ended_at_end:
            self.send(error_event("input_audio_buffer.commit: no speech in progress to commit (the server's "
                                  "VAD commits each turn)", code=EMPTY_COMMIT))

    def _on(self, ev: StreamEvent) -> None:
        if ev.type == "speech_start":
            start = max(0.0, (ev.start or 0.0) - self.settings.pre_roll)
            part = _Part(self.item or Item(), start, dropped=self.cleared)
            self.parts.append(part)
            if self.item is None and not part.dropped:
                self.send(event("input_audio_buffer.speech_started", item_id=part.item.id,
                                audio_start_ms=self._ms(start)))
        elif ev.type in ("interim", "preflight") and self.parts:
            part = self.parts[-1]  # the utterance being spoken
            item = part.item
            if not part.dropped and (delta := item.deltas.guess(join([*item.texts, ev.text]))):
                self.send(_delta(item, delta))
        elif ev.type == "speech_end" and self.parts:
            part = next(p for p in self.parts if not p.ended)
            part.ended = True
            end = ev.end if ev.end is not None else self.heard
            if self.exhausted and self.heard - end < self.settings.min_silence - self.settings.pad:
                self.ended_at_end += 1  # cut by the end of the audio, not by a pause long enough
            if self.item is None and not part.dropped:  # (a client's item: as long as it committed)
                part.item.seconds = end - part.start
                self.send(event("input_audio_buffer.speech_stopped", item_id=part.item.id,
                                audio_end_ms=self._ms(end)))
                self.send(committed(part.item, self.committing(part.item.id)))
        elif ev.type in ("final", "failed") and self.parts:
            part = self.parts.popleft()  # finals come in utterance order
            if part.dropped:
                return
            if ev.type == "failed":
                part.item.error = part.item.error or ev.error or STTError("no engine could transcribe it")
            else:
                part.item.texts.append(ev.text)
                part.item.provider, part.item.language = ev.provider, ev.language or part.item.language
            if self.item is None:
                self._finish(part.item)

    def _finish(self, item: Item) -> None:
        item.done = True
        if item.error is not None:
            self._failed(item, item.error)
            return
        delta, transcript = item.deltas.final(join(item.texts))
        if delta:
            self.send(_delta(item, delta))
        fields: dict[str, Any] = {"item_id": item.id, "content_index": 0, "transcript": transcript,
                                  "usage": {"type": "duration", "seconds": round(item.seconds, 3)}}
        if item.language:
            fields["languages"] = [{"code": item.language}]
        if item.provider:
            fields["engine"] = item.provider  # which engine of the chain answered (not OpenAI's)
        self.send(event("conversation.item.input_audio_transcription.completed", **fields))

    def _failed(self, item: Item, error: Exception) -> None:
        item.done = True
        self.send(event("conversation.item.input_audio_transcription.failed", item_id=item.id,
                        content_index=0, error={"type": "server_error", "code": "transcription_failed",
                                                "message": str(error), "param": None}))

    def _ms(self, seconds: float) -> int:
        return round((self.offset + seconds) * 1000)


def committed(item: Item, previous: str | None) -> dict[str, Any]:
    return event("input_audio_buffer.committed", item_id=item.id, previous_item_id=previous)


def _delta(item: Item, delta: str) -> dict[str, Any]:
    return event("conversation.item.input_audio_transcription.delta", item_id=item.id, content_index=0,
                 delta=delta)
