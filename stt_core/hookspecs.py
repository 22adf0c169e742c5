"""The hooks a stt-core plugin implements. A plugin is a module named by an entry point in
the ``stt_core`` group that implements one or more of these with ``@stt_core.hookimpl``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ._provider import Provider

PROJECT_NAME = "stt_core"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_providers(register: Callable[[type[Provider]], None]) -> None:
    """Register the provider classes this plugin ships.

    Called once per plugin when the registry loads. Registering must import nothing heavy:
    a provider imports its engine (torch, an SDK) when it is first built or warmed up.

    :param register: call it once per provider class, ``register(MyProvider)``.
    """
