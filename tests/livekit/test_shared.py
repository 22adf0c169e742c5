"""One local model per worker host: LiveKit's own inference process (a real separate process, as the
worker starts it) serving the tiny trained SenseVoice fixture and the bundled whisper model to real
LiveKit job processes, with the fake Groq API behind them in the chain.

This test process plays the worker (``stt_core_livekit.testing.OfflineWorker``): it registers the
runner, starts ``InferenceProcExecutor`` and runs fake jobs (as ``console`` mode does: no LiveKit
server) in ``ProcJobExecutor`` processes.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from livekit.agents import JobContext, get_job_context
from livekit.agents.inference_runner import _InferenceRunner
from livekit.agents.ipc.inference_proc_executor import InferenceProcExecutor
from livekit.agents.ipc.job_proc_executor import ProcJobExecutor

import shared_jobs
import stt_core
from fakes.groq_api import KEY, FakeGroq
from serving import FUNASR_TABLE, WHISPER_TABLE
from speech import MAX_WER, REFERENCES, TINY_SENSEVOICE, wer
from stt_core import Audio, InvalidAudioError
from stt_core_livekit import SharedEngine, SharedEngineRunner, enable_shared_inference
from stt_core_livekit._shared import METHOD, pack, unpack
from stt_core_livekit.testing import OfflineWorker

pytestmark = pytest.mark.slow


def test_the_private_livekit_api_we_rely_on_is_still_there() -> None:
    """``_InferenceRunner`` is private in LiveKit: if any of this moves, shared inference breaks."""
    assert inspect.isabstract(_InferenceRunner)
    assert {"initialize", "run"} <= set(_InferenceRunner.__abstractmethods__)
    assert callable(_InferenceRunner.register_runner)
    assert isinstance(_InferenceRunner.registered_runners, dict)
    parameters = list(inspect.signature(InferenceProcExecutor.do_inference).parameters)
    assert parameters == ["self", "method", "data"]
    assert "inference_executor" in inspect.signature(ProcJobExecutor).parameters
    assert "inference_executor" in inspect.signature(JobContext).parameters
    assert callable(get_job_context)
    assert issubclass(SharedEngineRunner, _InferenceRunner) and SharedEngineRunner.INFERENCE_METHOD == METHOD


def test_registering_off_the_main_thread_is_a_clear_error() -> None:
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _catch(errors, enable_shared_inference))
    thread.start()
    thread.join()
    assert errors and "main thread" in str(errors[0]) and "top of your agent module" in str(errors[0])


def _catch(errors: list[BaseException], call: Any) -> None:
    try:
        call()
    except BaseException as e:
        errors.append(e)


async def test_bad_audio_is_refused_in_the_job_before_any_ipc() -> None:
    engine = SharedEngine(stt_core.registry().create("whisper"))
    # No LiveKit job here: had it tried the IPC, it would say so (ProviderUnavailable), not this.
    with pytest.raises(InvalidAudioError, match="empty"):
        await engine.transcribe(Audio.silence(0.0))


# -- the real processes ------------------------------------------------------------------------------


class Worker(OfflineWorker):
    """The worker for these tests: shared inference on, the jobs of ``shared_jobs``."""

    def __init__(self, config: Path) -> None:
        super().__init__(shared_jobs.setup, shared_jobs.entrypoint, context="spawn")  # a config per test
        self.config = config

    async def start(self) -> None:
        enable_shared_inference(self.config)
        await super().start()

    async def run_job(self, orders: dict[str, Any]) -> Any:  # type: ignore[override]
        return await super().run_job(json.dumps(orders))

    async def stats(self) -> dict[str, Any]:
        assert self.inference is not None
        return unpack(await self.inference.do_inference(METHOD, pack({"op": "engines"})) or b"")[0]

    async def aclose(self) -> None:
        await super().aclose()
        _InferenceRunner.registered_runners.pop(METHOD, None)


@pytest.fixture
async def worker(  # type: ignore[no-untyped-def]
    serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> AsyncIterator[Worker]:
    # 5 s lets the killed-process test see the hand-over soon; a test that queues many requests on
    # one engine (2 cores in CI) asks for more, so waiting its turn is not taken for a dead engine.
    attempt_timeout = getattr(request, "param", 5)
    groq = FakeGroq(text="hello from groq")
    groq.url = await serve(groq.app())
    config = tmp_path / "stt.toml"
    config.write_text(f"""
chain = ["funasr", "whisper", "groq"]
attempt_timeout = {attempt_timeout}

{FUNASR_TABLE}
{WHISPER_TABLE}
[groq]
api_key = "{KEY}"
base_url = "{groq.url}"

[livekit]
shared_inference = true
""")
    for name in ("STT_CONFIG", "STT_LIVEKIT__SHARED_INFERENCE"):
        monkeypatch.delenv(name, raising=False)  # enable_shared_inference sets them; restored after
    w = Worker(config)
    await w.start()
    yield w
    await w.aclose()
    for name in ("STT_CONFIG", "STT_LIVEKIT__SHARED_INFERENCE"):  # set for the worker's processes
        os.environ.pop(name, None)


async def _wait_for(paths: list[Path], within: float = 120) -> None:
    for _ in range(int(within / 0.05)):
        if all(p.exists() for p in paths):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {', '.join(p.name for p in paths if not p.exists())} from the jobs")


async def _reports(paths: list[Path]) -> list[dict[str, Any]]:
    await _wait_for(paths)
    return [json.loads(p.read_text()) for p in paths]


@pytest.mark.parametrize("worker", [60], indirect=True)  # 8 whisper requests wait their turn
async def test_four_job_processes_share_one_inference_process(worker: Worker, tmp_path: Path) -> None:
    start_at = time.time() + 15  # every job sends at once, so their requests meet in the engine
    paths = [tmp_path / f"job{i}.json" for i in range(4)]
    items = [{"fixture": "zh_hello"}, {"fixture": "chairs"},
             {"fixture": "lights", "chain": ["whisper", "groq"], "language": "en"}]
    await asyncio.gather(*(worker.run_job({"report": str(p), "start_at": start_at, "items": items})
                           for p in paths))
    reports = await _reports(paths)
    for report in reports:
        assert "error" not in report, report
        assert report["heavy_modules"] == []  # no torch, funasr or faster-whisper in a job process
        assert report["setup_seconds"] < 2  # ready at once: nothing to load
        by_fixture = {r["fixture"]: r for r in report["results"]}
        zh = by_fixture["zh_hello"]
        assert (zh["text"], zh["provider"]) == ("你好世界。", "funasr")
        assert by_fixture["chairs"]["text"] == "We need 25 chairs for the party."
        assert by_fixture["lights"]["provider"] == "whisper"
        assert "lights" in by_fixture["lights"]["text"].lower()
    stats = await worker.stats()
    assert stats["engines"] == ["funasr", "whisper"]
    # 8 FunASR requests from 4 processes, recognised in fewer calls: they were batched together.
    assert stats["stats"]["funasr"]["generate_calls"] < 8


async def test_a_killed_inference_process_hands_the_request_to_the_next_engine(
    worker: Worker, tmp_path: Path
) -> None:
    report, marker = tmp_path / "killed.json", tmp_path / "sending"
    # 34 s of speech through shared whisper: long enough to be in flight when the process dies.
    item = {"fixture": "fox", "repeat": 10, "chain": ["whisper", "groq"], "marker": str(marker)}
    after = {"fixture": "fox", "chain": ["whisper", "groq"]}
    await worker.run_job({"report": str(report), "items": [item]})
    await _wait_for([marker])  # the job is about to send
    await asyncio.sleep(0.5)
    assert worker.inference is not None and worker.inference.pid is not None
    os.kill(worker.inference.pid, signal.SIGKILL)
    (result,) = (await _reports([report]))[0]["results"]
    assert result["provider"] == "groq" and result["text"] == "hello from groq"
    assert result["seconds"] < 5 + 3  # within attempt_timeout (5 s) of the loss, and the groq call
    # A request after the death does not wait: LiveKit refuses it at once, and the chain moves on.
    second = tmp_path / "after.json"
    await worker.run_job({"report": str(second), "items": [after]})
    (later,) = (await _reports([second]))[0]["results"]
    assert later["provider"] == "groq" and later["seconds"] < 2


async def test_a_job_that_gives_up_frees_the_shared_engine_for_the_next(
    worker: Worker, tmp_path: Path
) -> None:
    # Measured in the inference process's CPU seconds, not in wall time: a loaded machine makes a
    # window take longer, not cost more (the wall-time version failed on a busy machine).
    assert worker.inference is not None and worker.inference.pid is not None
    inference = psutil.Process(worker.inference.pid)
    sentences = [*REFERENCES, *(f"heldout/heldout{i}" for i in range(1, 9))]
    # What one of whisper's 30 s windows costs that process, here and now: 27 s of speech.
    one = tmp_path / "one.json"
    before = _cpu(inference)
    await worker.run_job({"report": str(one), "items": [
        {"fixture": "many", "fixtures": sentences[:9], "chain": ["whisper", "groq"]}]})
    window = await _until_idle(inference) - before
    # 165 s of 14 different sentences (six windows), which the job's attempt_timeout (5 s) gives up
    # on: it falls over to groq. The inference process then finishes the window it was decoding
    # and stops: it does not decode the windows left for a job that has gone.
    gave_up = tmp_path / "gave_up.json"
    long = {"fixture": "many", "fixtures": sentences, "repeat": 4, "chain": ["whisper", "groq"]}
    await worker.run_job({"report": str(gave_up), "items": [long]})
    (result,) = (await _reports([gave_up]))[0]["results"]
    assert result["provider"] == "groq"
    left = _cpu(inference)
    after = await _until_idle(inference) - left
    assert after < 2 * window, f"the inference process worked {after:.1f} CPU-s for a job that left " \
                               f"(one window: {window:.1f})"
    fresh = tmp_path / "fresh.json"
    await worker.run_job({"report": str(fresh),
                          "items": [{"fixture": "lights", "chain": ["whisper", "groq"]}]})
    (later,) = (await _reports([fresh]))[0]["results"]
    assert later["provider"] == "whisper" and wer("lights", later["text"]) <= MAX_WER, later


def _cpu(process: psutil.Process) -> float:
    return float(sum(process.cpu_times()[:2]))


async def _until_idle(process: psutil.Process) -> float:
    """Its CPU seconds once it has stopped working (under 0.05 CPU-s in half a second)."""
    now = _cpu(process)
    for _ in range(120):
        await asyncio.sleep(0.5)
        now, before = _cpu(process), now
        if now - before < 0.05:
            return now
    raise AssertionError("the inference process never went idle")


async def test_an_agent_session_transcribes_through_the_shared_engine(worker: Worker, tmp_path: Path) -> None:
    report = tmp_path / "session.json"
    await worker.run_job({"report": str(report),
                          "agent_session": {"fixture": "lights", "chain": ["whisper", "groq"]}})
    (done,) = await _reports([report])
    assert "error" not in done, done
    heard = done["results"][0]
    assert wer("lights", heard["text"]) <= MAX_WER, heard["text"]
    assert heard["provider"] == "whisper" and done["heavy_modules"] == []


def test_no_engine_is_imported_in_a_job_process_that_builds_the_shared_chain(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "stt.toml"
    config.write_text(f'chain = ["funasr", "whisper"]\n[funasr]\nmodel = "{TINY_SENSEVOICE}"\n'
                      '[livekit]\nshared_inference = true\n')
    probe = ("import sys, stt_core_livekit as s; chain = s.configured_chain(); "
             "print([type(p).__name__ for p in chain.providers]); "
             "print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'torch', 'funasr', 'faster_whisper', 'ctranslate2'}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "STT_CONFIG": str(config)}, timeout=120, check=True)
    assert done.stdout.splitlines() == ["['SharedEngine', 'SharedEngine']", "[]"]


def test_results_a_job_gave_up_on_are_not_kept_for_ever() -> None:
    from concurrent.futures import Future

    from stt_core import Transcript

    runner = SharedEngineRunner.__new__(SharedEngineRunner)  # the bookkeeping alone, no model
    runner._tickets, runner._submitted = {}, {}
    for ticket, age, finished in (("abandoned", 61.0, True), ("fresh", 1.0, True), ("working", 600.0, False)):
        future: Future[Transcript] = Future()
        if finished:
            future.set_result(Transcript("words"))
        runner._tickets[ticket], runner._submitted[ticket] = future, time.monotonic() - age
    runner._forget_abandoned()
    assert set(runner._tickets) == set(runner._submitted) == {"fresh", "working"}
