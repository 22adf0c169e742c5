"""Real time when the engine is busy (reliability round four): speech with many short pauses against
the same words without them, and an engine slower than speech.

The engine is the tests' far-end local engine (tests/fakes/local_engine.py): one call at a time,
a slept cost per second of audio, so the figures are the stream's behaviour and not this machine's
speed; the real whisper runs the pauses row too, in real time. The audio is pushed at SPEED times
real time and the fake engine's cost scaled to match, so its rows are what real time would give;
their seconds are given in real time.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from typing import Any

from common import publish_alone, run

import stt_core
from fakes.local_engine import LocalEngine
from speech import conversation, live
from stt_core import Audio
from stt_core._realtime import realtime

TITLE = "real time when the engine is busy"
WORDS = ("fox", "lights", "weather", "meeting", "chairs", "offline")
SPEED = 4.0
DELAY_TARGET = 1.3  # the final after speech with pauses, at most this times the same words without
AUDIO_TARGET = 3.0  # audio recognised, at most this times the utterance


async def heard(engine: Any, audio: Audio, speed: float) -> dict[str, Any]:
    """Every event's time (in real-time seconds from the start), pushed at ``speed`` times real time."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = [(e, (loop.time() - started) * speed)
              async for e in realtime(engine, live(audio, chunk=0.02, pace=0.02 / speed))]
    ends = [t for e, t in events if e.type == "speech_end"]
    finals = [(e, t) for e, t in events if e.type in ("final", "failed")]
    return {"events": events, "delays": [t - end for (_, t), end in zip(finals, ends, strict=True)],
            "finals": [e for e, _ in finals]}


async def pauses_row(gap: float, engine_kind: str) -> dict[str, Any]:
    audio, spans = conversation(WORDS, gap=gap, trim=True)
    if engine_kind == "whisper":
        engine: Any = stt_core.registry().create("whisper")
        result = await heard(engine, audio, 1.0)
        calls = recognised = None
    else:
        engine = LocalEngine(audio, dict(zip(WORDS, spans, strict=True)), per_second=0.3 / SPEED)
        result = await heard(engine, audio, SPEED)
        calls, recognised = len(engine.heard), engine.recognised
    final = result["finals"][-1]
    return {"length": (final.end or 0) - (final.start or 0), "calls": calls, "recognised": recognised,
            "delay": result["delays"][-1], "utterances": len(result["finals"]),
            "interims": sum(e.type == "interim" for e, _ in result["events"])}


async def slower_than_speech() -> dict[str, Any]:
    clips = ("fox", "lights", "weather", "meeting")
    audio, spans = conversation(clips)
    engine = LocalEngine(audio, dict(zip(clips, spans, strict=True)), per_second=2.0 / SPEED)
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("stt_core.realtime")
    logger.addHandler(handler)
    try:
        result = await heard(engine, audio, SPEED)
    finally:
        logger.removeHandler(handler)
    events = result["events"]
    starts = [i for i, (e, _) in enumerate(events) if e.type == "speech_start"]
    interims = [sum(e.type in ("interim", "preflight") for e, _ in events[a:b])
                for a, b in zip(starts, [*starts[1:], len(events)], strict=True)]
    return {"delays": result["delays"], "interims": interims,
            "warnings": [w for w in warnings if "falling behind" in w]}


def section(repeats: int) -> list[str]:
    rounds = max(1, min(repeats, 3))
    rows: dict[str, list[dict[str, Any]]] = {}
    for _ in range(rounds):
        for name, gap, kind in (("0.3 s pauses", 0.3, "fake"), ("no pauses", 0.0, "fake")):
            rows.setdefault(f"{name}, engine at 0.3 s per s", []).append(run(pauses_row(gap, kind)))
    for name, gap in (("0.3 s pauses", 0.3), ("no pauses", 0.0)):  # real time: once each
        rows[f"{name}, whisper tiny.en"] = [run(pauses_row(gap, "whisper"))]
    slow = run(slower_than_speech())

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[name])

    lines = [
        "## Real time when the engine is busy: short pauses, an engine slower than speech",
        "",
        "Six clips said as one utterance, with 0.3 s pauses between them (the VAD's preflight sees "
        "each, too short to end it) against the same words without pauses. The engine serves one "
        f"call at a time at 0.3 s per second of audio (the tests' far-end engine, median of {rounds} "
        "runs), and the bundled whisper in real time (one run). Before round four the pauses cost "
        "17 calls, 124 s of audio recognised and the final 24.3 s after the speech (9.7x the "
        "same words without pauses); an utterance is now recognised in pieces cut at its pauses, "
        "with at most one speculation in flight.",
        "",
        "| speech | utterance | calls | audio recognised | final after the VAD's end | interims |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in rows.items():
        length = median(name, "length")
        recognised = "-" if runs[0]["recognised"] is None else \
            f"{median(name, 'recognised'):.1f} s ({median(name, 'recognised') / length:.1f}x)"
        calls = "-" if runs[0]["calls"] is None else f"{median(name, 'calls'):.0f}"
        lines.append(f"| {name} | {length:.1f} s | {calls} | {recognised} | {median(name, 'delay'):.2f} s "
                     f"| {median(name, 'interims'):.0f} |")
    fake = "engine at 0.3 s per s"
    ratio = median(f"0.3 s pauses, {fake}", "delay") / median(f"no pauses, {fake}", "delay")
    audio = median(f"0.3 s pauses, {fake}", "recognised") / median(f"0.3 s pauses, {fake}", "length")
    lines += [
        "",
        f"The final after the pauses: **{ratio:.2f}x** the same words without them (target: at most "
        f"{DELAY_TARGET}x); audio recognised **{audio:.1f}x** the utterance (target: at most "
        f"{AUDIO_TARGET:g}x).",
        "",
        "An engine slower than speech (2 s per second of audio; four utterances 1.2 s apart): the "
        "finals still come, in order, each later than the one before (nothing can make a slower "
        "engine keep up); before round four the same happened with interims still running and "
        "nothing said (6.4, 9.3, 12.9, 16.0 s). Now the speculations stop while a final waits, "
        "and the stream says so once:",
        "",
        "| utterance | final after the VAD's end | interims and preflights |",
        "|---|---|---|",
        *[f"| {i} | {delay:.1f} s | {interims} |"
          for i, (delay, interims) in enumerate(zip(slow["delays"], slow["interims"], strict=True), start=1)],
        "",
        f"Warnings: {len(slow['warnings'])} (\"{slow['warnings'][0] if slow['warnings'] else ''}\"); the "
        "delay is also the `stt_core.realtime.lag` histogram.",
        "",
    ]
    return lines


if __name__ == "__main__":
    publish_alone(__file__, section(3))
