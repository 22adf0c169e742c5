"""The ``[ray]`` table (``STT_RAY__<FIELD>``): how the chain's local engines run on Ray Serve.

    [ray]                       # every local engine of the chain, one deployment each
    replicas = 2
    num_cpus = 1
    [ray.autoscaling]           # instead of a fixed count
    min_replicas = 1
    max_replicas = 4
    [ray.engines.funasr]        # one engine's own settings, over [ray]'s
    num_gpus = 1

Apart from the application so that ``stt-core config show`` reads it without importing Ray.
"""

from __future__ import annotations

import math
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

import stt_core
from stt_core import ConfigError

SECTION = "ray"
_MODEL = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Autoscaling(BaseModel):
    """``[ray.autoscaling]``: Serve adds and removes replicas to keep each one's ongoing requests
    near ``target_ongoing_requests``."""

    model_config = _MODEL
    min_replicas: int = Field(1, ge=0, le=1000)
    """0 lets an idle engine scale to nothing; its first request then waits for a replica to load."""
    max_replicas: int = Field(4, ge=1, le=1000)
    target_ongoing_requests: float = Field(2.0, gt=0, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) is above max_replicas "
                             f"({self.max_replicas})")
        return self


class Replicas(BaseModel):
    """How one engine's deployment runs: ``[ray]`` for every local engine, ``[ray.engines.NAME]``
    for one (the keys it sets win)."""

    model_config = _MODEL
    replicas: int = Field(1, ge=1, le=1000)
    """Replicas of the engine, each loading its model once; ``[ray.autoscaling]`` instead varies it."""
    autoscaling: Autoscaling | None = None
    num_cpus: float = Field(1.0, ge=0, le=1024)
    """CPUs Ray reserves for each replica (where it places it; Ray does not pin threads)."""
    num_gpus: float = Field(0.0, ge=0, le=64)
    """GPUs per replica: Ray places the replica on a node with one and sets CUDA_VISIBLE_DEVICES
    (the engine must be told to use it too: ``[funasr] device = "cuda:0"``)."""
    threads: int | None = Field(None, ge=1, le=1024)
    """OMP_NUM_THREADS in each replica; unset: ``num_cpus`` rounded up (Ray's own default is
    ``num_cpus``, and 1 for a fraction of a CPU)."""
    max_ongoing_requests: int | None = Field(None, ge=1, le=10_000)
    """Requests one replica holds at once; unset: twice the engine's batch (funasr's
    ``max_batch``), or Ray's 5 for an engine that does not batch. Never below the batch."""
    batch_wait_timeout: float = Field(0.01, ge=0, le=10)
    """Seconds a batching engine's replica waits for more requests to join a batch."""
    max_replicas_per_node: int | None = Field(None, ge=1, le=1000)
    """1 spreads the replicas over as many nodes."""

    @model_validator(mode="after")
    def _one_way_to_count(self) -> Self:
        if {"replicas", "autoscaling"} <= self.model_fields_set and self.autoscaling is not None:
            raise ValueError("set replicas or an autoscaling table, not both")
        return self

    @property
    def omp_threads(self) -> int:
        return self.threads or max(1, math.ceil(self.num_cpus))

    def max_ongoing(self, batch: int) -> int:
        """``max_ongoing_requests`` for an engine that batches ``batch`` requests (1: it does not):
        at least a batch, or Serve would never hand a replica a whole one (Ray only warns)."""
        if self.max_ongoing_requests is None:
            return 2 * batch if batch > 1 else 5
        if self.max_ongoing_requests < batch:
            raise ConfigError(f"[{SECTION}] max_ongoing_requests = {self.max_ongoing_requests} is below the "
                              f"engine's batch of {batch} requests (max_batch): a replica would never get "
                              "a whole batch; raise it, or lower the engine's max_batch")
        return self.max_ongoing_requests


class RaySettings(Replicas):
    """The ``[ray]`` table."""

    ingress_replicas: int = Field(1, ge=1, le=1000)
    """Replicas of the HTTP ingress (the app of ``stt-core serve``, running the chain); each
    applies ``[serve]``'s ``max_concurrent`` and ``max_waiting`` to its own requests."""
    ingress_num_cpus: float = Field(1.0, ge=0, le=1024)
    """CPUs per ingress replica: it decodes uploads and calls the cloud engines."""
    reroutes: int = Field(2, ge=0, le=10)
    """Times a request whose replica died under it is sent to another replica before the chain
    is told the engine failed (it then retries or falls over, by its own rules)."""
    status_interval: float = Field(1.0, gt=0, le=600)
    """Seconds between the ingress's looks at each engine's healthy replicas (``/ready``)."""
    engine_wait: float = Field(120.0, ge=0, le=3600)
    """Seconds the ingress waits for each engine's first replica before it takes requests without
    it (no node can place it, say); the engine joins the chain when a replica runs."""
    app_name: str = Field("stt-core", min_length=1, max_length=100)
    """The application's name on the cluster (``stt-core serve --ray``; ``serve run`` takes ``--name``)."""
    route_prefix: str = Field("/", pattern=r"^/[A-Za-z0-9/_.-]*$", max_length=200)
    """Where the proxies route to it (``stt-core serve --ray``; ``serve run`` takes ``--route-prefix``)."""
    engines: dict[str, Replicas] = Field(default_factory=dict)
    """``[ray.engines.NAME]``: one engine's own settings, over the ones above."""

    def engine(self, name: str) -> Replicas:
        """Engine ``name``'s settings: ``[ray]``'s, with its own table's keys over them."""
        shared = self.model_dump(include=set(Replicas.model_fields), exclude_unset=True)
        own = self.engines[name].model_dump(exclude_unset=True) if name in self.engines else {}
        if own.keys() & {"replicas", "autoscaling"}:  # its own way of counting replaces [ray]'s
            shared = {key: value for key, value in shared.items() if key not in {"replicas", "autoscaling"}}
        return Replicas(**(shared | own))


def ray_settings(config: stt_core.LoadedConfig) -> RaySettings:
    """The ``[ray]`` table of ``config``; a bad key or value is a ``ConfigError`` naming it."""
    return config.table(SECTION, RaySettings)


def as_options(replicas: Replicas, batch: int) -> dict[str, Any]:
    """Serve's deployment options for an engine with these settings that batches ``batch``."""
    count: dict[str, Any] = (
        {"autoscaling_config": replicas.autoscaling.model_dump()} if replicas.autoscaling
        else {"num_replicas": replicas.replicas}
    )
    per_node = replicas.max_replicas_per_node
    placement = {"max_replicas_per_node": per_node} if per_node else {}
    return count | placement | {
        "max_ongoing_requests": replicas.max_ongoing(batch),
        "ray_actor_options": {
            "num_cpus": replicas.num_cpus, "num_gpus": replicas.num_gpus,
            # Set by us, not left to Ray: its default follows num_cpus, and a thread count that
            # follows a placement setting by accident is the trap this avoids.
            "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(replicas.omp_threads)}},
        },
    }
