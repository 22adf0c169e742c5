"""One copy of each local model per worker host, in LiveKit's inference process, shared by every job.

LiveKit runs each job in its own process; loading FunASR or faster-whisper in each would hold one
model copy per process and make every new process wait for a load. As LiveKit's turn detector does,
this registers an inference runner: the worker starts one inference process, the runner loads the
chain's local engines there once (before the worker takes jobs), and in each job the chain gets a
``SharedEngine`` link in place of each local engine, which reaches the runner over LiveKit's IPC.

LiveKit's inference process serves requests one at a time, so a request is two messages: *submit*
(queued on the engine at once, where requests from all sessions batch together) and *collect*
(which waits at most ``COLLECT_WAIT`` and is repeated until the answer is there), so no session's
long utterance holds the others' requests back.

When the inference process dies, LiveKit (1.8) does not restart it: the worker's health check
reports 503, a request in flight is never answered and a later one fails at once. The chain bounds
the first with ``attempt_timeout`` and passes the engine for the rest: its cloud engines answer.

``_InferenceRunner`` is private in LiveKit; the tested range is pinned in this dist's
pyproject.toml and ``tests/livekit/test_shared.py`` fails loudly if its API moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import threading
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from livekit.agents import get_job_context
from livekit.agents.inference_runner import _InferenceRunner
from pydantic import BaseModel, ConfigDict

import stt_core
from stt_core import Audio, ConfigError, Provider, ProviderError, ProviderUnavailable, STTError, Transcript

METHOD = "stt_core.transcribe"
SETTINGS_SECTION = "livekit"
SWITCH_ENV = "STT_LIVEKIT__SHARED_INFERENCE"
COLLECT_WAIT = 0.02  # seconds one collect may hold LiveKit's inference loop
ABANDONED_AFTER = 60.0  # seconds an uncollected result is kept (its job gave up on it)
RATE = 16_000  # what goes over the IPC: 16 kHz mono int16, what the local engines take


class LiveKitSettings(BaseModel):
    """``[livekit]`` in stt.toml (``STT_LIVEKIT__<FIELD>``)."""

    model_config = ConfigDict(extra="forbid")
    shared_inference: bool = False
    """Serve the chain's local engines from LiveKit's inference process: one model per host."""


# -- switching it on -----------------------------------------------------------------------------


def enable_shared_inference(config: str | Path | None = None) -> None:
    """Serve local engines from LiveKit's inference process (one model per host).

    Call it at the top of the agent module, where it runs on import in the main thread, before
    the worker starts (as ``cli.run_app``). ``[livekit] shared_inference = true`` in stt.toml does
    the same on ``import stt_core_livekit``.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "enable_shared_inference() must run in the main thread before the worker starts: "
            "call it at the top of your agent module, not in a setup function or a job"
        )
    if config is not None:
        os.environ[stt_core.CONFIG_ENV] = str(Path(config).resolve())  # the processes LiveKit starts
    os.environ[SWITCH_ENV] = "true"  # job processes start later and inherit it
    if METHOD not in _InferenceRunner.registered_runners:
        _InferenceRunner.register_runner(SharedEngineRunner)


def shared_inference_on(config: stt_core.LoadedConfig) -> bool:
    return config.table(SETTINGS_SECTION, LiveKitSettings).shared_inference


def register_if_configured() -> None:
    """On ``import stt_core_livekit`` in a worker's main thread: register when stt.toml asks."""
    child = multiprocessing.parent_process() is not None
    if child or threading.current_thread() is not threading.main_thread():
        return  # a LiveKit child process, or an import off the main thread: not where it registers
    try:
        on = shared_inference_on(stt_core.load_config())
    except ConfigError:
        return  # a bad config is reported where the chain is built, with its context
    if on:
        enable_shared_inference()


# -- the inference process side ------------------------------------------------------------------


class SharedEngineRunner(_InferenceRunner):
    """Runs in LiveKit's inference process: the chain's local engines, loaded once, for every job."""

    INFERENCE_METHOD = METHOD

    def initialize(self) -> None:
        chain = stt_core.load_config().build_chain()  # STT_CONFIG or ./stt.toml, as the worker read
        self.engines = {p.name: p for p in chain.providers if p.capabilities.offline}  # local ones
        self._tickets: dict[str, Future[Transcript]] = {}
        self._submitted: dict[str, float] = {}  # when each ticket came in
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="stt-core-shared", daemon=True).start()
        for engine in self.engines.values():  # loaded before the worker takes its first job
            asyncio.run_coroutine_threadsafe(engine.warmup(), self._loop).result()

    def run(self, data: bytes) -> bytes | None:
        header, pcm = unpack(data)
        op = header["op"]
        if op == "submit":
            return self._submit(header, pcm)
        if op == "collect":
            return self._collect(str(header["ticket"]))
        if op == "cancel":
            return self._cancel(str(header["ticket"]))
        if op == "engines":
            return pack({"engines": sorted(self.engines), "stats": self._stats()})
        raise ValueError(f"unknown operation {op!r}")

    def _submit(self, header: dict[str, Any], pcm: bytes) -> bytes:
        engine = self.engines.get(str(header["engine"]))
        if engine is None:
            return pack({"error": ProviderUnavailable(
                f"{header['engine']} is not a local engine of the inference process's chain "
                f"({', '.join(self.engines) or 'none'})").to_dict()})
        self._forget_abandoned()
        audio = Audio.from_bytes(pcm, sample_rate=RATE)
        ticket = uuid.uuid4().hex
        self._submitted[ticket] = time.monotonic()
        self._tickets[ticket] = asyncio.run_coroutine_threadsafe(
            engine.transcribe(audio, language=header.get("language"), prompt=header.get("prompt"),
                              word_timestamps=bool(header.get("word_timestamps"))),
            self._loop,
        )
        return pack({"ticket": ticket})

    def _forget_abandoned(self) -> None:
        """Results no job came back for (it gave up: its attempt_timeout) are not kept for ever."""
        now = time.monotonic()
        for ticket, future in list(self._tickets.items()):
            if future.done() and now - self._submitted[ticket] > ABANDONED_AFTER:
                del self._tickets[ticket], self._submitted[ticket]

    def _collect(self, ticket: str) -> bytes:
        future = self._tickets.get(ticket)
        if future is None:
            return pack({"error": ProviderError("unknown ticket", retryable=True).to_dict()})
        try:
            result = future.result(timeout=COLLECT_WAIT)
        except TimeoutError:  # concurrent.futures.TimeoutError is this class since Python 3.11
            return pack({"pending": True})
        except STTError as e:
            answer = {"error": e.to_dict()}
        except Exception as e:  # the base class maps engine errors; this is a last net
            answer = {"error": ProviderError(f"{type(e).__name__}: {e}", retryable=True).to_dict()}
        else:
            answer = {"transcript": result.to_dict()}
        del self._tickets[ticket], self._submitted[ticket]  # answered: nothing left to keep
        return pack(answer)

    def _cancel(self, ticket: str) -> bytes:
        """The job gave up (its attempt_timeout, a fall-over, the job ended): stop the work, so it
        does not hold the engine for other jobs (a queued FunASR request is dropped, whisper stops
        at its next window)."""
        future = self._tickets.pop(ticket, None)
        self._submitted.pop(ticket, None)
        if future is not None:
            future.cancel()
        return pack({"cancelled": future is not None})

    def _stats(self) -> dict[str, Any]:
        """What each engine did (for tests and benchmarks): FunASR's count of batched calls."""
        return {name: {"generate_calls": getattr(getattr(engine, "_engine", None), "generate_calls", None)}
                for name, engine in self.engines.items()}


# -- the job side ----------------------------------------------------------------------------------


class SharedEngine(Provider):
    """A chain link in a job process for a local engine served by the inference process.

    It takes the engine's name, model and capabilities (from the engine's class, built here without
    loading anything), validates and converts the audio here, and sends it over LiveKit's IPC.
    """

    name = "shared"

    def __init__(self, local: Provider) -> None:
        super().__init__()
        self.named(local.name)  # answers as the engine it stands for
        self.capabilities = local.capabilities
        self._model = local.model

    @property
    def model(self) -> str | None:
        return self._model

    async def _transcribe(
        self, audio: Audio, *, language: str | None, prompt: str | None, word_timestamps: bool
    ) -> Transcript:
        header = {"op": "submit", "engine": self.name, "language": language, "prompt": prompt,
                  "word_timestamps": word_timestamps}
        answer = await self._call(header, audio.to(RATE, 1, "int16").pcm_bytes())
        ticket = answer["ticket"]
        try:
            while True:
                answer = await self._call({"op": "collect", "ticket": ticket})
                if not answer.get("pending"):
                    return Transcript.from_dict(answer["transcript"])
        except asyncio.CancelledError:  # the chain or the job gave up: free the engine for others
            with contextlib.suppress(Exception):  # the inference process may be gone: nothing to free
                await asyncio.shield(self._call({"op": "cancel", "ticket": ticket}))
            raise

    async def _call(self, header: dict[str, Any], pcm: bytes = b"") -> dict[str, Any]:
        try:
            executor = get_job_context().inference_executor  # every LiveKit job has one (1.8)
        except RuntimeError as e:  # no job context
            raise ProviderUnavailable(f"{self.name} is shared through LiveKit's inference process, and "
                                      "this is not a LiveKit job", provider=self.name) from e
        try:
            data = await executor.do_inference(METHOD, pack(header, pcm))
        except RuntimeError as e:  # LiveKit reports every failure of the call this way
            raise _ipc_error(self.name, str(e)) from e
        answer = unpack(data or b"")[0]
        if "error" in answer:
            raise STTError.from_dict(answer["error"], provider=self.name)
        return answer


def _ipc_error(name: str, message: str) -> STTError:
    if "no inference executor" in message or f"'{METHOD}'" in message:
        return ProviderUnavailable(
            f"{name}: shared inference is on, but the worker has no stt-core inference runner: call "
            "stt_core_livekit.enable_shared_inference() at the top of the agent module (or set "
            "[livekit] shared_inference = true in the stt.toml the worker reads)", provider=name)
    return ProviderError(f"{name}: LiveKit's inference process failed: {message}", provider=name,
                         retryable=True)


# -- the wire: a JSON header and raw PCM ------------------------------------------------------------


def pack(header: dict[str, Any], pcm: bytes = b"") -> bytes:
    encoded = json.dumps(header).encode()
    return len(encoded).to_bytes(4, "big") + encoded + pcm


def unpack(data: bytes) -> tuple[dict[str, Any], bytes]:
    size = int.from_bytes(data[:4], "big")
    return json.loads(data[4:4 + size]), data[4 + size:]
