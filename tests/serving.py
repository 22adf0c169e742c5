"""``stt-core serve`` for the serve tests: as a user starts it, in its own process, or its app on
uvicorn in a thread of this one (``running``); and the engines' tables of a test's stt.toml."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import uvicorn

from speech import TINY_SENSEVOICE
from stt_core import Chain
from stt_core.server import ServeSettings, create_app

# The engines a test's stt.toml declares: the tiny SenseVoice the tests build (no VAD of its own,
# one thread, no free-memory floor), and the bundled whisper tiny.en on one thread (two test
# workers share two cores).
FUNASR_TABLE = f'[funasr]\nmodel = "{TINY_SENSEVOICE}"\nvad = "none"\nncpu = 1\nmin_free_memory_gb = 0\n'
WHISPER_TABLE = '[whisper]\nmodel = "bundled"\ncpu_threads = 1\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """``stt-core serve`` as a user starts it, on a free port; stopped (SIGTERM) at the end."""

    def __init__(self, tmp: Path, config: str, *args: str) -> None:
        self.port = free_port()
        (tmp / "stt.toml").write_text(config)
        self.log = tmp / "serve.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stt_core.cli", "serve", "--port", str(self.port), *args],
            cwd=tmp, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            env={**os.environ, "STT_CONFIG": str(tmp / "stt.toml")},
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"stt-core serve did not start: {self.log.read_text()}")

    async def wait_until_transcribing(self) -> None:
        """Until the server has spent 0.2 s of CPU past its idle state: a request is in flight (a
        fixed sleep guessed how long it takes, and on a fast machine it had already finished)."""
        process = psutil.Process(self.process.pid)
        idle = sum(process.cpu_times()[:2])
        for _ in range(3000):
            if sum(process.cpu_times()[:2]) - idle >= 0.2:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the server never started transcribing: {self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM, as a process manager stops it: a clean shutdown (uvicorn then re-raises the
        signal, so the exit status says SIGTERM, as a well-behaved server's does)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in self.log.read_text()


@contextlib.asynccontextmanager
async def running(chain: Chain, **settings: object) -> AsyncIterator[str]:
    """The app on uvicorn, on a thread of its own (its own loop); the test's loop stays free to
    run the fake APIs the chain calls."""
    config = uvicorn.Config(create_app(chain, ServeSettings(**settings)), host="127.0.0.1",  # type: ignore[arg-type]
                            port=free_port(), lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
