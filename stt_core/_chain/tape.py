"""The live input of a chain stream, recorded from the last final result on, so a failed engine's
unfinished audio can be replayed to the next one; and the clock of each engine's silence, which
moves only when the tape does (audio given to an engine that has not answered, the input ending):
``moved()`` says when, so the stream driver awaits deadlines instead of polling them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable

from .._audio.audio import Audio

logger = logging.getLogger("stt_core.chain")
EVENT_END_SLACK = 0.5  # seconds an event may claim past the audio pushed (engines round up)


class Tape:
    """The live input, recorded from the last final result on, so a failed engine's
    unfinished audio can be replayed to the next one."""

    def __init__(self, source: AsyncIterable[Audio]) -> None:
        self._source = aiter(source)
        self._kept: list[tuple[float, Audio]] = []  # (start second in the stream, chunk)
        self._pulled = 0.0  # seconds taken from the source so far
        self._ended_at: float | None = None  # monotonic time the source ended
        self._next: asyncio.Future[Audio] | None = None  # the source's next chunk, being read
        self._unanswered_since: float | None = None  # first pull after the engine's last event
        self._moved: asyncio.Future[None] | None = None

    @property
    def replay_start(self) -> float:
        return self._kept[0][0] if self._kept else self._pulled

    @property
    def live(self) -> bool:
        return self._ended_at is None

    async def replay(self) -> AsyncGenerator[Audio, None]:
        for _, chunk in list(self._kept):
            self._pulled_now()
            yield chunk
        while self._ended_at is None:
            if self._next is None:
                self._next = asyncio.ensure_future(anext(self._source))
            try:
                # Shielded: an engine that stops reading mid-chunk (it failed, or was cancelled)
                # must not cancel the caller's source; the next engine picks the read up.
                chunk = await asyncio.shield(self._next)
            except StopAsyncIteration:
                self._ended_at = time.monotonic()
                self._move()
                return
            self._next = None
            self._kept.append((self._pulled, chunk))
            self._pulled += chunk.duration
            self._pulled_now()
            yield chunk

    def _pulled_now(self) -> None:
        if self._unanswered_since is None:
            self._unanswered_since = time.monotonic()
            self._move()

    def moved(self) -> asyncio.Future[None]:
        """Done when ``deadline`` next changes (it changes only here: an engine's answer resets it)."""
        if self._moved is None or self._moved.done():
            self._moved = asyncio.get_running_loop().create_future()
        return self._moved

    def _move(self) -> None:
        if self._moved is not None and not self._moved.done():
            self._moved.set_result(None)

    def answered(self) -> None:
        """The engine said something: it has answered all it was given so far."""
        self._unanswered_since = None

    def deadline(self, stall: float | None, after_end: float | None) -> float | None:
        """When the engine's silence becomes a failure: ``stall`` seconds after it was given audio
        it has not answered, or ``after_end`` seconds after the input ended."""
        deadlines = []
        if stall is not None and self._unanswered_since is not None:
            deadlines.append(self._unanswered_since + stall)
        if after_end is not None and self._ended_at is not None:
            deadlines.append(self._ended_at + after_end)
        return min(deadlines) if deadlines else None

    def close(self) -> None:
        """Stop a read left pending when the stream ends early (the caller gave up)."""
        if self._next is not None and not self._next.done():
            self._next.cancel()

    def heard(self, start: float | None, end: float | None) -> Audio | None:
        """The kept audio from ``start`` to ``end`` (stream seconds; ``None``: from the first kept
        or to the last), as one clip: what a final result covers, to re-ask another engine."""
        first = self.replay_start if start is None else max(start, self.replay_start)
        pieces = [chunk.slice(max(0.0, first - at), None if end is None else max(0.0, end - at))
                  for at, chunk in self._kept
                  if at + chunk.duration > first and (end is None or at < end)]
        pieces = [piece for piece in pieces if piece.num_frames]
        return Audio.concat(pieces) if pieces else None

    def commit(self, end: float | None, provider: str) -> None:
        """Forget the audio before ``end``: a final result covers it. ``None``: keep all.

        An end beyond the audio pushed so far is not believed (an engine's bogus result must not
        throw away the utterance in progress): nothing is forgotten then.
        """
        if end is None:
            return
        if end > self._pulled + EVENT_END_SLACK:
            logger.warning("%s: a final result ends at %.2fs, past the %.2fs of audio sent; "
                           "keeping the audio for replay", provider, end, self._pulled)
            return
        kept = []
        for start, chunk in self._kept:
            if start + chunk.duration <= end:
                continue
            if start < end:
                chunk, start = chunk.slice(end - start), end
            if chunk.num_frames:
                kept.append((start, chunk))
        self._kept = kept
