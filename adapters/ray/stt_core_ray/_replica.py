"""One local engine of the chain as a Ray Serve deployment, named after the engine.

Each replica builds its engine from the config the application was built with (read once, where
the application was built, and sent along: a worker on another node has no stt.toml) and loads the
model once, in its constructor, before Serve sends it a request. An engine that batches (funasr's
``max_batch``) gets its requests through ``@serve.batch``: what arrives from every ingress within
``batch_wait_timeout`` goes to the engine together, which recognises it in one call.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

import ray
from ray import serve

from stt_core import Audio, LoadedConfig, Provider, ProviderUnavailable, Transcript

RATE = 16_000  # what goes to a replica: 16 kHz mono int16, what the local engines take
_BATCHES_KEPT = 1000  # recent batch sizes a replica reports in stats()


@dataclass(frozen=True)
class EngineCall:
    """One request to an engine's replica, as the ingress sends it."""

    audio: Audio
    language: str | None = None
    prompt: str | None = None
    word_timestamps: bool = False


def batch_size(engine: Provider) -> int:
    """How many requests ``engine`` recognises in one call: its ``max_batch`` setting (funasr's),
    or 1 for an engine that takes one at a time."""
    size = getattr(engine.settings, "max_batch", 1)
    return size if isinstance(size, int) and size > 1 else 1


class EngineReplica:
    """A replica of one local engine; ``transcribe`` is what the ingress calls."""

    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
        self, config: LoadedConfig, name: str, batch_wait_timeout: float
    ) -> None:
        self.engine = config.build_engine(name)
        if reason := self.engine.why_unavailable():  # fails the replica: Serve says why, and retries
            raise ProviderUnavailable(f"{name} cannot serve on this node: {reason}", provider=name)
        await self.engine.warmup()  # the model, once per replica, before the first request
        self.batch = batch_size(self.engine)
        batcher = cast(Any, self._batched)  # Serve's batch handler, typed as the method it wraps
        batcher.set_max_batch_size(self.batch)
        batcher.set_batch_wait_timeout_s(batch_wait_timeout)
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.node = ray.get_runtime_context().get_node_id()
        self.requests = 0
        self.in_flight = 0
        self.batches: deque[int] = deque(maxlen=_BATCHES_KEPT)

    async def transcribe(self, call: EngineCall) -> Transcript:
        self.requests += 1
        self.in_flight += 1
        try:
            if self.batch == 1:
                return await self._one(call)
            result = await self._batched(call)
        finally:
            self.in_flight -= 1
        if isinstance(result, BaseException):  # Serve raises a batch's exceptions itself; to be sure
            raise result
        return result

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)  # both set from config in __init__
    async def _batched(self, calls: list[EngineCall]) -> list[Transcript | BaseException]:
        self.batches.append(len(calls))
        # All at once: the engine's own queue takes them as one batch (one generate() call).
        return await asyncio.gather(*(self._one(call) for call in calls), return_exceptions=True)

    async def _one(self, call: EngineCall) -> Transcript:
        result = await self.engine.transcribe(call.audio, language=call.language, prompt=call.prompt,
                                              word_timestamps=call.word_timestamps)
        where = {"replica": self.replica, "node": self.node}
        return result.replace(metadata={**result.metadata, "ray": where})

    def stats(self) -> dict[str, Any]:
        """What this replica did, for tests, benchmarks and a curious operator."""
        return {"replica": self.replica, "node": self.node, "pid": os.getpid(), "requests": self.requests,
                "in_flight": self.in_flight, "batches": list(self.batches),
                "omp_threads": os.environ.get("OMP_NUM_THREADS")}

    async def __del__(self) -> None:  # Serve awaits it when it stops the replica
        if engine := getattr(self, "engine", None):  # None when the constructor failed
            await engine.aclose()
