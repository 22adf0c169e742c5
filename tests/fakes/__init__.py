"""Fake cloud APIs on 127.0.0.1 that speak the real wire protocols (see each module)."""

from __future__ import annotations

from aiohttp import web


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on 127.0.0.1 (a free port) in the running loop: its runner, to clean up
    with, and its base URL."""
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"
