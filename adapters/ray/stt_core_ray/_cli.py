"""``stt-core serve --ray [--ray-address ADDRESS]``: the application on a Ray cluster, until Ctrl-C or
SIGTERM; then it is deleted (and a cluster started here is stopped)."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import ray
from ray import serve

from stt_core import LoadedConfig, ProviderUnavailable
from stt_core.server import ServeSettings, warn_if_open

from ._app import INGRESS, build_app
from ._remote import state_name
from ._settings import ray_settings


def serve_on_ray(
    config: LoadedConfig, serving: ServeSettings, *, names: list[str] | None = None,
    address: str | None = None,
) -> None:
    application = build_app(config, names=names, serving=serving)  # a bad config fails before Ray starts
    settings = ray_settings(config)
    warn_if_open(serving)
    say(f"stt-core serve --ray: {'connecting to ' + address if address else 'starting a local Ray cluster'}")
    # No address: Ray's own rule (RAY_ADDRESS if set, else a new local cluster). A given address may
    # be 127.0.0.1: Ray then names the node by its host's address, which is what it prints too.
    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        # Proxies on every node bind [serve] host and port; on a cluster 127.0.0.1 reaches only
        # each node's own (host = "0.0.0.0" to be reached from elsewhere).
        serve.start(http_options={"host": serving.host, "port": serving.port})
        say("deploying: each engine's replicas load their models, then the ingress starts")
        try:
            serve.run(application, name=settings.app_name, route_prefix=settings.route_prefix)
        except RuntimeError as e:  # Serve gave up on a deployment (its replicas could not start)
            raise ProviderUnavailable(f"Ray Serve could not deploy {settings.app_name!r}: {e}") from e
        url = f"http://{serving.host}:{serving.port}{settings.route_prefix.rstrip('/')}/v1"
        say(f"serving {url} on Ray Serve (cluster {ray.get_runtime_context().gcs_address}, application "
            f"{settings.app_name!r}): {replicas_said(settings.app_name)}")
        stop.wait()
    finally:
        say("stopping: deleting the application")
        serve.delete(settings.app_name)
        if address is None:
            serve.shutdown()
            ray.shutdown()


def replicas_said(app: str) -> str:
    deployments = serve.status().applications[app].deployments
    running = {name: sum(n for state, n in info.replica_states.items() if state_name(state) == "RUNNING")
               for name, info in deployments.items()}
    said = [f"{name} x{count}" for name, count in sorted(running.items()) if name != INGRESS]
    return f"engines {', '.join(said) or 'none deployed (no local engine)'}; ingress x{running[INGRESS]}"


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
