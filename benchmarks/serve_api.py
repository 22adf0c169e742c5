"""``stt-core serve`` against calling the same engine in-process, side by side.

    .venv/bin/python benchmarks/serve_api.py     # this section alone (rewrites its part of the doc)

One engine, the bundled faster-whisper tiny.en with one compute thread, three ways:

- in-process: ``Provider.transcribe`` in this process (the baseline);
- serve, openai SDK: a ``stt-core serve`` process over the same engine, called with the official
  openai SDK (``AsyncOpenAI``), as any OpenAI client would;
- serve, openai provider: the same server, called through stt-core's ``openai`` provider (how a
  chain on another process or host uses a shared model).

At 1, 4 and 16 concurrent clients, each sending ``REQUESTS_PER_CLIENT`` utterances back to back,
in interleaved rounds; reported: requests per second and p50 / p95 latency per side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
from common import AUDIO, publish_alone

TITLE = "openai api"
HEADING = "## OpenAI API: `stt-core serve` vs the engine in-process"
LEVELS = (1, 4, 16)
REQUESTS_PER_CLIENT = 4
CLIPS = ("chairs", "lights", "weather", "fox")
SIDES = ("in-process", "serve, openai SDK", "serve, openai provider")
ENGINE = {"model": "bundled", "cpu_threads": 1, "num_workers": 2}  # 2 workers: one per core


WHISPER_SERVER = ('chain = ["whisper"]\n[whisper]\nmodel = "bundled"\ncpu_threads = 1\nnum_workers = 2\n'
                  "[serve]\nmax_concurrent = 16\nmax_waiting = 64\n")  # the same engine as ENGINE


class Server:
    """``stt-core serve`` over ``config`` (the bundled whisper), in a process of its own."""

    def __init__(self, tmp: Path, config_text: str = WHISPER_SERVER) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        config = tmp / "stt.toml"
        config.write_text(config_text)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stt_core.cli", "serve", "--port", str(self.port)],
            env={**os.environ, "STT_CONFIG": str(config)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(1200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("stt-core serve did not start")

    def cpu(self) -> float:
        """CPU seconds the server has used so far."""
        return float(sum(psutil.Process(self.process.pid).cpu_times()[:2]))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


async def _level(call: Callable[[int], Awaitable[str]], clients: int) -> tuple[float, list[float]]:
    """``clients`` clients sending their requests back to back: (wall seconds, each latency)."""
    latencies: list[float] = []

    async def client(number: int) -> None:
        for i in range(REQUESTS_PER_CLIENT):
            started = time.perf_counter()
            text = await call(number + i)
            latencies.append(time.perf_counter() - started)
            assert text, "an empty transcript"

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    return time.perf_counter() - started, latencies


async def measure(rounds: int = 2) -> list[dict[str, Any]]:
    import openai

    import stt_core
    from stt_core_openai._provider import OpenAIProvider

    clips = [(AUDIO / f"{name}.wav").read_bytes() for name in CLIPS]
    decoded = [stt_core.Audio.from_bytes(clip) for clip in clips]
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        engine = stt_core.registry().create("whisper", ENGINE)
        remote = OpenAIProvider(base_url=f"{server.url}/v1", timeout=300)
        client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=300)

        async def in_process(i: int) -> str:
            return (await engine.transcribe(decoded[i % len(CLIPS)], language="en")).text

        async def sdk(i: int) -> str:
            answer = await client.audio.transcriptions.create(
                file=("clip.wav", clips[i % len(CLIPS)]), model="whisper-1", language="en")
            return answer.text

        async def provider(i: int) -> str:
            return (await remote.transcribe(decoded[i % len(CLIPS)], language="en")).text

        calls = dict(zip(SIDES, (in_process, sdk, provider), strict=True))
        results: dict[tuple[str, int], list[tuple[float, list[float]]]] = {}
        try:
            for call in calls.values():  # warm-up: model load, connections
                await _level(call, 1)
            for r in range(rounds):
                for clients in LEVELS:
                    order = SIDES[r % 3:] + SIDES[:r % 3]
                    for side in order:
                        results.setdefault((side, clients), []).append(await _level(calls[side], clients))
        finally:
            await client.close()
            await remote.aclose()
            await engine.aclose()
            server.stop()
    rows = []
    for (side, clients), runs in results.items():
        latencies = sorted(x for _, lat in runs for x in lat)
        requests = sum(len(lat) for _, lat in runs)
        rows.append({"side": side, "clients": clients, "rps": requests / sum(wall for wall, _ in runs),
                     "p50": statistics.median(latencies),
                     "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]})
    return sorted(rows, key=lambda r: (r["clients"], SIDES.index(r["side"])))


def measure_in_a_fresh_loop(rounds: int) -> list[dict[str, Any]]:
    return asyncio.run(measure(rounds))


def markdown(rows: list[dict[str, Any]], rounds: int) -> list[str]:
    base = {r["clients"]: r for r in rows if r["side"] == "in-process"}
    lines = [
        HEADING,
        "",
        f"The bundled faster-whisper tiny.en (one compute thread, two workers) on {', '.join(CLIPS)} "
        f"(2.9-3.4 s each), in-process and behind `stt-core serve` on 127.0.0.1; each client sends "
        f"{REQUESTS_PER_CLIENT} requests back to back, {rounds} interleaved rounds per level. The server "
        "and the clients share this machine's cores.",
        "",
        "| clients | path | requests/s | p50 ms | p95 ms | requests/s vs in-process | p50 vs in-process |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b = base[r["clients"]]
        lines.append(f"| {r['clients']} | {r['side']} | {r['rps']:.2f} | {r['p50'] * 1000:.0f} | "
                     f"{r['p95'] * 1000:.0f} | {r['rps'] / b['rps']:.2f}x | {r['p50'] / b['p50']:.2f}x |")
    one = {r["side"]: r for r in rows if r["clients"] == 1}
    added = (one["serve, openai provider"]["p50"] - one["in-process"]["p50"]) * 1000
    lines += [
        "",
        f"What the server costs one request: {added:+.0f} ms at p50 with one client (the upload, "
        "decoding the file again in the server, the multipart form, the JSON answer). Under load the "
        "engine is the bottleneck on every path; the server's share is the ratios above.",
        "",
    ]
    return lines


def section(repeats: int) -> list[str]:
    rounds = 2  # every round serves clients at each level against a real server process
    return markdown(measure_in_a_fresh_loop(rounds), rounds)


if __name__ == "__main__":
    publish_alone(__file__, section(2))
