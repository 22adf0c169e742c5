"""stt-core's server on Ray Serve: the chain's local engines as replicated deployments.

    serve run stt_core_ray:app chain=funasr,groq ray.replicas=2    # Ray's own CLI
    stt-core serve --ray [--ray-address ADDRESS]                    # or stt-core's

``app`` is Ray Serve's application builder; its arguments are stt.toml keys, over stt.toml and the
``STT_*`` environment. Ray is imported when the application is built, not on import, so that
``stt-core config show`` can read the ``[ray]`` table quickly.
"""

from __future__ import annotations

import re
import typing

import stt_core

from ._settings import Autoscaling, RaySettings, Replicas

if typing.TYPE_CHECKING:  # typing's: a name imported into this module would count as an export
    from ray.serve import Application

    from stt_core.server import ServeSettings

_CONFIG_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_-]*)*")

__all__ = ["Autoscaling", "RaySettings", "Replicas", "app", "build_app", "serve_on_ray"]


def app(args: dict[str, str]) -> Application:
    """Ray Serve's application builder: ``serve run stt_core_ray:app chain=funasr,groq``.

    Args:
        args: stt.toml keys, dotted for tables (``ray.replicas=2``, ``whisper.model=small``), over
            stt.toml and the environment; ``config=PATH`` names the file.
    """
    if bad := [key for key in args if not _CONFIG_KEY.fullmatch(key)]:
        raise stt_core.ConfigError(f"argument {bad[0]!r} is not a config key: give stt.toml keys, dotted for "
                                   "tables (chain=funasr,groq ray.replicas=2 whisper.model=small)")
    return build_app(stt_core.load_config(overrides=args))


def build_app(
    config: stt_core.LoadedConfig, *, names: list[str] | None = None, serving: ServeSettings | None = None
) -> Application:
    """The application for ``config``'s chain (or ``names``), serving ``serving`` (default: ``[serve]``)."""
    from ._app import build_app as build

    return build(config, names=names, serving=serving)


def serve_on_ray(
    config: stt_core.LoadedConfig, serving: ServeSettings, *, names: list[str] | None = None,
    address: str | None = None,
) -> None:
    """``stt-core serve --ray``: deploy on the cluster at ``address`` (``RAY_ADDRESS``, else a new local one)
    and serve until interrupted."""
    from ._cli import serve_on_ray as run

    run(config, serving, names=names, address=address)
