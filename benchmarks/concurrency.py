"""Concurrency: 1-16 sessions on one shared local model: throughput, latency, memory."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import psutil
from common import AUDIO, ROOT, publish_alone, pyplot, run
from models import TINY_SENSEVOICE

import stt_core
from stt_core import Audio

TITLE = "concurrency"
PLOT = "benchmarks-concurrency.png"
LEVELS = [1, 2, 4, 8, 16]
UTTERANCES_PER_SESSION = 2


def measure(passes: int) -> list[dict[str, Any]]:
    """Each level of concurrent sessions, in ``passes`` over all levels (1, 2, ... 16, 1, 2, ...):
    per level the median throughput and the latency percentiles over all passes, and the process
    RSS after it in the first pass."""
    from stt_core_funasr._provider import FunASRProvider

    clips = [Audio.from_file(AUDIO / f"{n}.wav") for n in ("fox", "lights", "weather", "meeting")]
    engines: dict[str, stt_core.Provider] = {
        "whisper": stt_core.registry().create("whisper"),
        "funasr": FunASRProvider(model=str(TINY_SENSEVOICE), vad="none"),
    }
    rows = []
    for engine_name, engine in engines.items():
        run(engine.warmup())
        run(engine.transcribe(clips[0]))  # the first call's one-off costs are the start-up section's
        throughputs: dict[int, list[float]] = {n: [] for n in LEVELS}
        latencies: dict[int, list[float]] = {n: [] for n in LEVELS}
        rss: dict[int, float] = {}  # after each level of the first pass, as the sessions grow
        for _ in range(passes):
            for n in LEVELS:
                wall, seconds = run(_sessions(engine, clips, n, latencies[n]))
                throughputs[n].append(seconds / wall)
                rss.setdefault(n, psutil.Process().memory_info().rss / 2**20)
        for n in LEVELS:
            ordered = sorted(latencies[n])
            rows.append({
                "engine": engine_name, "sessions": n, "throughput": statistics.median(throughputs[n]),
                "p50": statistics.median(ordered), "p95": ordered[max(0, round(0.95 * len(ordered)) - 1)],
                "rss_mb": rss[n],
            })
    return rows


async def _sessions(engine: stt_core.Provider, clips: list[Audio], n: int,
                    latencies: list[float]) -> tuple[float, float]:
    """``n`` sessions at once, each transcribing utterances one after another; returns the wall
    time and the seconds of audio transcribed, and appends each request's latency."""
    async def session(i: int) -> float:
        seconds = 0.0
        for k in range(UTTERANCES_PER_SESSION):
            clip = clips[(i + k) % len(clips)]
            started = time.perf_counter()
            await engine.transcribe(clip)
            latencies.append(time.perf_counter() - started)
            seconds += clip.duration
        return seconds

    started = time.perf_counter()
    seconds = sum(await asyncio.gather(*(session(i) for i in range(n))))
    return time.perf_counter() - started, seconds


def markdown(rows: list[dict[str, Any]], passes: int) -> list[str]:
    summary = []
    for engine in dict.fromkeys(str(r["engine"]) for r in rows):
        mine = [r for r in rows if r["engine"] == engine]
        one, sixteen = mine[0], mine[-1]
        grew = sixteen["rss_mb"] - one["rss_mb"]
        ratio = sixteen["throughput"] / one["throughput"]
        summary.append(f"- {engine}: memory {grew:+.0f} MB from 1 to 16 sessions (target < 50); throughput "
                       f"at 16 is {ratio:.2f}x that of 1 (target at least 1).")
    return [
        f"## Concurrency: sessions sharing one local model ({UTTERANCES_PER_SESSION} utterances each, "
        f"median of {passes} passes)",
        "",
        "| engine | sessions | audio s per wall s | p50 ms | p95 ms | process RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {r['engine']} | {r['sessions']} | {r['throughput']:.1f} | {r['p50'] * 1000:.0f} | "
          f"{r['p95'] * 1000:.0f} | {r['rss_mb']:.0f} |" for r in rows),
        "",
        *summary,
        "",
        f"Plot: [{PLOT}]({PLOT}).",
        "",
    ]


def plot(rows: list[dict[str, Any]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    engines = list(dict.fromkeys(str(r["engine"]) for r in rows))
    # Relative to one session, so that engines of very different speed share an axis.
    for ax, label, value in (
        (axes[0], "throughput / that of 1 session", lambda r, one: r["throughput"] / one["throughput"]),
        (axes[2], "RSS added since 1 session, MB", lambda r, one: r["rss_mb"] - one["rss_mb"]),
    ):
        for engine in engines:
            mine = [r for r in rows if r["engine"] == engine]
            ax.plot([r["sessions"] for r in mine], [value(r, mine[0]) for r in mine], marker="o",
                    label=engine)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent sessions")
        ax.set_title(label)
        ax.legend()
    axes[0].axhline(1, color="red", linestyle="--")
    axes[2].axhline(50, color="red", linestyle="--")
    ax = axes[1]
    for engine in engines:
        mine = [r for r in rows if r["engine"] == engine]
        for key, style in (("p50", "-"), ("p95", "--")):
            ax.plot([r["sessions"] for r in mine], [r[key] * 1000 for r in mine], style, marker="o",
                    label=f"{engine} {key}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent sessions")
    ax.set_title("latency per request, ms (p50, p95)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / PLOT, dpi=80)


def section(repeats: int) -> list[str]:
    passes = max(2, repeats // 3)
    rows = measure(passes)
    plot(rows)
    return markdown(rows, passes)


if __name__ == "__main__":
    publish_alone(__file__, section(15))
