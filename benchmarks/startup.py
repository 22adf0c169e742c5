"""Start-up: import and `stt-core providers` time; the first utterance with and without prewarm."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import AUDIO, publish_alone

TITLE = "start-up"

_FIRST_UTTERANCE = (
    "import asyncio, time, stt_core\n"
    "p = stt_core.registry().create('whisper')\n"
    "if {prewarm}: asyncio.run(p.warmup())\n"
    "t = time.perf_counter(); asyncio.run(p.transcribe('{clip}')); print(time.perf_counter() - t)\n"
)


def startup(repeats: int) -> dict[str, float]:
    python, cli = sys.executable, str(Path(sys.executable).with_name("stt-core"))

    def timed(command: list[str]) -> float:
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    def first_utterance(prewarm: bool) -> float:
        code = _FIRST_UTTERANCE.format(prewarm=prewarm, clip=AUDIO / "fox.wav")
        out = [float(subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
                     .stdout.strip().splitlines()[-1]) for _ in range(repeats)]
        return statistics.median(out)

    return {
        "python -c pass": timed([python, "-c", "pass"]),
        "python -c 'import stt_core'": timed([python, "-c", "import stt_core"]),
        "stt-core providers": timed([cli, "providers"]),
        "first utterance, no prewarm": first_utterance(False),
        "first utterance, after prewarm": first_utterance(True),
    }


def section(repeats: int) -> list[str]:
    start = startup(max(3, repeats // 3))
    return [
        "## Start-up",
        "",
        "| what | ms |",
        "|---|---:|",
        *(f"| {name} | {seconds * 1000:.0f} |" for name, seconds in start.items()),
        "",
    ]


if __name__ == "__main__":
    publish_alone(__file__, section(15))
