"""stt-core's server on Ray Serve against plain ``stt-core serve``, side by side in one run.

    .venv/bin/python benchmarks/ray_serve.py     # this section alone (rewrites its part of the doc)

On one local Ray cluster of two nodes (``ray.cluster_utils.Cluster``: two raylets on this machine,
as Ray's own tests start them), with the official openai SDK as the client:

- latency at one request at a time: the bundled whisper (one thread) behind plain ``stt-core
  serve`` against the same engine as one Ray Serve replica behind the ingress, interleaved rounds;
  target: Ray at most 1.25x;
- throughput: one replica against two replicas on two nodes, one thread each, for the tiny
  SenseVoice (target: at least 1.7x) and, for scale, whisper; clients send waves of requests;
- requests lost when a replica is killed (``ray.kill``) in the middle of a wave (target: 0), and
  how long Serve takes to bring the replica count back.

No peer serves these engines on Ray: Ray Serve LLM's /v1/audio/transcriptions runs vLLM on a GPU.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import openai
import psutil
import soundfile
from common import AUDIO, ROOT, Compared, interleaved, publish_alone
from serve_api import Server

TITLE = "ray serve"
HEADING = "## On a cluster: Ray Serve against plain `stt-core serve`"
TINY = ROOT / "tests" / "fixtures" / "funasr" / "tiny-sensevoice"
CLIPS = ("chairs", "lights", "weather", "fox")
WAVE = 16  # requests in flight at once in the throughput and kill measurements
WHISPER = '[whisper]\nmodel = "bundled"\ncpu_threads = 1\nnum_workers = 2\n'  # as serve_api's Server
ONE_THREAD_WHISPER = '[whisper]\nmodel = "bundled"\ncpu_threads = 1\nnum_workers = 1\n'  # one thread in all
FUNASR = f'[funasr]\nmodel = "{TINY}"\nncpu = 1\nvad = "none"\nuse_itn = false\nmin_free_memory_gb = 0\n'


def _long_clip() -> bytes:
    """The fixtures end to end, about 30 s: on the tiny SenseVoice, short clips would time the
    HTTP path rather than the engine."""
    pieces = [soundfile.read(AUDIO / f"{name}.wav", dtype="int16")[0] for name in CLIPS * 3]
    out = io.BytesIO()
    soundfile.write(out, np.concatenate(pieces), 16_000, format="WAV", subtype="PCM_16")
    return out.getvalue()


def _cpu_seconds(engine: str) -> dict[str, float]:
    """CPU seconds so far: ``engine``'s replicas, the rest of Ray and Serve on this machine
    (ingress, proxies, raylets, controller) with this client, and the whole machine's."""
    spent = {"engine": 0.0, "rest": 0.0}
    for process in psutil.process_iter():
        try:
            command = " ".join(process.cmdline())
            times = process.cpu_times()
        except psutil.Error:
            continue
        if command.startswith("ray::ServeReplica:") and command.split()[0].endswith(f":{engine}"):
            spent["engine"] += times.user + times.system
        elif "ray::" in command or "/ray/" in command or process.pid == psutil.Process().pid:
            spent["rest"] += times.user + times.system
    machine = psutil.cpu_times()
    return spent | {"machine": machine.user + machine.system + machine.nice}


class Cluster:
    """Two nodes, Serve on a free port, and an application per measurement."""

    def __init__(self, tmp: Path) -> None:
        import ray
        from ray import serve
        from ray.cluster_utils import Cluster as RayCluster

        from serving import free_port

        self.tmp, self.serve = tmp, serve
        self.cluster = RayCluster(initialize_head=True,
                                  head_node_args={"num_cpus": 4, "include_dashboard": False})
        self.cluster.add_node(num_cpus=4)
        ray.init(address=self.cluster.address, log_to_driver=False, logging_level="ERROR")
        self.cluster.wait_for_nodes()
        self.port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": self.port})

    def deploy(self, name: str, config: str) -> str:
        import stt_core_ray

        path = self.tmp / f"{name}.toml"
        path.write_text(config)
        self.serve.run(stt_core_ray.app({"config": str(path)}), name=name, route_prefix=f"/{name}")
        return f"http://127.0.0.1:{self.port}/{name}/v1"

    def close(self) -> None:
        import ray

        self.serve.shutdown()
        ray.shutdown()
        self.cluster.shutdown()


def latency(cluster: Cluster, tmp: Path, repeats: int) -> Compared:
    plain = Server(tmp)  # stt-core serve in a process of its own, the same engine
    ray_url = cluster.deploy("latency", f'chain = ["whisper"]\n{WHISPER}[ray]\nreplicas = 1\n')
    clips = [(AUDIO / f"{name}.wav").read_bytes() for name in CLIPS]
    clients = {name: openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)
               for name, url in (("stt-core serve", f"{plain.url}/v1"), ("Ray Serve", ray_url))}
    turn = {"n": 0}

    def ask(client: openai.OpenAI) -> None:
        turn["n"] += 1
        client.audio.transcriptions.create(model="stt-core", language="en",
                                           file=("clip.wav", clips[turn["n"] // 2 % len(clips)]))

    try:
        times = interleaved({name: (lambda c=client: ask(c)) for name, client in clients.items()}, repeats)
    finally:
        plain.stop()
        cluster.serve.delete("latency")
    return Compared.of("one whisper replica on Ray Serve vs stt-core serve", times["stt-core serve"],
                       times["Ray Serve"])


async def _wave(url: str, clip: bytes, *, language: str, size: int = WAVE) -> list[Any]:
    async with openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=300) as client:
        async def one() -> Any:
            raw = await client.audio.transcriptions.with_raw_response.create(
                model="stt-core", language=language, file=("clip.wav", clip))
            return raw.headers["x-stt-provider"]

        return await asyncio.gather(*(one() for _ in range(size)), return_exceptions=True)


def throughput(cluster: Cluster, engine: str, table: str, clip: bytes, rounds: int) -> dict[str, Any]:
    """Requests per second of one replica and of two (one per node), in interleaved waves."""
    config = f'chain = ["{engine}"]\n{table}[ray]\nthreads = 1\nmax_replicas_per_node = 1\nreplicas = '
    urls = {count: cluster.deploy(f"{engine}-{count}", f"{config}{count}\n") for count in (1, 2)}
    rates: dict[int, list[float]] = {1: [], 2: []}
    cpu = {"engine": 0.0, "rest": 0.0, "machine": 0.0, "seconds": 0.0}  # over the two-replica waves
    try:
        for side in (1, 2):  # warm-up: connections, first batches
            asyncio.run(_wave(urls[side], clip, language="en", size=4))
        for r in range(rounds):
            for side in ((1, 2) if r % 2 == 0 else (2, 1)):
                before, started = _cpu_seconds(engine), time.perf_counter()
                answers = asyncio.run(_wave(urls[side], clip, language="en"))
                took, after = time.perf_counter() - started, _cpu_seconds(engine)
                assert answers == [engine] * WAVE, answers
                rates[side].append(WAVE / took)
                if side == 2:
                    for key in ("engine", "rest", "machine"):
                        cpu[key] += after[key] - before[key]
                    cpu["seconds"] += took
    finally:
        for count in (1, 2):
            cluster.serve.delete(f"{engine}-{count}")
    ratios = [two / one for one, two in zip(rates[1], rates[2], strict=True)]
    return {"engine": engine, "one": statistics.median(rates[1]), "two": statistics.median(rates[2]),
            "ratio": statistics.median(ratios), "rounds": rounds, "cpu": cpu}


async def _kill_mid_wave(cluster: Cluster, url: str, app: str) -> tuple[list[Any], float]:
    import ray

    handle = cluster.serve.get_deployment_handle("whisper", app)
    clip = (AUDIO / "chairs.wav").read_bytes()
    wave = asyncio.ensure_future(_wave(url, clip, language="en"))
    victim = None
    while victim is None:
        stats = await handle.stats.remote()
        victim = stats["replica"] if stats["in_flight"] >= 2 else None
    actor = next(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["name"].startswith(f"SERVE_REPLICA::{app}#whisper#") and a["name"].endswith(victim))
    ray.kill(ray.get_actor(actor, namespace="serve"), no_restart=True)
    killed = time.perf_counter()
    answers = await wave
    while True:  # until a new replica runs: two RUNNING, the victim not among them
        deployment = cluster.serve.status().applications[app].deployments["whisper"]
        running = sum(n for state, n in deployment.replica_states.items()
                      if getattr(state, "value", state) == "RUNNING")
        seen = {(await handle.stats.remote())["replica"] for _ in range(20)}
        if running == 2 and victim not in seen:
            return answers, time.perf_counter() - killed
        await asyncio.sleep(0.5)


def kills(cluster: Cluster, times: int) -> dict[str, Any]:
    url = cluster.deploy("kill", f'chain = ["whisper", "funasr"]\n{WHISPER}{FUNASR}[ray.engines.whisper]\n'
                                 "replicas = 2\nmax_replicas_per_node = 1\n")
    lost = fell_over = 0
    restored: list[float] = []
    try:
        for _ in range(times):
            answers, seconds = asyncio.run(_kill_mid_wave(cluster, url, "kill"))
            lost += sum(isinstance(a, BaseException) for a in answers)
            fell_over += sum(a == "funasr" for a in answers)
            restored.append(seconds)
    finally:
        cluster.serve.delete("kill")
    return {"waves": times, "requests": times * WAVE, "lost": lost, "fell_over": fell_over,
            "restored": statistics.median(restored)}


def markdown(lat: Compared, rates: list[dict[str, Any]], kill: dict[str, Any], load: str) -> list[str]:
    lines = [
        HEADING,
        "",
        "One local Ray cluster of two nodes on this machine (two raylets sharing its 2 cores, with "
        "Serve's proxies, the ingress and the clients); the openai SDK as the client. Load before the "
        f"run: {load}.",
        "",
        "| measured | stt-core serve / one replica | Ray Serve / two replicas | ratio | target |",
        "|---|---:|---:|---:|---:|",
        f"| latency, one request at a time (whisper, 1 thread; {lat.rounds} rounds) | "
        f"{lat.base * 1000:.0f} ms | {lat.side * 1000:.0f} ms | {lat.ratio:.2f}x | at most 1.25x |",
    ]
    for r in rates:
        target = "at least 1.7x" if r["engine"] == "funasr" else "(for scale)"
        lines.append(f"| throughput, {r['engine']}, 1 vs 2 replicas on 2 nodes, 1 thread each ({WAVE} "
                     f"requests a wave, {r['rounds']} rounds) | {r['one']:.2f} req/s | "
                     f"{r['two']:.2f} req/s | {r['ratio']:.2f}x | {target} |")
    lines += [
        "",
        f"A replica killed (`ray.kill`) while it held requests, {kill['waves']} times in waves of {WAVE} "
        f"(whisper, two replicas, funasr behind it in the chain): **{kill['lost']} of {kill['requests']} "
        f"requests lost** (target 0), {kill['fell_over']} answered by the next engine instead: those the "
        f"killed replica held went to the other one. Serve had two replicas running again "
        f"{kill['restored']:.1f} s after the kill (median).",
        "",
        "Both nodes of this cluster are one machine: two replicas share its 2 cores with the ingress "
        "(which reads each upload and converts it to 16 kHz), Serve's proxies, the client and whatever "
        "else the machine runs (the load above), so two replicas can at best use both cores, and the "
        "throughput ratio shows how much of a second core was left to them. On two machines each "
        "replica has cores of its own; no second machine was available to measure that.",
        "",
    ]
    for r in rates:
        cpu, requests = r["cpu"], r["rounds"] * WAVE
        share = cpu["engine"] / (cpu["engine"] + cpu["rest"])
        lines += [
            f"Where the CPU went in the two-replica {r['engine']} waves: the machine was "
            f"{cpu['machine'] / cpu['seconds']:.2f} of its 2 cores busy; of what this cluster and its "
            f"client used, the {r['engine']} replicas had {share:.0%} ({cpu['engine'] / requests * 1000:.0f} "
            f"ms a request) and the rest (ingress, proxies, raylets, controller, client) "
            f"{cpu['rest'] / requests * 1000:.0f} ms a request.",
            "",
        ]
    lines += [
        "So the ratio is bounded by this machine: the replicas cannot have more than what the rest "
        "leaves of 2 cores, and the tiny SenseVoice costs the engine little more than the request "
        "costs Ray and HTTP. A real model's larger share per request, or a node per replica, lifts "
        "that bound; neither was at hand here, and no GPU either (GPU figures are not measured).",
        "",
    ]
    return lines


def section(repeats: int) -> list[str]:
    import os

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1, 5, 15 min)"
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        cluster = Cluster(tmp)
        try:
            lat = latency(cluster, tmp, min(repeats, 10))
            long_clip = _long_clip()
            rates = [throughput(cluster, "funasr", FUNASR, long_clip, rounds=4),
                     throughput(cluster, "whisper", ONE_THREAD_WHISPER, (AUDIO / "chairs.wav").read_bytes(),
                                rounds=2)]
            kill = kills(cluster, times=2)
        finally:
            cluster.close()
    return markdown(lat, rates, kill, load)


if __name__ == "__main__":
    publish_alone(__file__, section(10))
