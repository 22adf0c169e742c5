"""Load local models once per worker process, before the first job (or once per host, with
shared inference: see ``_shared``).

LiveKit starts job processes ahead of time and calls the server's setup function in each
(``AgentServer(setup_fnc=...)``, ``prewarm_fnc`` in ``WorkerOptions``). ``prewarm`` builds the
configured chain there and warms it (FunASR and faster-whisper load their models into the
process-wide caches); ``STT.from_process`` then takes that chain in the job, so the first
utterance does not pay the model load. Large models can take longer than the worker's
``initialize_process_timeout`` (10 s by default): raise it for them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import stt_core
from stt_core import Chain

from ._shared import SharedEngine, shared_inference_on

USERDATA_KEY = "stt_core.chain"


def configured_chain(config: str | Path | None = None, *, names: list[str] | None = None) -> Chain:
    """The chain stt.toml (or ``config``) declares, or of the engines ``names`` gives. With shared
    inference on, its local engines are links to LiveKit's inference process, and nothing is
    loaded in this process."""
    loaded = stt_core.load_config(config)
    shared = shared_inference_on(loaded)
    return loaded.build_chain(names=names,
                              adapt=lambda e: SharedEngine(e) if shared and e.capabilities.offline else e)


def prewarm(proc: Any, config: str | Path | None = None) -> Chain:
    """Build and warm the configured chain in a LiveKit ``JobProcess``; keep it in ``proc.userdata``.

    Use as ``AgentServer(setup_fnc=prewarm)``, or call it from your own setup function. With
    shared inference on, the local models are loaded once, in the inference process, instead.
    """
    chain = configured_chain(config)
    _run(chain.warmup())
    proc.userdata[USERDATA_KEY] = chain
    return chain


def prewarmed_chain(proc: Any) -> Chain | None:
    chain = proc.userdata.get(USERDATA_KEY)
    return chain if isinstance(chain, Chain) else None


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to the end from sync code, whether or not an event loop is running here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a loop is running: use another thread
        pool.submit(asyncio.run, coro).result()
