"""Per-process model loading against one shared model (LiveKit's inference process), side by side.

    .venv/bin/python benchmarks/shared_inference.py     # this section alone; make bench runs it too

For 1, 2, 4 and 8 LiveKit job processes on this host (real ``ProcJobExecutor`` processes, fake jobs,
no server), with the SenseVoiceSmall-size model (``models.full_size_sensevoice``), each mode measures:
the total RSS of every process (job processes, and the inference process where there is one),
sampled while they work; the seconds until a new job process can serve (start, import, setup),
started alone beside the others as LiveKit adds idle processes;
and, with every process transcribing 3 clips at the same moment, throughput (audio seconds per
wall second) and p50/p95 latency. A third run with no local engine in the chain gives the job
processes' own memory, so the model's share can be told apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from common import DOC, publish_alone
from livekit.agents.inference_runner import _InferenceRunner
from livekit.agents.ipc.proc_pool import MAX_CONCURRENT_INITIALIZATIONS
from models import full_size_sensevoice

import fakes
import shared_jobs
from fakes.groq_api import KEY, FakeGroq
from stt_core import Audio
from stt_core_livekit import enable_shared_inference
from stt_core_livekit._shared import METHOD, SWITCH_ENV
from stt_core_livekit.testing import OfflineWorker

TITLE = "one model per host"

LEVELS = (1, 2, 4, 8)
CLIPS = ("chairs", "lights", "weather")  # each job process transcribes these three at once
MODES = ("per-process", "shared", "no local engine")
BACKENDS = ("onnx", "torch")  # funasr's default (int8 ONNX, 0.4 GB) and its torch path (1.9 GB)
SIDES = [(mode, backend) for backend in BACKENDS for mode in MODES[:2]] + [(MODES[2], "-")]
PLOT = "benchmarks-shared.png"


def config_text(model: Path, groq_url: str, mode: str, backend: str) -> str:
    chain = '["groq"]' if mode == "no local engine" else '["funasr", "groq"]'
    return f"""chain = {chain}
attempt_timeout = 300
[livekit]
shared_inference = {str(mode == "shared").lower()}
[funasr]
model = "{model}"
backend = "{backend if backend in BACKENDS else BACKENDS[0]}"
vad = "none"
min_free_memory_gb = 0
[groq]
api_key = "{KEY}"
base_url = "{groq_url}"
"""


async def one(mode: str, backend: str, processes: int, model: Path, groq_url: str, workdir: Path,
              ) -> dict[str, Any]:
    # One path, rewritten per run, named before LiveKit's forkserver starts: its processes keep
    # the environment it started with, so the switch is in the file, not in the environment.
    config = workdir / "stt.toml"
    config.write_text(config_text(model, groq_url, mode, backend))
    os.environ["STT_CONFIG"] = str(config)
    _InferenceRunner.registered_runners.pop(METHOD, None)
    if mode == "shared":
        enable_shared_inference(config)
    os.environ.pop(SWITCH_ENV, None)
    worker = OfflineWorker(shared_jobs.setup, shared_jobs.entrypoint,
                           preload=["stt_core_livekit", "shared_jobs"])
    started = time.perf_counter()
    await worker.start()
    inference_ready = time.perf_counter() - started

    starting = asyncio.Semaphore(MAX_CONCURRENT_INITIALIZATIONS)  # as LiveKit's own pool starts them

    async def ready() -> Any:
        async with starting:
            began = time.perf_counter()
            process = await worker.start_process()
            return process, time.perf_counter() - began

    made = await asyncio.gather(*(ready() for _ in range(processes)))
    # The figure a user waits for: LiveKit adds one idle process at a time beside the busy ones.
    spare, new_ready = await ready()
    await spare.aclose()
    pids = [p.pid for p, _ in made] + ([worker.inference.pid] if worker.inference else [])
    start_at = time.time() + 2
    reports = [workdir / f"{mode}-{backend}-{processes}-{i}.json" for i in range(processes)]
    items = [{"fixture": name} for name in CLIPS]
    for (process, _), report in zip(made, reports, strict=True):
        orders = {"report": str(report), "start_at": start_at, "items": items}
        await worker.run_job(json.dumps(orders), process)
    peak = 0
    while not all(r.exists() for r in reports):
        peak = max(peak, _rss(pids))
        await asyncio.sleep(0.2)
    done = [json.loads(r.read_text()) for r in reports]
    await worker.aclose()
    _InferenceRunner.registered_runners.pop(METHOD, None)
    errors = [d["error"] for d in done if "error" in d] + [
        r["error"] for d in done for r in d["results"] if "error" in r]
    seconds = sorted(r["seconds"] for d in done for r in d["results"] if "error" not in r)
    audio = sum(Audio.from_file(shared_jobs.FIXTURES / f"{c}.wav").duration for c in CLIPS) * processes
    wall = max(d.get("finished_at", start_at) for d in done) - start_at
    return {
        "mode": mode, "backend": backend, "processes": processes, "rss_mb": peak / 2**20, "errors": errors,
        "ready_s": new_ready, "inference_ready_s": inference_ready,
        "throughput": audio / wall if wall > 0 else 0.0,
        "p50": seconds[len(seconds) // 2] if seconds else float("nan"),
        "p95": seconds[max(0, int(len(seconds) * 0.95) - 1)] if seconds else float("nan"),
        "answered_by": sorted({r.get("provider", "-") for d in done for r in d["results"]}),
    }


def _rss(pids: list[int | None]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error, TypeError):
            total += psutil.Process(pid).memory_info().rss
    return total


async def measure(model: Path) -> list[dict[str, Any]]:
    groq = FakeGroq(text="from groq")
    runner, groq.url = await fakes.start(groq.app())
    rows = []
    saved = {name: os.environ.get(name) for name in ("STT_CONFIG", SWITCH_ENV)}
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for processes in LEVELS:
                for mode, backend in SIDES:
                    print(f"  {mode} ({backend}), {processes} job process(es) ...", flush=True)
                    rows.append(await one(mode, backend, processes, model, groq.url, Path(workdir)))
    finally:  # the rest of the benchmarks run with the environment they were given
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
        await runner.cleanup()
    return rows


def markdown(rows: list[dict[str, Any]]) -> list[str]:
    by = {(r["mode"], r["backend"], r["processes"]): r for r in rows}
    top = max(LEVELS)

    def bare(processes: int) -> float:  # the job processes' own memory, no local engine
        return float(by[(MODES[2], "-", processes)]["rss_mb"])

    summary = []
    for backend in BACKENDS:
        model_mb = by[("per-process", backend, 1)]["rss_mb"] - bare(1)
        shared_model = by[("shared", backend, top)]["rss_mb"] - bare(top)
        per_model = by[("per-process", backend, top)]["rss_mb"] - bare(top)
        added = ", ".join(f"{by[('shared', backend, n)]['rss_mb'] - bare(n):.0f}" for n in LEVELS)
        ratio = by[("shared", backend, top)]["throughput"] / by[("per-process", backend, top)]["throughput"]
        summary += [
            f"- **{backend}**: the model's memory is {model_mb:.0f} MB in one process. At {top} job "
            f"processes it is paid {per_model / model_mb:.1f}x with per-process loading and "
            f"{shared_model / model_mb:.2f}x shared (target at most 1.2x). What shared adds over no local "
            f"engine stays about flat from 1 to {top} job processes ({added} MB): one model plus the "
            "inference process itself (its interpreter, LiveKit and runtime: "
            f"{by[('shared', backend, 1)]['rss_mb'] - bare(1) - model_mb:.0f} MB at 1 job process).",
            f"  A new job process is ready in {by[('shared', backend, top)]['ready_s']:.2f} s shared "
            f"(target under 2 s) against {by[('per-process', backend, top)]['ready_s']:.1f} s loading its "
            f"own model; the inference process itself loads once, in "
            f"{by[('shared', backend, top)]['inference_ready_s']:.1f} s, before the worker takes jobs. "
            f"Throughput at {top} processes, shared / per-process: {ratio:.2f} (target at least 1).",
        ]
    return [
        "## One model per host: LiveKit job processes loading their own model vs one shared model",
        "",
        "Real LiveKit job processes (`ProcJobExecutor`, started as LiveKit starts them: from a "
        "forkserver with the plugin preloaded; fake jobs, no server) on this host, "
        "the SenseVoiceSmall-size model (random weights, the real compute) on funasr's default backend "
        "(onnx, int8) and on its torch backend, FunASR first and the fake "
        "Groq API behind it; every process transcribes 3 clips (8.6 s of audio) at the same moment. "
        "\"shared\": `enable_shared_inference()`, the model in LiveKit's inference process; "
        "\"no local engine\": a chain of the cloud engine only, the job processes' own memory. "
        "Made by `benchmarks/shared_inference.py`.",
        "",
        "| mode | backend | job processes | total RSS MB | new process ready s | audio s per wall s | p50 s "
        "| p95 s | answered by |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
        *(f"| {r['mode']} | {r['backend']} | {r['processes']} | {r['rss_mb']:.0f} | {r['ready_s']:.2f} | "
          f"{r['throughput']:.2f} | {r['p50']:.2f} | {r['p95']:.2f} | {', '.join(r['answered_by'])} |"
          for r in rows),
        "",
        *summary,
        "- No job process imports torch or funasr in shared mode (tests/livekit/test_shared.py checks it).",
        "",
    ]


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 5))
    for ax, key, title in ((axes[0], "rss_mb", "total RSS of all processes, MB"),
                           (axes[1], "ready_s", "new job process ready, s"),
                           (axes[2], "throughput", "audio s per wall s, all transcribing")):
        for mode, backend in SIDES:
            mine = [r for r in rows if (r["mode"], r["backend"]) == (mode, backend)]
            label = mode if backend == "-" else f"{mode} ({backend})"
            ax.plot([r["processes"] for r in mine], [r[key] for r in mine], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("job processes")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def in_a_process_of_its_own(model: Path) -> list[dict[str, Any]]:
    """``measure`` in a fresh interpreter: eight model copies (about 16 GB with per-process
    loading) fit on a 24 GB machine only beside a process that holds no model of its own."""
    import subprocess

    with tempfile.TemporaryDirectory() as workdir:
        rows = Path(workdir) / "rows.json"
        subprocess.run([sys.executable, __file__, "--model", str(model), "--json", str(rows)], check=True)
        return list(json.loads(rows.read_text()))


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, help="the SenseVoiceSmall-size model directory")
    parser.add_argument("--json", type=Path, help="write the rows here instead of printing the section")
    args = parser.parse_args()
    if args.json:
        args.json.write_text(json.dumps(asyncio.run(measure(args.model or full_size_sensevoice()))))
    else:
        publish_alone(__file__, section(0))


def section(repeats: int) -> list[str]:
    """First in ``make bench``, and in a process of its own: it needs the memory."""
    rows = in_a_process_of_its_own(full_size_sensevoice())
    plot(rows, DOC.parent / PLOT)
    return [*markdown(rows), f"Plot: [{PLOT}]({PLOT}).", ""]


if __name__ == "__main__":
    main()
