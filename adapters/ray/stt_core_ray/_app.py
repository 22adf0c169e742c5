"""stt-core's server as a Ray Serve application: an HTTP ingress and a deployment per local engine.

    HTTP ─► Serve's proxy (every node) ─► ingress: the app of ``stt-core serve`` and the chain
                                            ├─► cloud engines, called from here
                                            └─► RayEngine ─► handle ─► deployment "funasr" (replicas)
                                                                   └─► deployment "whisper" (replicas)

The application is built where ``serve run`` (or ``stt-core serve --ray``) runs: stt.toml and the
environment are read there, every table is validated there, and the config travels to the replicas
with the deployments, so no node needs a copy of stt.toml.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ray import serve

import stt_core
from stt_core import ConfigError, LoadedConfig, Provider
from stt_core.server import SECTION, ServeSettings, create_app

from ._remote import RayEngine
from ._replica import EngineReplica, batch_size
from ._settings import RaySettings, as_options, ray_settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from ray.serve import Application
    from ray.serve.handle import DeploymentHandle

logger = logging.getLogger("stt_core.ray")
INGRESS = "ingress"  # the ingress deployment's name; each engine's is the engine's


@dataclass(frozen=True)
class IngressOptions:
    names: list[str] | None  # the chain, when not the config's own (stt-core serve --chain)
    serving: ServeSettings
    reroutes: int
    status_interval: float
    engine_wait: float
    cold_start_allowed: frozenset[str]  # engines autoscaled from zero


def build_app(
    config: LoadedConfig, *, names: list[str] | None = None, serving: ServeSettings | None = None
) -> Application:
    """The application for ``config``'s chain (``names``, if given): an ingress serving ``serving``
    (default: the config's ``[serve]``) and a deployment per local engine, set up by ``[ray]``."""
    settings = ray_settings(config)
    serving = serving or serve_settings(config)
    chain = config.build_chain(names=names)  # every table validated here; no model is loaded
    local = {engine.name: engine for engine in chain.providers if _deployable(engine)}
    _check_engine_tables(config, settings, chain.providers)
    if INGRESS in local:
        raise ConfigError(f"an engine named {INGRESS!r} would share its deployment's name with the ingress")
    engines = {name: _engine_deployment(config, settings, name, engine) for name, engine in local.items()}
    cold = frozenset(name for name in local
                     if (scaling := settings.engine(name).autoscaling) and scaling.min_replicas == 0)
    ingress = serve.deployment(
        name=INGRESS, num_replicas=settings.ingress_replicas,
        # The server's own gate answers past max_concurrent + max_waiting (429, Retry-After):
        # Serve's queue in front of it would only hide that.
        max_ongoing_requests=serving.max_concurrent + serving.max_waiting,
        ray_actor_options={"num_cpus": settings.ingress_num_cpus},
    )(Ingress)
    options = IngressOptions(names, serving, settings.reroutes, settings.status_interval,
                             settings.engine_wait, cold)
    return ingress.bind(config, engines, options)


def _check_engine_tables(config: LoadedConfig, settings: RaySettings, members: list[Provider]) -> None:
    """``[ray.engines.NAME]`` names a local engine: of this chain, or of another chain of the same
    stt.toml (``serve run ... chain=funasr`` keeps the file's tables); a cloud engine of the chain,
    which has no deployment, or a name that is no engine, is a mistake to report."""
    cloud = {engine.name for engine in members if not engine.capabilities.offline}
    known = stt_core.registry().known_names() | set(config.config.provider_sections)
    for name in sorted(settings.engines):
        if name in cloud:
            raise ConfigError(f"[ray.engines.{name}]: {name} is called from the ingress (it is not a local "
                              "engine), so it has no deployment to set up")
        if name not in known:
            raise ConfigError(f"[ray.engines.{name}] names no engine (installed: "
                              f"{', '.join(sorted(stt_core.registry().known_names()))})")


def _deployable(engine: Provider) -> bool:
    """A local engine (it loads a model) that can serve here gets a deployment; one that cannot
    (its model is not on this node, say) stays in the chain as it is, saying why, as in plain
    ``stt-core serve``; cloud engines are called from the ingress."""
    if not engine.capabilities.offline:
        return False
    if reason := engine.why_unavailable():
        logger.warning("%s is not deployed: %s", engine.name, reason)
        return False
    return True


def _engine_deployment(
    config: LoadedConfig, settings: RaySettings, name: str, engine: Provider
) -> Application:
    replicas = settings.engine(name)
    deployment = serve.deployment(name=name, **as_options(replicas, batch_size(engine)))(EngineReplica)
    return deployment.bind(config, name, replicas.batch_wait_timeout)


def serve_settings(config: LoadedConfig) -> ServeSettings:
    """The config's ``[serve]`` table; a bad key or value is a ``ConfigError``."""
    return config.table(SECTION, ServeSettings)


@serve.ingress()
class Ingress:
    """The HTTP ingress: the very app of ``stt-core serve`` over the chain, whose local engines are
    ``RayEngine`` links to their deployments (Serve hands over their handles as ``engines``)."""

    def __init__(
        self, config: LoadedConfig, engines: dict[str, DeploymentHandle[Any]], options: IngressOptions
    ) -> None:
        app = serve.get_replica_context().app_name

        def adapt(engine: Provider) -> Provider:
            if engine.name not in engines:
                return engine
            return RayEngine(engine, engines[engine.name], app=app, reroutes=options.reroutes,
                             status_interval=options.status_interval, engine_wait=options.engine_wait,
                             cold_start_allowed=engine.name in options.cold_start_allowed)

        self.chain = config.build_chain(names=options.names, adapt=adapt)
        self.serving = options.serving
        self.realtime = config.realtime()  # what /v1/realtime's sessions start from, as in stt-core serve

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.chain, self.serving, realtime=self.realtime)
