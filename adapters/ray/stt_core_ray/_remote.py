"""The ingress's link for a local engine deployed on Ray Serve: ``RayEngine``.

The chain in the ingress holds one in place of each local engine. It takes the engine's name, model
and capabilities (from the engine's class, built here without loading anything), converts the audio
here, and calls the engine's deployment through its handle.

What can go wrong between the two, and what the chain sees:

- the replica dies, restarts or goes away under the request (``ActorDiedError``,
  ``ActorUnavailableError``, ``ReplicaUnavailableError``): the request goes to another replica, up to
  ``[ray] reroutes`` times, since one replica's death is what the others are there for (a breaker
  opened by it would turn every request away from the healthy ones); past that, a retryable
  ``ProviderError``, which the chain retries or falls over on;
- the engine failed in the replica: its own error, as the engine raised it;
- the deployment has no healthy replica (none running, or it failed to deploy): the engine cannot
  serve now, ``ProviderUnavailable``; the chain passes it without a call, ``/ready`` leaves it out,
  and its ``health()`` says no until a replica runs again. The ingress looks every
  ``status_interval`` seconds (``serve.status()``), so a request never waits on the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from stt_core import Audio, Provider, ProviderError, ProviderUnavailable, STTError, Transcript

from ._replica import RATE, EngineCall

logger = logging.getLogger("stt_core.ray")
REPLICA_GONE = (ActorDiedError, ActorUnavailableError, RayActorError, ReplicaUnavailableError)
FAILED = {"UNHEALTHY", "DEPLOY_FAILED"}  # a deployment's status when its replicas cannot start


@dataclass(frozen=True)
class Replicas:
    """What Serve last said of a deployment's replicas."""

    states: dict[str, int]
    status: str
    cold_start_allowed: bool = False  # autoscaling from zero: no replica is no fault

    @property
    def running(self) -> int:
        return self.states.get("RUNNING", 0)

    def unavailable(self, name: str) -> str | None:
        if self.running or (self.cold_start_allowed and self.status not in FAILED):
            return None
        said = ", ".join(f"{count} {state.lower()}" for state, count in sorted(self.states.items()))
        return (f"{name} has no healthy replica on Ray Serve ({said or 'none'}; "
                f"deployment {self.status.lower()})")


def state_name(state: object) -> str:
    """A replica's or deployment's state as Serve names it ("RUNNING"): typed as an enum, though
    ``serve.status()`` gives plain strings."""
    return str(getattr(state, "value", state))


class RayEngine(Provider):
    """A chain link for a local engine served by its Ray Serve deployment."""

    name = "ray"

    def __init__(self, local: Provider, handle: DeploymentHandle[Any], *, app: str, reroutes: int = 2,
                 status_interval: float = 1.0, engine_wait: float = 120.0,
                 cold_start_allowed: bool = False) -> None:
        super().__init__()
        self.name = local.name  # type: ignore[misc]  # answers as the engine it stands for
        self.capabilities = local.capabilities
        self._model = local.model
        self._handle = handle
        self._app, self._reroutes, self._interval = app, reroutes, status_interval
        self._engine_wait = engine_wait
        self._cold_start_allowed = cold_start_allowed
        self.replicas: Replicas | None = None  # None until Serve first answers
        self._watcher: asyncio.Task[None] | None = None

    @property
    def model(self) -> str | None:
        return self._model

    def why_unavailable(self) -> str | None:
        return None if self.replicas is None else self.replicas.unavailable(self.name)

    async def health(self) -> bool:
        await self._look()
        return self.why_unavailable() is None

    async def warmup(self) -> None:
        """Wait for the deployment's first replica (its model loads there), as plain ``stt-core
        serve`` loads its models before the port opens, then keep watching. Serve starts the
        ingress beside the engines; an engine that has no replica after ``[ray] engine_wait`` (no
        node can place it, say) is reported unavailable rather than holding the server back."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._engine_wait
        await self._look()
        while self.why_unavailable() and loop.time() < deadline and not self._failed():
            await asyncio.sleep(0.2)
            await self._look()
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def _failed(self) -> bool:
        return self.replicas is not None and self.replicas.status in FAILED

    async def _aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._look()

    async def _look(self) -> None:
        if not ray.is_initialized():  # not in a replica (a test of the link): serve.status() would start Ray
            return
        try:
            status = await asyncio.to_thread(serve.status)
            deployment = status.applications[self._app].deployments[self.name]
        except Exception as e:  # the controller is away for a moment: keep what it last said
            logger.info("%s: cannot read its replicas from Serve: %s: %s", self.name, type(e).__name__, e)
            return
        states = {state_name(state): count for state, count in deployment.replica_states.items()}
        self.replicas = Replicas(states, state_name(deployment.status), self._cold_start_allowed)

    async def _transcribe(
        self, audio: Audio, *, language: str | None, prompt: str | None, word_timestamps: bool
    ) -> Transcript:
        call = EngineCall(audio.to(RATE, 1, "int16"), language, prompt, word_timestamps)
        gone: BaseException | None = None
        for _ in range(self._reroutes + 1):
            try:
                return await self._call(call)
            except REPLICA_GONE as e:
                gone = e
                logger.warning("%s: a replica went away under a request (%s); sending it to another",
                               self.name, type(e).__name__)
        raise ProviderError(f"{self.name}: its replica went away under this request "
                            f"{self._reroutes + 1} times ({type(gone).__name__})",
                            provider=self.name, retryable=True) from gone

    async def _call(self, call: EngineCall) -> Transcript:
        response = self._handle.transcribe.remote(call)
        try:
            result: Transcript = await response
            return result
        except asyncio.CancelledError:  # the chain gave up on it (timeout, hedge, client gone)
            response.cancel()
            raise
        except RayTaskError as e:
            if isinstance(e.cause, STTError):  # the engine's own error, raised in the replica
                raise e.cause from e
            raise ProviderError(f"{self.name} failed in its replica: {e.cause!r}", provider=self.name,
                                retryable=True) from e
        except DeploymentUnavailableError as e:
            raise ProviderUnavailable(f"{self.name}: its deployment failed to deploy",
                                      provider=self.name) from e
        except BackPressureError as e:  # every replica holds max_ongoing_requests and the queue is full
            raise ProviderError(f"{self.name}: every replica is busy ({e})", provider=self.name,
                                retryable=True, status_code=503) from e
