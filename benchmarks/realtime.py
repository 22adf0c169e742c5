"""Real time on local engines: LiveKit's StreamAdapter with its Silero VAD against stt-core's stream
(stt_core.realtime, through stt_core_livekit.STT), over the same engine, both fed 48 kHz frames in
real time through LiveKit's own RecognizeStream interface.

Per side: seconds from each utterance's end of speech (measured from the audio: its last loud
sample) to the preflight and to the final, the final's delay after the VAD's end-of-speech
decision, interims per second of speech, word error rate (whisper; the SenseVoiceSmall-size model
has random weights) and CPU seconds per second of audio.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import numpy as np
from common import AUDIO, ROOT, publish_alone, pyplot
from models import TINY_SENSEVOICE, full_size_sensevoice

import stt_core
from speech import REFERENCES, wer
from stt_core import Audio, Chain

TITLE = "real time on local engines"
PLOT = "benchmarks-realtime.png"
CLIPS = ("fox", "lights", "weather")
GAP = 1.5  # seconds of silence after each utterance
SESSIONS = (1, 2, 4, 8)
FINAL_TARGET = 0.030  # the final at most this long after the VAD's end of speech
RATE = 48_000


def conversation(rate: int = RATE) -> tuple[Audio, list[float]]:
    """The clips with silence between, at ``rate`` (48 kHz), and where each clip's speech ends (its
    last sample above a tenth of its peak)."""
    pieces, ends, at = [Audio.silence(0.8, rate)], [], 0.8
    for name in CLIPS:
        clip = Audio.from_file(AUDIO / f"{name}.wav").to(rate, 1, "float32")
        samples = np.abs(clip.samples.reshape(-1))
        ends.append(at + float(np.nonzero(samples > 0.1 * samples.max())[0][-1]) / rate)
        pieces += [clip, Audio.silence(GAP, rate)]
        at += clip.duration + GAP
    return Audio.concat(pieces), ends


async def run_side(adapter: Any, audio: Audio) -> dict[str, Any]:
    """Push ``audio`` in 20 ms frames in real time into ``adapter.stream()``; every event with the
    second of audio (of the stream) at which it came."""
    from livekit.agents import stt

    from stt_core_livekit import audio_to_frames

    frames = audio_to_frames(audio, frame_ms=20)
    loop = asyncio.get_running_loop()
    stream = adapter.stream()
    started, cpu = loop.time(), time.process_time()

    async def push() -> None:
        for i, frame in enumerate(frames):  # frame i is whole 20 ms after it began
            await asyncio.sleep(max(0.0, started + (i + 1) * 0.02 - loop.time()))
            stream.push_frame(frame)
        stream.end_input()

    pushing = asyncio.ensure_future(push())
    events: list[tuple[float, str, str]] = []
    names = {stt.SpeechEventType.INTERIM_TRANSCRIPT: "interim",
             stt.SpeechEventType.PREFLIGHT_TRANSCRIPT: "preflight",
             stt.SpeechEventType.FINAL_TRANSCRIPT: "final",
             stt.SpeechEventType.END_OF_SPEECH: "vad end", stt.SpeechEventType.START_OF_SPEECH: "vad start"}
    async for event in stream:
        if event.type in names:
            text = event.alternatives[0].text if event.alternatives else ""
            events.append((loop.time() - started, names[event.type], text))
    await pushing
    await stream.aclose()
    return {"events": events, "cpu": time.process_time() - cpu}


def summarise(side: dict[str, Any], ends: list[float], speech: float, audio: float) -> dict[str, Any]:
    events = side["events"]
    finals = [(t, text) for t, kind, text in events if kind == "final"]
    vad_ends = [t for t, kind, _ in events if kind == "vad end"]
    out: dict[str, Any] = {"finals": len(finals), "cpu per audio s": side["cpu"] / audio,
                           "interims per speech s": sum(k == "interim" for _, k, _ in events) / speech}
    if len(finals) != len(ends):
        return out
    out["to final"] = statistics.median(t - end for (t, _), end in zip(finals, ends, strict=True))
    # The final after the VAD's decision: the VAD end before each final.
    after = [t - max((v for v in vad_ends if v <= t), default=t) for t, _ in finals]
    out["final after VAD end"] = statistics.median(after)
    preflights = []
    for (t_final, _), end in zip(finals, ends, strict=True):
        before = [t for t, kind, _ in events if kind == "preflight" and end - 1.0 < t <= t_final]
        if before:
            preflights.append(before[-1] - end)
    out["to preflight"] = statistics.median(preflights) if preflights else None
    out["text"] = " ".join(text for _, text in finals)
    return out


async def measure() -> dict[str, Any]:
    from livekit.agents import stt
    from livekit.plugins import silero

    from stt_core_funasr._provider import FunASRProvider
    from stt_core_livekit import STT

    audio, ends = conversation()
    speech = sum(Audio.from_file(AUDIO / f"{n}.wav").duration for n in CLIPS)
    engines = {
        "SenseVoiceSmall-size, 1 thread": lambda: FunASRProvider(model=str(full_size_sensevoice()), ncpu=1,
                                                                 vad="none"),
        "tiny SenseVoice fixture": lambda: FunASRProvider(model=str(TINY_SENSEVOICE), ncpu=1, vad="none"),
        "whisper tiny.en, 1 thread": lambda: stt_core.registry().create("whisper", {"cpu_threads": 1}),
    }
    rows: dict[Any, Any] = {}
    timelines: dict[str, Any] = {}
    sessions: dict[Any, Any] = {}
    for label, make in engines.items():
        engine = make()
        await engine.warmup()
        await engine.transcribe(Audio.from_file(AUDIO / "chairs.wav"))  # first-call costs are not the point
        sides = {
            "LiveKit StreamAdapter + silero": stt.StreamAdapter(stt=STT(Chain([engine]), realtime=False),
                                                                vad=silero.VAD.load()),
            "stt-core realtime": STT(Chain([engine])),
        }
        for side, adapter in sides.items():
            ran = await run_side(adapter, audio)
            rows[(label, side)] = summarise(ran, ends, speech, audio.duration)
            if label.startswith("whisper"):
                timelines[side] = ran["events"]
        if label.startswith("SenseVoiceSmall"):
            sessions = await sessions_held(engine, audio, ends, speech)
    return {"rows": rows, "timelines": timelines, "ends": ends, "sessions": sessions}


async def sessions_held(engine: stt_core.Provider, audio: Audio, ends: list[float],
                        speech: float) -> dict[Any, Any]:
    """``n`` real-time sessions at once over the one engine (its model at 1 thread): each side's
    median delays over all sessions' utterances."""
    from livekit.agents import stt
    from livekit.plugins import silero

    from stt_core_livekit import STT

    vad = silero.VAD.load()
    def theirs() -> Any:
        return stt.StreamAdapter(stt=STT(Chain([engine]), realtime=False), vad=vad)

    made = {"LiveKit StreamAdapter + silero": theirs, "stt-core realtime": lambda: STT(Chain([engine]))}
    out: dict[Any, Any] = {}
    for n in SESSIONS:
        for side, make in made.items():
            runs = await asyncio.gather(*(run_side(make(), audio) for _ in range(n)))
            summaries = [summarise(ran, ends, speech, audio.duration) for ran in runs]
            whole = [x for x in summaries if "to final" in x]
            out[(n, side)] = {"complete": len(whole), **{
                key: statistics.median(x[key] for x in whole) if whole else None
                for key in ("to final", "final after VAD end")}}
    return out


def markdown(result: dict[str, Any]) -> list[str]:
    rows = result["rows"]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f}"

    lines = [
        "## Real time on local engines: LiveKit's StreamAdapter vs stt-core's stream",
        "",
        f"{' '.join(CLIPS)} ({len(CLIPS)} utterances, {GAP} s apart), 48 kHz frames pushed in real time into "
        "each side's LiveKit `RecognizeStream`, one after the other over the same engine object. "
        "Seconds are from each utterance's end of speech measured from the audio (its last loud sample); "
        "medians over the utterances. LiveKit's side gives no preflight and no interims "
        "(`interim_results=False`).",
        "",
        "| engine | side | to preflight ms | to final ms | final after VAD end ms | interims per s of speech "
        "| CPU s per audio s | WER |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    reference = " ".join(REFERENCES[n] for n in CLIPS)
    for (label, side), row in rows.items():
        error = f"{wer(reference, row['text']):.3f}" if label.startswith("whisper") and "text" in row else "-"
        lines.append(f"| {label} | {side} | {ms(row.get('to preflight'))} | {ms(row.get('to final'))} | "
                     f"{ms(row.get('final after VAD end'))} | {row['interims per speech s']:.2f} | "
                     f"{row['cpu per audio s']:.3f} | {error} |")
    lines += ["", *targets(rows, reference), "", *sessions_table(result["sessions"]),
              f"Plot (one run's timeline, whisper): [{PLOT}]({PLOT}).", ""]
    return lines


def sessions_table(sessions: dict[Any, Any]) -> list[str]:
    if not sessions:
        return []

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f}"

    lines = ["Sessions at once over one SenseVoiceSmall-size engine (its model at 1 thread, requests batched "
             "by the engine), each pushed in real time; medians over every session's utterances:", "",
             "| sessions | side | to final ms | final after VAD end ms |", "|---:|---|---:|---:|"]
    lines += [f"| {n} | {side} | {ms(row['to final'])} | {ms(row['final after VAD end'])} |"
              for (n, side), row in sessions.items()]
    held = [n for (n, side), row in sessions.items() if side == "stt-core realtime"
            and row["complete"] == n and row["final after VAD end"] is not None
            and row["final after VAD end"] <= FINAL_TARGET]
    lines += ["", f"- stt-core's stream keeps the final within {FINAL_TARGET * 1000:.0f} ms of the VAD's end "
              f"of speech up to {max(held) if held else 0} sessions at once on this machine.", ""]
    return lines


def targets(rows: dict[Any, Any], reference: str) -> list[str]:
    """The issue's targets, against this run's figures."""
    ours, theirs = "stt-core realtime", "LiveKit StreamAdapter + silero"
    big, whisper = rows[("SenseVoiceSmall-size, 1 thread", ours)], "whisper tiny.en, 1 thread"
    out = []
    if big.get("to preflight") is not None:
        out.append(f"- SenseVoiceSmall-size at 1 thread: preflight {big['to preflight'] * 1000:.0f} ms after "
                   "the speech's end (target 300), the final "
                   f"{big.get('final after VAD end', 0) * 1000:.0f} ms after the VAD's end of speech "
                   "(target 30), "
                   f"{big['interims per speech s']:.1f} interims per second of speech (target 2).")
    mine, lk = rows.get((whisper, ours), {}), rows.get((whisper, theirs), {})
    if "to final" in mine and "to final" in lk:
        out.append(f"- whisper tiny.en: the final {(lk['to final'] - mine['to final']) * 1000:.0f} ms sooner "
                   "than LiveKit's path (target 300); word error rate "
                   f"{wer(reference, mine['text']):.3f} against {wer(reference, lk['text']):.3f} "
                   "(target: within 0.02).")
    return out


def plot(result: dict[str, Any]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(12, 3.5))
    marks = {"interim": ("|", "tab:gray"), "preflight": ("^", "tab:orange"), "final": ("*", "tab:green"),
             "vad end": ("x", "tab:red")}
    for row, events in enumerate(result["timelines"].values()):
        for kind, (marker, color) in marks.items():
            times = [t for t, k, _ in events if k == kind]
            ax.scatter(times, [row] * len(times), marker=marker, color=color, s=80,
                       label=kind if row == 0 else None)
    for end in result["ends"]:
        ax.axvline(end, color="black", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(result["timelines"])), list(result["timelines"]))
    ax.set_xlabel("seconds of audio (dotted: each utterance's end of speech)")
    ax.set_title("whisper tiny.en: what each side says, and when")
    ax.legend(loc="upper left", ncol=4)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / PLOT, dpi=80)


def section(repeats: int) -> list[str]:
    result = asyncio.run(measure())
    plot(result)
    return markdown(result)


if __name__ == "__main__":
    publish_alone(__file__, section(1))
