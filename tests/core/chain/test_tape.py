"""The tape: what a stream's failed engine hands the next (the audio since the last final result),
and the deadline of an engine's silence, which moves only when the tape does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from stt_core import Audio
from stt_core._chain.tape import EVENT_END_SLACK, Tape


def tone(seconds: float, level: float) -> Audio:
    return Audio(np.full(round(seconds * 16_000), level, dtype=np.float32), 16_000)


async def source(*chunks: Audio) -> AsyncIterator[Audio]:
    for chunk in chunks:
        yield chunk


def levels(chunks: list[Audio]) -> list[float]:
    return [round(float(c.samples.mean()), 3) for c in chunks]


async def test_a_replay_gives_the_audio_since_the_last_final_then_the_live_input() -> None:
    tape = Tape(source(tone(1.0, 0.1), tone(1.0, 0.2), tone(1.0, 0.3)))
    first = tape.replay()
    heard = [await anext(first), await anext(first)]  # an engine read two seconds ...
    tape.commit(1.5, "a")  # ... and its final result covers the first one and a half
    await first.aclose()  # then it failed
    replayed = [chunk async for chunk in tape.replay()]  # the next engine
    assert levels(heard) == [0.1, 0.2]
    assert levels(replayed) == [0.2, 0.3] and replayed[0].duration == pytest.approx(0.5)
    assert tape.replay_start == pytest.approx(1.5)
    assert not tape.live


@pytest.mark.parametrize(("end", "kept"), [
    (None, 2.0),  # an engine that does not say where its result ends: keep everything
    (3.0 + EVENT_END_SLACK + 0.1, 2.0),  # past what was sent: not believed, nothing forgotten
    (2.0 + EVENT_END_SLACK, 0.0),  # within the slack engines round by: all of it answered
    (0.5, 1.5),
])
async def test_commit_forgets_only_what_a_believable_final_covers(end: float | None, kept: float) -> None:
    tape = Tape(source(tone(1.0, 0.1), tone(1.0, 0.2)))
    _ = [chunk async for chunk in tape.replay()]
    tape.commit(end, "a")
    assert sum(c.duration for c in [chunk async for chunk in tape.replay()]) == pytest.approx(kept)


async def test_the_silence_deadline_starts_at_unanswered_audio_and_an_answer_clears_it() -> None:
    tape = Tape(source(tone(0.5, 0.1), tone(0.5, 0.2)))
    assert tape.deadline(stall=2.0, after_end=None) is None  # nothing given yet
    replay = tape.replay()
    moved = tape.moved()
    await anext(replay)
    assert moved.done()  # the waiting driver wakes: there is a deadline now
    deadline = tape.deadline(stall=2.0, after_end=None)
    assert deadline is not None and deadline - asyncio.get_running_loop().time() <= 2.0 + 0.1
    tape.answered()
    assert tape.deadline(stall=2.0, after_end=None) is None
    await replay.aclose()


async def test_an_engine_that_stops_reading_mid_chunk_leaves_the_source_to_the_next() -> None:
    arrived = asyncio.Event()

    async def slow() -> AsyncIterator[Audio]:
        yield tone(0.5, 0.1)
        await arrived.wait()
        yield tone(0.5, 0.2)

    tape = Tape(slow())
    first = tape.replay()
    await anext(first)
    pending = asyncio.ensure_future(anext(first))
    await asyncio.sleep(0.01)
    pending.cancel()  # the engine gave up while the source was between chunks
    await asyncio.gather(pending, return_exceptions=True)
    arrived.set()
    assert levels([chunk async for chunk in tape.replay()]) == [0.1, 0.2]
