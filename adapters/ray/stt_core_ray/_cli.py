"""``stt-core serve --ray [--ray-address ADDRESS]``: the application on a Ray cluster, until Ctrl-C or
SIGTERM; then it is deleted (and a cluster started here is stopped)."""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import sys
import threading

import ray
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import DeploymentStatusOverview

from stt_core import LoadedConfig, ProviderUnavailable
from stt_core.server import ServeSettings, warn_if_open

from ._app import INGRESS, build_app
from ._remote import state_name
from ._settings import RaySettings, ray_settings


def serve_on_ray(
    config: LoadedConfig, serving: ServeSettings, *, names: list[str] | None = None,
    address: str | None = None,
) -> None:
    application = build_app(config, names=names, serving=serving)  # a bad config fails before Ray starts
    settings = ray_settings(config)
    warn_if_open(serving)
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    # "local" (no address): a new local cluster, this command's own, not one that `ray start` left
    # running here (whose other Serve applications stopping this one would end). Where its replicas
    # ask for more CPUs than the machine has, it counts that many: on one machine they share its
    # cores anyway, and a replica Ray cannot place would keep the ingress waiting for ever, silently.
    own_cluster, cpus = address == "local", None
    if own_cluster:
        cores, asked = os.cpu_count() or 1, cpus_asked(config, settings, names)
        cpus = math.ceil(asked) if asked > cores else None  # else Ray's own count (it heeds cgroups)
        shared = f" of {cpus} CPUs (what its replicas ask for, sharing {cores} cores)" if cpus else ""
        say(f"stt-core serve --ray: starting a local Ray cluster{shared}")
    else:
        say(f"stt-core serve --ray: connecting to {address}")
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # not "connecting to existing Serve app"
    if not own_cluster:
        check_reachable(address)
    try:
        # A given address may be 127.0.0.1: Ray then names the node by its host's address, as it prints.
        ray.init(address=address, num_cpus=cpus, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, ray.exceptions.AuthenticationError) as e:
        if own_cluster:
            raise
        raise ProviderUnavailable(unreachable(address, e)) from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        # Proxies on every node bind [serve] host and port; on a cluster 127.0.0.1 reaches only
        # each node's own (host = "0.0.0.0" to be reached from elsewhere).
        serve.start(http_options={"host": serving.host, "port": serving.port})
        client = _get_global_client()  # serve.start made it, or found it
        assert client is not None
        http = client.http_config  # a Serve already running keeps the options it had
        if (http.host, http.port) != (serving.host, serving.port):
            say(f"Ray Serve already runs on this cluster, listening on {http.host}:{http.port}: [serve] "
                f"host and port ({serving.host}:{serving.port}) do not apply (`serve shutdown` first to "
                "change them)")
        say("deploying: each engine's replicas load their models, then the ingress starts")
        # Not serve.run: it waits for every replica, forever for one no node can place (num_gpus = 1
        # on a cluster without a GPU). The ingress waits for the engines itself (engine_wait), so
        # this waits for the ingress and says what Serve says meanwhile.
        serve.run_many([serve.RunTarget(application, name=settings.app_name,
                                        route_prefix=settings.route_prefix)],
                       wait_for_applications_running=False)
        if not ingress_started(settings.app_name, stop):
            return
        url = f"http://{http.host}:{http.port}{settings.route_prefix.rstrip('/')}/v1"
        say(f"serving {url} on Ray Serve (cluster {ray.get_runtime_context().gcs_address}, application "
            f"{settings.app_name!r}): {replicas_said(settings.app_name)}")
        stop.wait()
    finally:
        say("stopping: deleting the application")
        serve.delete(settings.app_name)
        if own_cluster:
            serve.shutdown()
            ray.shutdown()


def cpus_asked(config: LoadedConfig, settings: RaySettings, names: list[str] | None) -> float:
    """The CPUs the application's replicas ask Ray for at the least: the ingress's, and each local
    engine's, one replica at least (an engine autoscaled from zero must be placeable when a request
    comes; one that will not be deployed, its model missing say, is counted too: a few too many)."""
    asked = settings.ingress_replicas * settings.ingress_num_cpus
    for engine in config.build_chain(names=names).providers:
        if engine.capabilities.offline:
            own = settings.engine(engine.name)
            least = max(own.autoscaling.min_replicas, 1) if own.autoscaling else own.replicas  # its first
            asked += least * own.num_cpus
    return asked


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuses a ``host:port`` address where nothing listens, before Ray is asked: Ray's own
    connection tries for minutes there, saying only its warnings ("auto" and other forms: Ray's)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ProviderUnavailable(f"cannot connect to the Ray cluster at {address}: "
                                  f"{e.strerror or str(e) or type(e).__name__}") from None


def unreachable(address: str, e: Exception) -> str:
    """Why Ray could not connect, and, where it may be that, the token Ray did not send."""
    said = f"cannot connect to the Ray cluster at {address}: {str(e) or type(e).__name__}"
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return said
    return (f"{said} (if the cluster uses token authentication, which Ray turns on for a cluster it "
            "starts once ~/.ray/auth_token exists, set RAY_AUTH_MODE=token: only then does Ray send "
            "its token to an address it is given)")


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
