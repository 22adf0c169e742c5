"""Reliability, round four: real time never loses an utterance, never piles up work, and never
holds a pipeline hostage (docs/reliability.md). The real VAD on the speech fixtures; the engine is
the far end (tests/fakes/local_engine.py): one call at a time, a slept cost per second of audio,
faults on the clips it is told."""

from __future__ import annotations

import asyncio
import gc
import logging

import numpy as np
import pytest

from fakes.local_engine import LocalEngine
from speech import conversation, live
from stt_core import AllProvidersFailed, Audio, BreakerPolicy, Capabilities, Chain, RetryPolicy, StreamEvent
from stt_core._audio.vad import FRAME, SileroVAD
from stt_core._realtime import RealtimeSettings, realtime
from stt_core._realtime.frames import Frames

CLIPS = ("fox", "lights", "weather", "meeting")
SPEED = 4.0  # audio pushed at four times real time; engine costs are scaled to match


def setup(clips: tuple[str, ...] = CLIPS, gap: float = 1.2, trim: bool = False,
          **engine: object) -> tuple[Audio, LocalEngine]:
    audio, spans = conversation(clips, gap=gap, trim=trim)
    return audio, LocalEngine(audio, dict(zip(clips, spans, strict=True)), **engine)  # type: ignore[arg-type]


async def run(engine: object, audio: Audio, **settings: object) -> list[tuple[StreamEvent, float]]:
    """Every event with the loop's time it came at, the audio pushed at SPEED times real time."""
    loop = asyncio.get_running_loop()
    stream = realtime(engine, live(audio, chunk=0.02, pace=0.02 / SPEED),  # type: ignore[arg-type]
                      settings=RealtimeSettings(**settings))  # type: ignore[arg-type]
    return [(event, loop.time()) async for event in stream]


def outcomes(events: list[tuple[StreamEvent, float]]) -> list[tuple[str, str]]:
    return [(e.type, e.text) for e, _ in events if e.type in ("final", "failed")]


async def test_an_utterance_no_engine_transcribes_is_reported_alone_and_the_stream_goes_on() -> None:
    audio, engine = setup(fails=["lights"], per_second=0.05 / SPEED)
    events = await run(Chain([engine]), audio)
    assert outcomes(events) == [("final", "fox"), ("failed", ""), ("final", "weather"), ("final", "meeting")]
    (failed,) = [e for e, _ in events if e.type == "failed"]
    assert isinstance(failed.error, AllProvidersFailed) and "crashed on lights" in str(failed.error)
    assert failed.start is not None and failed.end is not None and failed.start < failed.end


async def test_a_hung_engine_costs_one_attempt_timeout_then_the_next_engine_has_the_utterance() -> None:
    audio, local = setup(hangs=["lights"], per_second=0.05 / SPEED)
    backup = LocalEngine(audio, local.spans, name="backup")
    events = await run(Chain([local, backup]), audio, attempt_timeout=0.5)
    assert outcomes(events) == [("final", clip) for clip in CLIPS]
    # After lights, local's breaker is open and the chain asks the backup; whether a later final is
    # still the backup's depends on timing (in about one run of five, weather's came from local, which
    # hangs on lights only, and whose interims are its own calls), so only the first two are fixed.
    assert [e.provider for e, _ in events if e.type == "final"][:2] == ["local", "backup"]
    ends = [at for e, at in events if e.type == "speech_end"]
    finals = [at for e, at in events if e.type == "final"]
    # lights: at most one speculation (0.5 s) before it, then one attempt (0.5 s), then the backup
    assert finals[1] - ends[1] < 2.0, finals[1] - ends[1]


async def test_interims_rest_an_engine_whose_breaker_is_open_as_the_chain_does() -> None:
    # lights' final hangs and opens local's breaker (one failure opens it here): from then on the chain
    # asks the backup, and no interim calls local either, so no final waits for a hung interim.
    audio, local = setup(hangs=["lights", "weather", "meeting"], per_second=0.05 / SPEED)
    backup = LocalEngine(audio, local.spans, name="backup")
    chain = Chain([local, backup], breaker=BreakerPolicy(failures=1, cooldown=600))
    events = await run(chain, audio, attempt_timeout=0.5)
    assert outcomes(events) == [("final", clip) for clip in CLIPS]
    assert chain.breakers[0].state == "open"
    asked_after = {clip for _, _, clips in local.heard for clip in clips} & {"weather", "meeting"}
    assert not asked_after, f"local was called for {asked_after} while its breaker was open"
    assert [clips for _, _, clips in backup.heard if clips].count(("weather",)) >= 1


async def test_a_hung_single_engine_fails_that_utterance_only() -> None:
    audio, engine = setup(hangs=["lights"], per_second=0.05 / SPEED)
    events = await run(Chain([engine], retry=RetryPolicy(attempts=2, initial_backoff=0.05)), audio,
                       attempt_timeout=0.3)
    assert outcomes(events) == [("final", "fox"), ("failed", ""), ("final", "weather"), ("final", "meeting")]


async def test_an_engine_that_raises_cancelled_of_its_own_fails_that_utterance_only() -> None:
    # Not the stream's cancellation but the engine's error: the final of lights was never out, and the
    # end of the input waited on it for ever (weather's final behind it).
    audio, engine = setup(cancels=["lights"], per_second=0.05 / SPEED)
    events = await asyncio.wait_for(run(engine, audio, drain_timeout=2.0), timeout=60)
    assert outcomes(events) == [("final", "fox"), ("failed", ""), ("final", "weather"), ("final", "meeting")]
    assert "local cancelled its recognition" in str(next(e.error for e, _ in events if e.type == "failed"))


async def test_an_engine_that_raises_cancelled_of_its_own_in_a_chain_hands_the_utterance_on() -> None:
    # The chain let the engine's own CancelledError through: no fall-over, and the backup that could
    # have answered lights was never asked.
    audio, local = setup(cancels=["lights"], per_second=0.05 / SPEED)
    backup = LocalEngine(audio, local.spans, name="backup")
    events = await asyncio.wait_for(run(Chain([local, backup]), audio, drain_timeout=2.0), timeout=60)
    # (the backup may hear lights in two parts, the preflight's and the rest: "lights lights" here)
    assert [(kind, set(text.split())) for kind, text in outcomes(events)] == [("final", {c}) for c in CLIPS]
    assert next(e.provider for e, _ in events if e.type == "final" and "lights" in e.text) == "backup"


async def test_an_utterance_the_local_engine_is_doubted_on_reaches_the_cloud_engine_behind_it() -> None:
    # A preflight may not re-ask a cloud engine (a paid call for a guess); its doubted answer then
    # stood as what the preflight heard, and so as the final: the cloud engine was never asked.
    audio, local = setup(per_second=0.05 / SPEED, confidence=0.2)
    cloud = LocalEngine(audio, local.spans, name="cloud", confidence=0.9)
    cloud.capabilities = Capabilities()  # not offline: each call is paid, re-asked within max_reasks
    events = await run(Chain([local, cloud]), audio)
    finals = [e for e, _ in events if e.type == "final"]
    assert [(e.provider, set(e.text.split())) for e in finals] == [("cloud", {clip}) for clip in CLIPS]


async def test_a_failed_speculation_opens_no_breaker_so_the_final_is_tried_and_answered() -> None:
    # The preflight at lights' pause meets a transient fault: it teaches the breaker nothing, and
    # the final, with the chain's whole policy, is answered (it was refused by the breaker before).
    audio, engine = setup(fails_once=["lights"], per_second=0.05 / SPEED)
    chain = Chain([engine])
    events = await run(chain, audio, min_interim_interval=10.0)  # no interims: the preflight meets it
    assert outcomes(events) == [("final", clip) for clip in CLIPS]
    assert chain.breakers[0].state == "closed"
    assert [clips for _, _, clips in engine.heard].count(("lights",)) == 2  # the failed preflight, the final


async def test_speculation_never_piles_up_at_short_pauses() -> None:
    # One long utterance of six clips with 0.3 s between them: pauses the preflight sees, too short
    # to end the utterance. The engine takes 0.3 s per second of audio and one call at a time.
    clips = ("fox", "lights", "weather", "meeting", "chairs", "offline")
    audio, engine = setup(clips, gap=0.3, trim=True, per_second=0.3 / SPEED)
    events = await run(engine, audio)
    assert [e.type for e, _ in events if e.type in ("speech_start", "final")] == ["speech_start", "final"]
    (final,) = [e for e, _ in events if e.type == "final"]
    assert final.text.split() == list(clips)  # every clip once, in order
    spoken = final.end - final.start  # type: ignore[operator]
    assert engine.recognised <= 3 * spoken, (engine.recognised, spoken)  # was 124 s for 16.6 s
    assert engine.most_waiting <= 2  # one speculation and the final, never a queue


async def test_an_engine_slower_than_speech_stops_interims_first_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    audio, engine = setup(per_second=2.0 / SPEED)
    with caplog.at_level(logging.WARNING, logger="stt_core.realtime"):
        events = await run(engine, audio)
    assert outcomes(events) == [("final", c) for c in CLIPS]  # late, but every one
    warned = [r.message for r in caplog.records if "falling behind" in r.message]
    assert len(warned) == 1 and "s behind" in warned[0], warned
    second_start = [i for i, (e, _) in enumerate(events) if e.type == "speech_start"][1]
    assert not [e for e, _ in events[second_start:] if e.type in ("interim", "preflight")]


async def test_a_big_chunk_never_holds_the_loop_for_long() -> None:
    # Two minutes of speech in one chunk: the feed lets the loop run others every ~20 ms of VAD work.
    audio, _ = conversation(CLIPS * 8, gap=0.3)

    class Counted(SileroVAD):
        frames = 0

        def probability(self, frame: np.ndarray) -> float:
            Counted.frames += 1
            return super().probability(frame)

    async def one_chunk() -> object:
        yield audio

    most, last, ticking = 0, 0, True

    async def ticker() -> None:
        nonlocal most, last
        while ticking:
            most, last = max(most, Counted.frames - last), Counted.frames
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    events = [e async for e in realtime(LocalEngine(audio, {}), one_chunk(), vad=Counted())]  # type: ignore[arg-type]
    ticking = False
    await tick
    assert Counted.frames >= audio.duration / 0.032 - 2
    assert len([e for e in events if e.type == "final"]) >= 16
    assert most <= 1000, most  # 32 s of audio's VAD work at most between two turns of the loop (was all)


def test_a_sample_rate_change_mid_stream_keeps_every_sample() -> None:
    # The rate changes every 0.5 s: each old resampler's buffered tail is flushed, not dropped.
    frames, made, seconds = Frames(), 0, 0.0
    for i in range(24):
        rate = (48_000, 16_000, 8_000, 44_100)[i % 4]
        t = np.arange(rate // 2) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        made += sum(1 for _ in frames.push(Audio(tone, rate)))
        seconds += 0.5
    made += sum(1 for _ in frames.flush())
    assert abs(made * FRAME - seconds * 16_000) <= FRAME, (made * FRAME, seconds * 16_000)


async def test_no_failed_recognition_is_left_unretrieved(caplog: pytest.LogCaptureFixture) -> None:
    # Everything fails, with speech overtaking speculations: every task's error is taken.
    audio, engine = setup(("lights", "weather", "meeting"), gap=0.0, fails=["lights", "weather", "meeting"],
                          per_second=0.2 / SPEED)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        events = await run(Chain([engine], retry=RetryPolicy(attempts=1)), audio)
        gc.collect()
        await asyncio.sleep(0.05)
    assert [e.type for e, _ in events if e.type in ("final", "failed")] == ["failed"]
    assert "never retrieved" not in caplog.text


async def test_audio_pushed_at_once_is_no_engine_falling_behind(caplog: pytest.LogCaptureFixture) -> None:
    # `stt-core listen --speed 0` reads a file as fast as it can: finals queue as they must, and the
    # warning that the engine is slower than speech was noise.
    audio, engine = setup(per_second=0.05)
    with caplog.at_level(logging.WARNING, logger="stt_core.realtime"):
        stream = realtime(engine, live(audio, chunk=0.02, pace=0.0), settings=RealtimeSettings())
        events = [event async for event in stream]
    assert [e.type for e in events].count("final") == len(CLIPS)
    assert not [r for r in caplog.records if "falling behind" in r.message]
