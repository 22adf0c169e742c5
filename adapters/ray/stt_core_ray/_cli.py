"""``stt-core serve --ray [--ray-address ADDRESS]``: the application on a Ray cluster, until Ctrl-C or
SIGTERM; then it is deleted (and a cluster started here is stopped)."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import ray
from ray import serve
from ray.serve.schema import DeploymentStatusOverview

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
        # Not serve.run: it waits for every replica, forever for one no node can place (num_gpus = 1
        # on a cluster without a GPU). The ingress waits for the engines itself (engine_wait), so
        # this waits for the ingress and says what Serve says meanwhile.
        serve.run_many([serve.RunTarget(application, name=settings.app_name,
                                        route_prefix=settings.route_prefix)],
                       wait_for_applications_running=False)
        if not ingress_started(settings.app_name, stop):
            return
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


def ingress_started(app: str, stop: threading.Event) -> bool:
    """Waits until the ingress has a running replica (True) or ``stop`` is set (False), saying each
    new message of Serve's about a deployment (a replica that cannot be placed, say) as it comes."""
    said: dict[str, str] = {}
    while not stop.wait(0.5):
        status = serve.status().applications.get(app)
        if status is None:
            continue
        if state_name(status.status) == "DEPLOY_FAILED":  # Serve gave up (its replicas could not start)
            raise ProviderUnavailable(f"Ray Serve could not deploy {app!r}: {status.message}")
        for name, deployment in status.deployments.items():
            if deployment.message and said.get(name) != deployment.message:
                said[name] = deployment.message
                say(f"{name}: {deployment.message}")
        if INGRESS in status.deployments and running(status.deployments[INGRESS]):
            return True
    return False


def replicas_said(app: str) -> str:
    """Each deployment's running replicas; an engine with none is passed by the chain until one runs."""
    deployments = serve.status().applications[app].deployments
    engines = [f"{name} x{running(info)}" + ("" if running(info) else " (passed until a replica runs)")
               for name, info in sorted(deployments.items()) if name != INGRESS]
    ingress = running(deployments[INGRESS])
    return f"engines {', '.join(engines) or 'none deployed (no local engine)'}; ingress x{ingress}"


def running(deployment: DeploymentStatusOverview) -> int:
    return sum(n for state, n in deployment.replica_states.items() if state_name(state) == "RUNNING")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
