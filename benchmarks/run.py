"""All of stt-core's benchmarks, side by side in one run; writes docs/benchmarks.md and its plots.

    make bench          # or: .venv/bin/python benchmarks/run.py [--repeats N] [--only overhead,failover]

Every figure is a ratio or a count between things measured in this one run, the median of
interleaved rounds (A B C, B C A, ...), so a slow moment hurts every side alike. Nothing here is
asserted in the test suite. Each section is a module of its own (the protocol: ``common.py``):

- one model per host: LiveKit job processes loading their own vs LiveKit's inference process
  (``shared_inference.py``; first, in a process of its own: it needs the memory);
- overhead: stt_core (provider alone, and a one-engine chain) vs the engine called directly
  with the same model and audio (``overhead.py``);
- failover: time a failing first engine adds on top of the second engine's own time (``failover.py``);
- failover side by side with LiveKit's FallbackAdapter and liteasr (``failover_peers.py``);
- SenseVoice runtimes: funasr's own call, funasr-onnx and sherpa-onnx (in an environment of
  their own, made on first use) against stt-core's ONNX and torch paths (``sensevoice_runtimes.py``);
- the OpenAI API: `stt-core serve` against the engine in-process (``serve_api.py``);
- concurrency: 1-16 sessions on one shared local model (``concurrency.py``);
- real time on local engines: LiveKit's StreamAdapter with silero vs stt-core's stream (``realtime.py``);
- real time when the engine is busy: short pauses, an engine slower than speech (``realtime_load.py``);
- real time over the network: sessions through `stt-core serve`'s /v1/realtime vs the same
  sessions in process (``realtime_serve.py``);
- VADs on long audio: energy, stt-core's Silero on onnxruntime, torch silero-vad (``vad_cuts.py``);
- Pipecat: its ServiceSwitcher failover and its FunASR service against ChainSTTService (``pipecat_peers.py``);
- the bundled whisper's compute types on both GEMM backends (``whisper_compute.py``);
- quality: each engine's confidence on speech in its language, another language, silence and noise,
  the re-ask rate at the default ``min_confidence``, and what a re-ask costs (``quality.py``);
- start-up: import and `stt-core providers` time, the first utterance (``startup.py``);
- GPU: FunASR on cuda:0 where CUDA is available, "not measured" elsewhere (``gpu.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import concurrency
import failover
import failover_peers
import gpu
import overhead
import pipecat_peers
import psutil
import quality
import realtime
import realtime_load
import realtime_serve
import sensevoice_runtimes
import serve_api
import shared_inference
import startup
import vad_cuts
import whisper_compute
from common import DOC, publish

SECTIONS = {module.__name__: module for module in (
    shared_inference, overhead, failover, failover_peers, sensevoice_runtimes, serve_api, concurrency,
    realtime, realtime_load, realtime_serve, vad_cuts, pipecat_peers, whisper_compute, quality, startup,
    gpu,
)}


def header(repeats: int) -> list[str]:
    return [
        "# Benchmarks",
        "",
        f"Made by `make bench` (`.venv/bin/python benchmarks/run.py --repeats {repeats}`) on "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}. Each comparison runs its "
        f"sides in interleaved rounds (A B C, B C A, ...; at least {repeats}, more for quick calls, "
        "the count is in the table) and reports medians; added time and ratios are medians of the "
        "per-round differences and ratios. Every figure compares things measured in this one run. "
        "A section run on its own says so under its heading.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="stt-core benchmarks")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--only", help=f"comma-separated sections, of: {', '.join(SECTIONS)}; "
                                       "each replaces its own part of the doc")
    args = parser.parse_args()
    if args.only:
        chosen = [name.strip() for name in args.only.split(",")]
        if unknown := [name for name in chosen if name not in SECTIONS]:
            parser.error(f"no section {', '.join(unknown)} (there are: {', '.join(SECTIONS)})")
        for name in chosen:
            print(f"{SECTIONS[name].TITLE} ...", flush=True)
            command = f".venv/bin/python benchmarks/run.py --repeats {args.repeats} --only {name}"
            publish(command, SECTIONS[name].section(args.repeats))
        return
    lines = header(args.repeats)
    for module in SECTIONS.values():
        print(f"{module.TITLE} ...", flush=True)
        lines += module.section(args.repeats)
    DOC.write_text("\n".join(lines))
    print(DOC.read_text())


if __name__ == "__main__":
    main()
