"""Real time on engines that do not stream: stt_core.realtime on the speech fixtures with the real
VAD and real engines (the VAD itself: tests/core/audio/test_vad.py)."""

from __future__ import annotations

import asyncio
import gc

import numpy as np
import pytest

import stt_core
from speech import MAX_WER, PATIENT, REFERENCES, conversation, live, warm_whisper, wer
from stt_core import (
    AllProvidersFailed,
    Audio,
    Chain,
    ProviderError,
    ProviderUnavailable,
    RetryPolicy,
    StreamEvent,
    Transcript,
)
from stt_core._realtime import RealtimeSettings, realtime
from stt_core._realtime.utterance import Speed
from stt_core.testing import FakeProvider

CLIPS = ("fox", "lights", "weather")
GAP = 1.2  # seconds of silence between the utterances: more than min_silence


async def events_of(engine: stt_core.Provider, audio: Audio, settings: RealtimeSettings | None = None,
                    **kw: object) -> list[StreamEvent]:
    return [event async for event in realtime(engine, live(audio, **kw), settings=settings)]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def whisper() -> stt_core.Provider:
    return warm_whisper()


async def test_whisper_in_real_time_gives_each_utterance_once_with_its_words(
    whisper: stt_core.Provider,
) -> None:
    audio, spans = conversation(CLIPS)
    events = await events_of(whisper, audio, PATIENT)
    finals = [e for e in events if e.type == "final"]
    assert len(finals) == len(CLIPS), events
    for final, name, (start, end) in zip(finals, CLIPS, spans, strict=True):
        assert wer(name, final.text) <= MAX_WER, final.text
        assert final.start is not None and final.end is not None
        assert abs(final.start - start) < 0.3 and abs(final.end - end) < 0.4
    # Each utterance starts, ends, then has its final (the next may start before that final).
    bounds = [e.type for e in events if e.type in ("speech_start", "speech_end")]
    assert bounds == ["speech_start", "speech_end"] * len(CLIPS)
    ends = [i for i, e in enumerate(events) if e.type == "speech_end"]
    assert all(end < i for end, i in zip(ends, [i for i, e in enumerate(events) if e.type == "final"],
                                         strict=True))


async def test_a_pause_gives_a_preflight_that_the_final_reuses() -> None:
    audio, _ = conversation(("fox",))
    engine = FakeProvider(name="local", text="the quick brown fox")
    events = await events_of(engine, audio)
    assert [e.type for e in events if e.type in ("preflight", "final")] == ["preflight", "final"]
    # One recognition for the preflight and the final (plus any interims): not two of the whole.
    interims = sum(e.type == "interim" for e in events)
    assert len(engine.calls) == interims + 1


@pytest.mark.parametrize(("texts", "joined"), [
    (["Please open the door.", "and turn on the lights."], "Please open the door and turn on the lights."),
    (["It ended.", "Then we left."], "It ended. Then we left."),  # the speaker's full stop
    (["In the U.S.", "and Canada."], "In the U.S. and Canada."),  # an abbreviation's
    (["Wait...", "and then"], "Wait... and then"),
    (["I love it etc.", "and more"], "I love it etc. and more"),
])
def test_an_utterances_pieces_join_without_the_full_stop_a_cut_put_in(texts: list[str], joined: str) -> None:
    # whisper closes each piece cut at a pause as a sentence; heard in pieces, "Please open the door
    # and turn on the lights." came out as "Please open the door. and turn on the lights."
    pieces = [(float(i), Transcript(text)) for i, text in enumerate(texts)]
    assert Transcript.joined(pieces, float(len(texts))).text == joined


async def test_speech_after_the_pause_is_recognised_again_for_the_final(whisper: stt_core.Provider) -> None:
    # Two clips back to back, about 0.33 s of silence between their words: a preflight after 0.2 s
    # of pause, then speech again before the 0.55 s that would end the utterance, so the final
    # must cover both clips.
    audio, _ = conversation(("lights", "weather"), gap=0.0)
    events = await events_of(whisper, audio, PATIENT)
    finals = [e.text for e in events if e.type == "final"]
    assert len(finals) == 1
    assert wer(f"{REFERENCES['lights']} {REFERENCES['weather']}", finals[0]) <= MAX_WER, finals


async def test_a_local_engine_failing_mid_utterance_hands_the_whole_utterance_to_the_next(
    whisper: stt_core.Provider,
) -> None:
    audio, _ = conversation(("fox", "lights"))
    failing = FakeProvider(name="local", script=[ProviderError("crashed", retryable=True)] * 100)
    chain = Chain([failing, whisper], retry=RetryPolicy(attempts=1))
    events = await events_of(chain, audio, PATIENT)
    finals = [e for e in events if e.type == "final"]
    assert [e.provider for e in finals] == ["whisper", "whisper"]
    for final, name in zip(finals, ("fox", "lights"), strict=True):
        assert wer(name, final.text) <= MAX_WER, final.text  # nothing lost, nothing twice
    assert not [e for e in events if e.type == "interim"]  # the local engine's interims failed quietly


async def test_when_no_engine_can_transcribe_an_utterance_the_stream_says_so() -> None:
    audio, _ = conversation(("fox",))
    failing = FakeProvider(name="local", script=[ProviderError("crashed", retryable=True)] * 100)
    (failed,) = [e for e in await events_of(failing, audio) if e.type in ("failed", "final")]
    assert failed.type == "failed" and isinstance(failed.error, ProviderError)
    assert "crashed" in str(failed.error) and failed.start is not None and failed.end is not None
    down = FakeProvider(name="a", script=[ProviderError("down")] * 100)
    chain = Chain([down], retry=RetryPolicy(attempts=1))
    (failed,) = [e for e in await events_of(chain, audio) if e.type in ("failed", "final")]
    assert failed.type == "failed" and isinstance(failed.error, AllProvidersFailed)


class ColdEngine(FakeProvider):
    """A local engine whose model takes ``load`` seconds to load: at ``warmup``, else at its
    first call (as FunASR and faster-whisper load theirs); ``fails``: it cannot load at all."""

    def __init__(self, load: float, *, fails: bool = False) -> None:
        super().__init__(name="local", text="the quick brown fox")
        self.load, self.fails = load, fails
        self.ready_at: float | None = None  # when the load ends, once it has begun

    async def warmup(self) -> None:
        now = asyncio.get_running_loop().time()
        if self.ready_at is None:
            self.ready_at = now + self.load
        await asyncio.sleep(max(0.0, self.ready_at - now))
        if self.fails:
            raise ProviderUnavailable("no model here", provider=self.name)

    async def _transcribe(self, audio: Audio, **kw: object) -> stt_core.Transcript:
        await self.warmup()
        return await super()._transcribe(audio, **kw)  # type: ignore[arg-type]


async def test_a_cold_models_load_starts_with_the_stream_not_in_the_first_utterances_time() -> None:
    """Its load (3 s) was started by the first recognition (a speculation at a pause), inside that
    recognition's attempt_timeout (0.6 s) and the final's after it: the first utterance failed. It
    starts with the stream now, while the first second of silence and the speech come."""
    audio, _ = conversation(("lights",), lead=1.0)
    engine = ColdEngine(load=3.0)
    settings = RealtimeSettings(attempt_timeout=0.6, min_interim_interval=10)  # no interims
    started = asyncio.get_running_loop().time()
    events = await events_of(engine, audio, settings, pace=0.02)  # in real time
    assert [e.type for e in events if e.type in ("final", "failed")] == ["final"], events
    assert engine.ready_at is not None and engine.ready_at - engine.load - started < 0.5


class UnservableColdEngine(ColdEngine):
    def why_unavailable(self) -> str | None:
        return "no model here"


@pytest.mark.parametrize("order", ["cloud first", "local first, unable to serve"])
async def test_the_final_waits_for_no_load_of_an_engine_not_answering_first(order: str) -> None:
    audio, _ = conversation(("fox",))
    cloud = FakeProvider(name="cloud", text="from the cloud", capabilities=stt_core.Capabilities())
    local = ColdEngine(load=3.0) if order == "cloud first" else UnservableColdEngine(load=3.0)
    chain = Chain([cloud, local] if order == "cloud first" else [local, cloud])
    settings = RealtimeSettings(min_interim_interval=10)  # no interims: the local engine's alone
    async for event in realtime(chain, live(audio), settings=settings):
        if event.type == "final":
            assert event.provider == "cloud" and local.ready_at is not None
            assert asyncio.get_running_loop().time() < local.ready_at  # not held for the load


async def test_a_model_that_cannot_load_leaves_no_unretrieved_error(caplog: pytest.LogCaptureFixture) -> None:
    broken = ColdEngine(load=0.0, fails=True)
    events = await events_of(broken, Audio.silence(1.0))
    assert not [e for e in events if e.type in ("final", "failed")]
    gc.collect()  # where asyncio says "Task exception was never retrieved"
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text


async def test_a_slow_engine_gets_fewer_interims_never_a_later_final() -> None:
    audio, _ = conversation(("meeting",))

    async def measured(delay: float) -> tuple[int, float]:
        engine = FakeProvider(name="local", text="words", delay=delay)
        stream = realtime(engine, live(audio, chunk=0.032, pace=0.016))  # twice real time
        interims, loop = 0, asyncio.get_running_loop()
        ended_at = final_at = 0.0
        async for event in stream:
            if event.type == "interim":
                interims += 1
            elif event.type == "speech_end":
                ended_at = loop.time()
            elif event.type == "final":
                final_at = loop.time()
        return interims, final_at - ended_at

    fast_interims, fast_final = await measured(0.01)
    slow_interims, slow_final = await measured(0.15)
    assert fast_interims > slow_interims
    # The final waits for no interim: once the preflight is done it is the VAD's decision plus nothing.
    assert slow_final < 0.05 and fast_final < 0.05


async def test_an_engine_whose_every_call_costs_the_same_gets_no_interim_it_cannot_afford() -> None:
    """Whisper's encoder runs a whole 30 s window however short the clip: 0.4 s of speech costs
    what 3 s do. Once one recognition has shown that, no interim starts that would still run when
    a preflight is due: only the engine's first, while its speed is unknown. (Measured as a rate,
    3 s in 0.3 s promised 0.4 s in 0.04 s, and an interim started at every utterance's first
    short pause.)"""
    clips = ("fox", "lights", "weather", "meeting")
    audio, _ = conversation(clips)
    engine = FakeProvider(name="local", text="words", delay=0.3)  # the same for any length
    events = await events_of(engine, audio, chunk=0.032, pace=0.016)  # twice real time
    assert sum(e.type == "final" for e in events) == len(clips)
    # Interims at an utterance's first short pause hear under a second; preflights and finals more.
    short = [round(a.duration, 2) for a in engine.calls if a.duration < 1.0]
    assert len(short) <= 1, [round(a.duration, 2) for a in engine.calls]  # was one per utterance
    engine.calls.clear()  # the next stream over the engine knows its speed from the start: none
    assert sum(e.type == "final" for e in await events_of(engine, audio, chunk=0.032, pace=0.016)) == 4
    assert [round(a.duration, 2) for a in engine.calls if a.duration < 1.0] == []


def test_a_recognitions_expected_time_is_never_below_the_least_one_took() -> None:
    speed = Speed()
    assert speed.expected(1.0) is None  # nothing measured yet
    speed.learn(3.0, 0.6)  # whisper: a 30 s window for 3 s of speech
    assert speed.expected(0.4) == pytest.approx(0.6) and speed.expected(6.0) == pytest.approx(1.2)
    speed.learn(0.4, 0.5)
    assert speed.expected(0.2) == pytest.approx(0.5)  # the least yet, not 0.2 s at 1.25 s a second


async def test_closing_the_stream_mid_utterance_leaves_no_task() -> None:
    audio, _ = conversation(("meeting",))
    engine = FakeProvider(name="local", text="words", delay=0.05)
    before = asyncio.all_tasks()
    stream = realtime(engine, live(audio, pace=0.005))
    async for event in stream:
        if event.type == "speech_start":
            break
    await stream.aclose()
    assert asyncio.all_tasks() - before == set()  # at once, not when the GC finalises the session


def test_realtime_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="min_silence"):
        RealtimeSettings(min_silence=0.0)
    assert RealtimeSettings().neg_threshold == pytest.approx(0.35)
    assert np.isclose(RealtimeSettings(threshold=0.6).neg_threshold, 0.45)


async def test_a_preflight_overtaken_by_speech_is_dropped_not_sent() -> None:
    # Three clips back to back: pauses between them long enough for a preflight (0.1 s), not for
    # the end (0.55 s). At four times real time an engine that takes 0.8 s is still on the first
    # pause's preflight when the second pause comes: that stale preflight must not be sent (only
    # preflights of the utterance as it stands), and the final must hear all three clips.
    audio, spans = conversation(("lights", "weather", "meeting"), gap=0.0)
    engine = FakeProvider(name="local", echo=True, delay=0.8)
    events = [e async for e in realtime(engine, live(audio, pace=0.005))]
    preflights = [e for e in events if e.type == "preflight"]
    assert all(e.end is not None and e.end > spans[1][0] + 0.5 for e in preflights), preflights
    assert [e.type for e in events if e.type in ("speech_start", "final")] == ["speech_start", "final"]
    final = next(e for e in events if e.type == "final")
    assert final.end is not None and final.end > spans[2][1] - 0.5


async def test_real_time_finals_are_judged_and_interims_are_not() -> None:
    audio, _ = conversation(("fox",))
    doubted = FakeProvider(name="local", text="and if we have three", confidence=0.2)
    sure = FakeProvider(name="next", text="the quick brown fox", confidence=0.9)
    events = await events_of(Chain([doubted, sure]), audio)
    (final,) = [e for e in events if e.type == "final"]
    assert (final.provider, final.text, final.confidence) == ("next", "the quick brown fox", 0.9)
    interims = [e for e in events if e.type == "interim"]
    assert interims and all(e.text == "and if we have three" for e in interims)  # as the local engine heard
