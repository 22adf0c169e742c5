"""Fixtures shared by every test tree."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

import fakes

Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start aiohttp apps on 127.0.0.1 (a free port each); returns each one's base URL.

    The fakes of cloud APIs run here: real sockets and the real wire protocol, stopped after the test.
    """
    runners: list[web.AppRunner] = []

    async def serve_app(app: web.Application) -> str:
        runner, url = await fakes.start(app)
        runners.append(runner)
        return url

    yield serve_app
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def serve_in_thread() -> Iterator[Callable[[web.Application], str]]:
    """Like ``serve``, on an event loop of its own in a thread: for synchronous tests (the
    conformance suite runs its own loops, which would starve a server on the test's loop)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runners: list[web.AppRunner] = []

    def serve_app(app: web.Application) -> str:
        runner, url = asyncio.run_coroutine_threadsafe(fakes.start(app), loop).result(timeout=10)
        runners.append(runner)
        return url

    yield serve_app
    for runner in runners:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


@pytest.fixture(scope="session")
def dists() -> Path:
    """``dist/``: every distribution's wheel and sdist, twine-checked, made once per run by the
    README's own command (``make dists``; tests/test_install.py holds the README to it)."""
    root = Path(__file__).parents[1]
    # `make test` runs two pytest-xdist workers, each with a session of its own: the first to come
    # makes dist/ under a lock, the other finds it made for the same run (they share its id), so
    # neither deletes the files the other is installing from.
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", f"pid-{os.getpid()}")
    made_for = Path(tempfile.gettempdir()) / f"stt-core-dists-{hashlib.sha256(bytes(root)).hexdigest()[:16]}"
    with open(f"{made_for}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (made_for.is_file() and made_for.read_text() == run and (root / "dist").is_dir()):
            # -o: never redo the set-up under a running session (a pyproject.toml newer than the
            # venv's stamp would reinstall the environment the tests run in); `make test` did it.
            made = subprocess.run(["make", "-o", ".venv/.installed", "dists"], cwd=root, capture_output=True,
                                  text=True, timeout=600)
            assert made.returncode == 0, made.stdout + made.stderr
            made_for.write_text(run)
    return root / "dist"
