"""SenseVoice runtimes on a CPU, side by side: funasr's own call against stt-core's paths.

    .venv/bin/python benchmarks/sensevoice_runtimes.py   # this section alone (rewrites its part of the doc)

With the SenseVoiceSmall-size model (``run.full_size_sensevoice``: the real architecture and size,
random weights), on a 3 s and a 30 s clip, at 1 and 2 threads, in interleaved rounds:

- funasr ``AutoModel.generate`` (how FunASR's README and the seed server call it);
- stt-core funasr, backend onnx int8 (the default), onnx fp32, and torch.

Then each path's load in a fresh process (import, load, first call) and that process's RSS.
funasr-onnx and sherpa-onnx, the other two sides issue 17 names, are not in this run (see the text
this writes).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from doc import publish_alone

ROOT = Path(__file__).parents[1]
HEADING = "## SenseVoice runtimes on a CPU: funasr's own call vs stt-core's"
AUDIO = ROOT / "tests" / "fixtures" / "audio"
SIDES = {  # label: stt-core funasr settings (None: funasr's own AutoModel.generate)
    "funasr AutoModel.generate": None,
    "stt-core default (onnx int8)": {"backend": "onnx", "quantize": True},
    "stt-core onnx fp32": {"backend": "onnx", "quantize": False},
    "stt-core torch": {"backend": "torch"},
    # The seed's setting: clips over vad_min_audio_s (10 s) are cut by silero-vad first.
    "stt-core torch, silero-vad": {"backend": "torch", "vad": "silero-vad"},
}


def clips() -> dict[str, Any]:
    from stt_core import Audio

    names = ("chairs", "lights", "weather", "fox", "good_morning", "begin_meeting", "offline", "meeting")
    parts = [Audio.from_file(AUDIO / f"{n}.wav").to(sample_rate=16_000, channels=1) for n in names]
    long = Audio.concat(parts * 4)
    return {"3 s": parts[0], "30 s": Audio(long.float32()[: 30 * 16_000], 16_000)}


def measure(model_dir: Path, rounds: int = 3) -> dict[str, Any]:
    import torch

    from stt_core_funasr._engine import auto_model
    from stt_core_funasr._provider import FunASRProvider, FunASRSettings

    audio = clips()
    times: dict[tuple[str, int, str], list[float]] = {}
    loop = asyncio.new_event_loop()
    for threads in (1, 2):
        calls: dict[str, Any] = {}
        for label, settings in SIDES.items():
            if settings is None:
                model = auto_model(FunASRSettings(model=str(model_dir), ncpu=threads), str(model_dir))
                calls[label] = lambda clip, model=model: model.generate(
                    input=clip.mono_float32(16_000), language="auto", use_itn=True, disable_pbar=True)
            else:
                provider = FunASRProvider(model=str(model_dir), ncpu=threads, min_free_memory_gb=0,
                                          **{"vad": "none", **settings})
                loop.run_until_complete(provider.warmup())
                calls[label] = lambda clip, p=provider: loop.run_until_complete(p.transcribe(clip))
        for r in range(rounds + 1):  # the first round warms up
            order = list(calls)[r % len(calls):] + list(calls)[:r % len(calls)]
            for clip_name, clip in audio.items():
                for label in order:
                    torch.set_num_threads(threads)  # process-wide: both torch sides run at this count
                    started = time.perf_counter()
                    calls[label](clip)
                    if r:
                        took = time.perf_counter() - started
                        times.setdefault((label, threads, clip_name), []).append(took)
    loop.close()
    rows = [{"side": label, "threads": threads, "clip": clip, "seconds": statistics.median(values)}
            for (label, threads, clip), values in times.items()]
    return {"rows": rows, "fresh": {label: fresh_process(model_dir, label) for label in SIDES}}


_PROBE = """
import json, sys, time
import psutil
started = time.perf_counter()
label, model_dir = sys.argv[1], sys.argv[2]
settings = json.loads(sys.argv[3])
from stt_core import Audio
clip = Audio.from_file(sys.argv[4])
if settings is None:
    from funasr import AutoModel
    model = AutoModel(model=model_dir, ncpu=1, disable_update=True, disable_pbar=True, disable_log=True)
    model.generate(input=clip.mono_float32(16_000), language="auto", use_itn=True, disable_pbar=True)
else:
    import asyncio
    from stt_core_funasr._provider import FunASRProvider
    provider = FunASRProvider(model=model_dir, ncpu=1, min_free_memory_gb=0, **{"vad": "none", **settings})
    asyncio.run(provider.transcribe(clip))
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "funasr"})
print(json.dumps({"seconds": time.perf_counter() - started,
                  "rss_mb": psutil.Process().memory_info().rss / 1e6, "heavy": heavy}))
"""


def fresh_process(model_dir: Path, label: str) -> dict[str, Any]:
    """Start, import, load and transcribe 3 s in a new interpreter: the ready time and the RSS then
    (not ru_maxrss: Linux carries it over an exec from the forked parent, this benchmark)."""
    done = subprocess.run([sys.executable, "-c", _PROBE, label, str(model_dir), json.dumps(SIDES[label]),
                           str(AUDIO / "chairs.wav")], capture_output=True, text=True, check=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("STT_")})
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def markdown(result: dict[str, Any], rounds: int) -> list[str]:
    rows, fresh = result["rows"], result["fresh"]
    cell = {(r["side"], r["threads"], r["clip"]): r["seconds"] for r in rows}
    columns = [(t, c) for t in (1, 2) for c in ("3 s", "30 s")]
    lines = [
        HEADING,
        "",
        "The SenseVoiceSmall-size model (real architecture and size, random weights), "
        f"median of {rounds} interleaved rounds; each ratio is against funasr's own call in the same "
        "column. Load: a fresh process importing, loading and transcribing a 3 s clip; RSS: that "
        "process's resident memory then.",
        "",
        "| path | " + " | ".join(f"{c} clip, {t} thread{'s' if t > 1 else ''}" for t, c in columns)
        + " | load s | RSS MB | torch or funasr imported |",
        "|---|" + "---:|" * (len(columns) + 3),
    ]
    base = "funasr AutoModel.generate"
    for side in SIDES:
        values = []
        for t, c in columns:
            ms = cell[(side, t, c)] * 1000
            values.append(f"{ms:.0f} ms ({cell[(side, t, c)] / cell[(base, t, c)]:.2f}x)")
        f = fresh[side]
        lines.append(f"| {side} | " + " | ".join(values) +
                     f" | {f['seconds']:.1f} | {f['rss_mb']:.0f} | {', '.join(f['heavy']) or 'neither'} |")
    default = "stt-core default (onnx int8)"
    behind = [f"{c} at {t} thread{'s' if t > 1 else ''}" for t, c in columns
              if cell[(default, t, c)] > min(cell[(s, t, c)] for s in SIDES)]
    verdict = ("The default (onnx int8) is the fastest side in every column here" if not behind else
               f"The default (onnx int8) is not the fastest side on {', '.join(behind)}")
    lines += [
        "",
        f"{verdict}; it is the only path with neither torch nor funasr in the process. "
        "Not in this run: funasr-onnx 0.4.3 (it pins "
        "numpy<=1.26.4, so it needs an environment of its own) and sherpa-onnx (it needs its own "
        "export, with the front end's settings in the model's metadata); issue 17 measured both "
        "against the same ONNX file at 94-106 ms on a 3 s clip, one thread.",
        "",
    ]
    return lines


def main() -> None:
    from run import full_size_sensevoice

    rounds = 3
    lines = markdown(measure(full_size_sensevoice(), rounds), rounds)
    publish_alone("sensevoice_runtimes.py", lines)


if __name__ == "__main__":
    main()
