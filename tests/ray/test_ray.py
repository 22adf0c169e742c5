"""stt-core's server on a real local Ray cluster: two nodes (``ray.cluster_utils.Cluster``, as Ray's
own tests start them), one cluster for the whole module, shut down whatever happens.

The application is the one ``serve run stt_core_ray:app`` deploys, over the bundled whisper (two
replicas, one per node) and the tiny SenseVoice (one replica, batching); clients are the official
``openai`` SDK through Serve's HTTP proxy, with its own retries off, so a lost request shows.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import ray
from ray import serve
from ray.cluster_utils import Cluster

import stt_core
import stt_core_ray
from realtime_clients import TWO, Heard, encoded, ga, ga_update, record, send_audio, speech
from serving import free_port
from speech import FIXTURES, MAX_WER, TINY_SENSEVOICE, wer
from stt_core import ConfigError

pytestmark = pytest.mark.slow

APP = "stt-core"
ENGLISH = ["fox", "lights", "weather", "meeting", "offline", "chairs"]
CONFIG = f"""
chain = ["whisper", "funasr"]
[funasr]
model = "{TINY_SENSEVOICE}"
use_itn = false
vad = "none"
ncpu = 1
min_free_memory_gb = 0
[ray]
num_cpus = 1
[ray.engines.whisper]
replicas = 2
max_replicas_per_node = 1     # one on each node
[ray.engines.funasr]
batch_wait_timeout = 0.25     # generous: requests through HTTP on a busy 2-core machine arrive spread out
[realtime]                    # /v1/realtime's recognitions: patient, for a busy 2-core machine
attempt_timeout = 120
drain_timeout = 120
"""


class Served:
    def __init__(self, cluster: Cluster, port: int, config: Path) -> None:
        self.cluster, self.port, self.config = cluster, port, config
        self.url = f"http://127.0.0.1:{port}/v1"

    def client(self, path: str = "/v1") -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{self.port}{path}", api_key="none",
                                  websocket_base_url=f"ws://127.0.0.1:{self.port}{path}", max_retries=0)

    async def stats(self, engine: str, replicas: int) -> dict[str, dict[str, Any]]:
        """Each replica's ``stats()``, asked through the deployment's handle until all have answered."""
        handle = serve.get_deployment_handle(engine, APP)
        seen: dict[str, dict[str, Any]] = {}
        for _ in range(200):
            answer = await handle.stats.remote()
            seen[answer["replica"]] = answer
            if len(seen) == replicas:
                return seen
        raise AssertionError(f"only {len(seen)} of {replicas} {engine} replicas answered")

    def running(self, engine: str) -> int:
        states = serve.status().applications[APP].deployments[engine].replica_states
        return sum(n for state, n in states.items() if getattr(state, "value", state) == "RUNNING")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("ray")
    config = folder / "stt.toml"
    config.write_text(CONFIG)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=4)
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(stt_core_ray.app({"config": str(config)}), name=APP, route_prefix="/")
        yield Served(cluster, port, config)
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        cluster.shutdown()


async def transcribe(client: openai.AsyncOpenAI, name: str, language: str = "en") -> tuple[str, str]:
    """The text and the engine that answered (the server says which in X-STT-Provider)."""
    with (FIXTURES / f"{name}.wav").open("rb") as audio:
        raw = await client.audio.transcriptions.with_raw_response.create(
            model="stt-core", file=audio, language=language)
    return raw.parse().text, raw.headers["x-stt-provider"]


async def test_the_openai_sdk_through_serves_proxy_gets_the_words(served: Served) -> None:
    async with served.client() as client:
        text, engine = await transcribe(client, "fox")
        assert engine == "whisper" and wer("fox", text) <= MAX_WER, text
        text, engine = await transcribe(client, "zh_hello", language="zh")  # whisper's tiny.en takes no zh
        assert (engine, text) == ("funasr", "你好世界")
    async with httpx.AsyncClient() as http:
        ready = (await http.get(f"http://127.0.0.1:{served.port}/ready")).json()
    assert ready == {"ready": True, "engines": ["whisper", "funasr"], "chain": "whisper -> funasr"}


async def test_the_openai_sdks_realtime_client_through_serves_proxy_gets_each_utterance(
    served: Served,
) -> None:
    """/v1/realtime through Serve's proxy: the ingress holds the session (its VAD, interims and
    finals) and sends each recognition to whisper's replicas."""
    data, per_second = encoded(speech("two_utterances"), "audio/pcm")
    heard = Heard()
    async with served.client() as c, ga(c) as conn:
        assert (await conn.recv()).type == "session.created"
        await conn.send(ga_update("whisper"))  # type: ignore[arg-type]
        sending = asyncio.create_task(send_audio(conn, data, per_second, speed=2))
        await record(conn, heard, until=lambda e: len(heard.finals) == 2 or e.type == "error")
        await sending
    assert not heard.of("error"), heard.of("error")
    for final, said in zip(heard.finals, TWO, strict=True):
        assert wer(said, final.transcript) <= MAX_WER, final.transcript
        assert final.engine == "whisper"


async def test_two_replicas_of_an_engine_both_serve_one_on_each_node(served: Served) -> None:
    before = {r["replica"]: r["requests"] for r in (await served.stats("whisper", 2)).values()}
    async with served.client() as client:
        answers = await asyncio.gather(*(transcribe(client, ENGLISH[i % 6]) for i in range(8)))
    for i, (text, engine) in enumerate(answers):
        assert engine == "whisper" and wer(ENGLISH[i % 6], text) <= MAX_WER, text
    after = await served.stats("whisper", 2)
    served_each = {replica: stats["requests"] - before.get(replica, 0) for replica, stats in after.items()}
    assert all(n > 0 for n in served_each.values()) and sum(served_each.values()) == 8, served_each
    assert len({stats["node"] for stats in after.values()}) == 2  # max_replicas_per_node = 1
    assert {stats["omp_threads"] for stats in after.values()} == {"1"}  # set by [ray], not left to Ray


async def test_killing_a_replica_mid_wave_loses_no_request_and_serve_replaces_it(served: Served) -> None:
    handle = serve.get_deployment_handle("whisper", APP)
    names = [ENGLISH[i % 6] for i in range(16)]
    async with served.client() as client:
        wave = [asyncio.ensure_future(transcribe(client, name)) for name in names]
        # The victim: the first replica seen holding two requests of the wave (Ray tells no event).
        # Not a replica chosen before: Serve's router steers calls away from a busy replica, so
        # asking one given replica under load may never reach it.
        while (stats := await handle.stats.remote())["in_flight"] < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        victim = stats["replica"]
        actor = next(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if a["name"].startswith(f"SERVE_REPLICA::{APP}#whisper#") and a["name"].endswith(victim))
        ray.kill(ray.get_actor(actor, namespace="serve"), no_restart=True)
        answers = await asyncio.gather(*wave, return_exceptions=True)
    failed = [a for a in answers if isinstance(a, BaseException)]
    assert not failed, failed
    for name, (text, engine) in zip(names, answers, strict=True):  # type: ignore[misc]
        # Not fallen over to funasr either: the replica's death was absorbed by the deployment.
        assert engine == "whisper" and wer(name, text) <= MAX_WER, (name, text, engine)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if served.running("whisper") == 2:
            new = await served.stats("whisper", 2)
            if victim not in new:
                break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError(f"Serve did not bring whisper back to 2 replicas: {serve.status()}")
    assert len({stats["node"] for stats in new.values()}) == 2


async def test_funasr_batches_gather_requests_from_several_ingress_calls(served: Served) -> None:
    before = (await served.stats("funasr", 1)).popitem()[1]
    async with served.client() as client:
        answers = await asyncio.gather(*(transcribe(client, "zh_hello", language="zh") for _ in range(6)))
    assert answers == [("你好世界", "funasr")] * 6
    stats = (await served.stats("funasr", 1)).popitem()[1]
    batches = stats["batches"][len(before["batches"]):]
    assert sum(batches) == 6 and max(batches) >= 2, batches  # several HTTP requests, one engine call


def test_an_engine_no_node_can_place_is_left_out_of_ready_and_passed_without_a_call(served: Served) -> None:
    """No node has a GPU: whisper's replica waits for one, the ingress serves without it after
    [ray] engine_wait, and the chain passes it (no replica to call) and falls over to funasr."""
    application = stt_core_ray.app({"config": str(served.config), "ray.engine_wait": "1",
                                    "ray.engines.whisper.num_gpus": "1", "ray.engines.whisper.replicas": "1"})
    # serve.run would wait for every replica, whisper's forever; run_many can wait for the ingress alone.
    serve.run_many([serve.RunTarget(application, name="no-gpu", route_prefix="/no-gpu")],
                   wait_for_applications_running=False)
    try:
        deadline = time.monotonic() + 120
        ready: dict[str, Any] = {}
        while "funasr" not in ready.get("engines", []):  # funasr's replica loads, then the ingress sees it
            assert time.monotonic() < deadline, ready
            time.sleep(0.5)
            try:  # the proxy holds a request until the ingress has started (its replica loads)
                answer = httpx.get(f"http://127.0.0.1:{served.port}/no-gpu/ready", timeout=30)
            except httpx.TimeoutException:
                continue
            ready = answer.json() if answer.headers.get("content-type") == "application/json" else {}
        assert ready == {"ready": True, "engines": ["funasr"], "chain": "whisper -> funasr"}
        whisper = serve.status().applications["no-gpu"].deployments["whisper"]
        assert "RUNNING" not in {getattr(s, "value", s) for s in whisper.replica_states}, whisper

        async def ask() -> tuple[str, str]:
            async with served.client("/no-gpu/v1") as client:
                return await transcribe(client, "chairs")

        assert asyncio.run(ask()) == ("we need twenty five chairs for the party", "funasr")
        metrics = httpx.get(f"http://127.0.0.1:{served.port}/no-gpu/metrics").text  # the one ingress's
        attempts = re.findall(r'stt_core_attempt_duration_seconds_count\{[^}]*engine="(\w+)",'
                              r'stt_core_outcome="(\w+)"\} 1', metrics)
        assert attempts == [("whisper", "unavailable"), ("funasr", "ok")], metrics  # whisper: not called
    finally:
        serve.delete("no-gpu")


def test_serve_run_starts_the_application_with_rays_own_cli(served: Served, tmp_path: Path) -> None:
    (tmp_path / "stt.toml").write_text(served.config.read_text())
    serve_cli = Path(sys.executable).with_name("serve")
    done = subprocess.run(
        [str(serve_cli), "run", "--non-blocking", "--address", served.cluster.address, "--name", "cli",
         "--route-prefix", "/cli", "stt_core_ray:app", "chain=funasr", "ray.replicas=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
        env={k: v for k, v in os.environ.items() if not k.startswith("STT_")},
    )
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Application 'cli' is ready" in done.stdout + done.stderr

        async def ask() -> tuple[str, str]:
            async with served.client("/cli/v1") as client:
                return await transcribe(client, "chairs")

        assert asyncio.run(ask()) == ("we need twenty five chairs for the party", "funasr")
        deployments = serve.status().applications["cli"].deployments
        assert set(deployments) == {"ingress", "funasr"}  # chain=funasr from the command line won
    finally:
        serve.delete("cli")


def test_stt_core_serve_ray_serves_on_the_cluster_and_says_where_until_stopped(
    served: Served, tmp_path: Path
) -> None:
    """Whisper asks for a GPU no node has: the command does not wait for it (serve.run would, for
    ever), it serves with funasr and says that whisper is passed until a replica runs."""
    (tmp_path / "stt.toml").write_text(served.config.read_text())
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STT_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "stt_core.cli", "serve", "--ray-address", served.cluster.address,
         "--chain", "whisper,funasr", "--port", str(free_port())],  # Serve runs on served.port already
        cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT,
        env=env | {"STT_RAY__APP_NAME": "from-cli", "STT_RAY__ROUTE_PREFIX": "/from-cli",
                   "STT_RAY__ENGINE_WAIT": "1", "STT_RAY__ENGINES__WHISPER__NUM_GPUS": "1",
                   "STT_RAY__ENGINES__WHISPER__REPLICAS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while "serving http://" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        said = log.read_text()
        # where Serve really listens (it said the port it was given, where nothing answered)
        assert f"Ray Serve already runs on this cluster, listening on 127.0.0.1:{served.port}" in said, said
        assert f"serving http://127.0.0.1:{served.port}/from-cli/v1 on Ray Serve" in said, said
        assert ("application 'from-cli'): engines funasr x1, whisper x0 (passed until a replica runs); "
            "ingress x1") in said, said

        async def ask() -> tuple[str, str]:
            async with served.client("/from-cli/v1") as client:
                return await transcribe(client, "chairs")

        assert asyncio.run(ask()) == ("we need twenty five chairs for the party", "funasr")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
        assert "from-cli" not in serve.status().applications  # deleted on the way out
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if "from-cli" in serve.status().applications:
            serve.delete("from-cli")


def test_an_address_where_nothing_listens_or_a_port_held_is_said_at_once(tmp_path: Path) -> None:
    # Ray's own connection tried for minutes, printing only its warnings; a held port ended in
    # Ray's traceback once the cluster had started.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "RAY_ADDRESS"))}
    port = free_port()
    command = [sys.executable, "-m", "stt_core.cli", "serve", "--chain", "whisper"]
    done = subprocess.run([*command, "--ray-address", f"127.0.0.1:{port}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done.stderr
    assert done.stderr.splitlines()[-1] == f"error: cannot connect to the Ray cluster at 127.0.0.1:{port}: " \
        "Connection refused", done.stderr
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        held = other.getsockname()[1]
        done = subprocess.run([*command, "--ray", "--port", str(held)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"error: stt-core serve: cannot listen on 127.0.0.1:{held}: "
                                        "Address already in use"], done.stderr


def test_bad_ray_settings_are_refused_before_ray_is_asked() -> None:
    with pytest.raises(ConfigError, match=r"argument 'ray replicas' is not a config key"):
        stt_core_ray.app({"ray replicas": "2"})
    with pytest.raises(ConfigError, match=r"bad \[ray\] settings in the arguments: replicas: "):
        stt_core_ray.app({"chain": "whisper", "ray.replicas": "0"})
    with pytest.raises(ConfigError, match=r"\[ray.engines.groq\]: groq is called from the ingress"):
        stt_core_ray.app({"chain": "whisper,groq", "ray.engines.groq.replicas": "2"})
    with pytest.raises(ConfigError, match=r"\[ray.engines.whsiper\] names no engine"):
        stt_core_ray.app({"chain": "whisper", "ray.engines.whsiper.replicas": "2"})


def test_a_local_cluster_counts_every_cpu_its_replicas_ask_for() -> None:
    """``stt-core serve --ray`` starts its cluster with at least these CPUs: on a 2-core machine the
    ingress and two engines ask for 3, and Ray would never place the last (nor say so to the user)."""
    from stt_core_ray._cli import cpus_asked
    from stt_core_ray._settings import ray_settings

    config = stt_core.load_config(overrides={
        "chain": "whisper,funasr,groq", "ray.ingress_num_cpus": "0.5", "ray.engines.whisper.replicas": "2",
        "ray.engines.funasr.num_cpus": "0.25", "ray.engines.funasr.autoscaling.min_replicas": "3"})
    assert cpus_asked(config, ray_settings(config), None) == 0.5 + 2 * 1 + 3 * 0.25  # groq: no replica
    assert cpus_asked(config, ray_settings(config), ["whisper"]) == 0.5 + 2 * 1
    cold = stt_core.load_config(overrides={"chain": "whisper", "ray.autoscaling.min_replicas": "0"})
    assert cpus_asked(cold, ray_settings(cold), None) == 1 + 1  # from zero: its first replica must fit
