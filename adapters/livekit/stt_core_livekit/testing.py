"""Run real LiveKit job processes without a LiveKit server: for tests and benchmarks of agents.

``OfflineWorker`` does what a LiveKit worker does with its processes, minus the connection (and
with LiveKit's own process kinds: a forkserver on Linux, spawn elsewhere): it
starts LiveKit's inference process when runners are registered (``enable_shared_inference``), and
runs fake jobs (as ``console`` mode does, with a mock room) in ``ProcJobExecutor`` processes with
your setup and entrypoint functions. Both functions must be importable by name (module level), as
for any LiveKit worker.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from livekit.agents.inference_runner import _InferenceRunner
from livekit.agents.ipc.inference_proc_executor import InferenceProcExecutor
from livekit.agents.ipc.job_proc_executor import ProcJobExecutor
from livekit.agents.job import JobAcceptArguments, RunningJobInfo
from livekit.protocol import agent as agent_proto
from livekit.protocol import models


class OfflineWorker:
    """``context``: how job processes start, LiveKit's default by default (a forkserver on Linux,
    with ``preload`` imported once in it, as the worker does with plugin packages). A forkserver
    keeps the environment it started with: a process that runs several workers with different
    settings (tests) wants ``"spawn"``."""

    def __init__(self, setup: Callable[[Any], Any], entrypoint: Callable[[Any], Awaitable[None]], *,
                 context: str = "forkserver" if sys.platform.startswith("linux") else "spawn",
                 preload: Sequence[str] = ("stt_core_livekit",)) -> None:
        self.setup, self.entrypoint = setup, entrypoint
        self.mp_ctx: Any = multiprocessing.get_context(context)
        if context == "forkserver":
            self.mp_ctx.set_forkserver_preload(
                [*preload, "livekit.agents.ipc._preload", "livekit.agents.ipc._preload_freeze"])
        self.inference: InferenceProcExecutor | None = None
        self.jobs: list[ProcJobExecutor] = []

    async def start(self) -> None:
        """Start the inference process if any runner is registered, as the worker does."""
        if not _InferenceRunner.registered_runners:
            return
        self.inference = InferenceProcExecutor(
            runners=dict(_InferenceRunner.registered_runners), initialize_timeout=5 * 60, close_timeout=5,
            memory_warn_mb=0, memory_limit_mb=0, ping_interval=5, ping_timeout=60, high_ping_threshold=2.5,
            mp_ctx=self.mp_ctx, loop=asyncio.get_running_loop(), http_proxy=None,
        )
        await self.inference.start()
        await self.inference.initialize()  # the runners load their models before any job

    async def start_process(self) -> ProcJobExecutor:
        """A new job process, set up (the setup function has run) and ready for a job."""
        process = ProcJobExecutor(
            initialize_process_fnc=self.setup, job_entrypoint_fnc=self.entrypoint,
            session_end_fnc=None, simulation_end_fnc=None, inference_executor=self.inference,
            initialize_timeout=5 * 60, close_timeout=10, session_end_timeout=10, memory_warn_mb=0,
            memory_limit_mb=0, ping_interval=2.5, ping_timeout=60, high_ping_threshold=2.5,
            http_proxy=None, mp_ctx=self.mp_ctx, loop=asyncio.get_running_loop(),
        )
        await process.start()
        await process.initialize()
        self.jobs.append(process)
        return process

    async def run_job(self, metadata: str, process: ProcJobExecutor | None = None) -> ProcJobExecutor:
        """Launch a fake job (its metadata: ``metadata``) in ``process``, or in a new one."""
        process = process or await self.start_process()
        job = agent_proto.Job(id=f"job-{time.monotonic_ns()}", type=agent_proto.JobType.JT_ROOM,
                              metadata=metadata, room=models.Room(name="offline", sid="RM_offline"))
        await process.launch_job(RunningJobInfo(
            accept_arguments=JobAcceptArguments(identity="agent", name="", metadata=""),
            job=job, url="", token="", worker_id="offline", fake_job=True,
        ))
        return process

    async def aclose(self) -> None:
        for process in self.jobs:
            await process.aclose()
        self.jobs.clear()
        if self.inference is not None and self.inference.started:
            await self.inference.aclose()
