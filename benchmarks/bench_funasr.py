"""The funasr provider through stt_core next to funasr's own ``AutoModel.generate``, in one run.

Same model, same audio, same process, measured side by side:

- overhead: one request at a time, stt_core vs ``AutoModel.generate`` (ratio near 1 means the
  library adds nothing that matters next to the model);
- batching: 16 requests at once, with the provider's batching on (``max_batch=8``) and off.

    .venv/bin/python benchmarks/bench_funasr.py [--model DIR] [--rounds N]

The default model is the tiny test fixture, which makes the model cost small and so shows the
library's overhead at its largest; pass ``--model`` with a real SenseVoiceSmall directory for
production numbers. Results replace the funasr section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import platform
import statistics
import time
from pathlib import Path

import soundfile as sf

from stt_core_funasr._engine import auto_model
from stt_core_funasr._provider import FunASRProvider

ROOT = Path(__file__).parents[1]
AUDIO = ROOT / "tests" / "fixtures" / "audio"
CLIPS = ["good_morning", "begin_meeting", "chairs", "zh_hello", "zh_weather"]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench_funasr:begin -->", "<!-- bench_funasr:end -->"


def timed(fn, rounds: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of ``fn()`` over ``rounds`` runs, after one warm-up run."""
    fn()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "tests" / "fixtures" / "funasr" / "tiny-sensevoice"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md")
    args = parser.parse_args()

    audio = {name: sf.read(AUDIO / f"{name}.wav", dtype="float32")[0] for name in CLIPS}
    seconds_of_audio = sum(len(a) for a in audio.values()) / 16_000
    batched = FunASRProvider(model=args.model, use_itn=True, vad="none", max_batch=8)
    unbatched = FunASRProvider(model=args.model, use_itn=True, vad="none", max_batch=1)
    with contextlib.redirect_stdout(io.StringIO()):  # funasr's load-time notices
        direct = auto_model(batched.settings, args.model)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(batched.warmup())
    loop.run_until_complete(unbatched.warmup())

    def automodel_sequential() -> None:
        for samples in audio.values():
            direct.generate(input=samples, language="auto", use_itn=True, disable_pbar=True)

    def stt_core_sequential() -> None:
        async def run() -> None:
            for samples in audio.values():
                await batched.transcribe(stt_audio(samples))
        loop.run_until_complete(run())

    def concurrent(provider: FunASRProvider) -> None:
        async def run() -> None:
            await asyncio.gather(*(provider.transcribe(stt_audio(s)) for s in list(audio.values()) * 3))
        loop.run_until_complete(run())

    results = {
        "AutoModel.generate, one at a time": timed(automodel_sequential, args.rounds),
        "stt_core provider, one at a time": timed(stt_core_sequential, args.rounds),
        "stt_core, 15 concurrent, batching off": timed(lambda: concurrent(unbatched), args.rounds),
        "stt_core, 15 concurrent, batching on": timed(lambda: concurrent(batched), args.rounds),
    }
    base = results["AutoModel.generate, one at a time"]
    batch_off = results["stt_core, 15 concurrent, batching off"]
    rows = [
        "| run | median s | ratio |",
        "|---|---:|---:|",
        f"| AutoModel.generate, one at a time | {base:.3f} | 1.00 |",
        f"| stt_core provider, one at a time | {results['stt_core provider, one at a time']:.3f} | "
        f"{results['stt_core provider, one at a time'] / base:.2f} (vs AutoModel) |",
        f"| stt_core, 15 concurrent, batching off | {batch_off:.3f} | 1.00 |",
        f"| stt_core, 15 concurrent, batching on | {results['stt_core, 15 concurrent, batching on']:.3f} | "
        f"{results['stt_core, 15 concurrent, batching on'] / batch_off:.2f} (vs batching off) |",
    ]
    section = "\n".join([
        BEGIN,
        "## funasr: the provider next to AutoModel.generate",
        "",
        f"Model `{Path(args.model).name}`, {len(CLIPS)} clips ({seconds_of_audio:.1f} s of audio), "
        f"median of {args.rounds} rounds, {platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} CPUs. Made by `benchmarks/bench_funasr.py`.",
        "",
        *rows,
        "",
        "A ratio below 1 is faster. The tiny fixture model makes the model's own cost small, so the",
        "overhead ratio here is the worst case; with SenseVoiceSmall it shrinks towards 1.",
        END,
    ])
    print(section)
    if not args.no_write:
        write_section(section)


def stt_audio(samples):  # type: ignore[no-untyped-def]
    from stt_core import Audio

    return Audio(samples, 16_000)


def write_section(section: str) -> None:
    heading = "# Benchmarks\n\nMeasured side by side in one run; ratios, not timed asserts.\n"
    text = DOC.read_text() if DOC.exists() else heading
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)


if __name__ == "__main__":
    main()
