"""Finding providers: entry points in the ``stt_core`` group, loaded one by one.

pluggy's ``load_setuptools_entrypoints`` stops at the first plugin that fails to import, so we
load entry points with our own loop: a broken plugin is recorded with its error and the rest
still load. And how to install a part of stt-core the way this one was installed, for the hints
(``install_command``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pluggy
from pydantic import BaseModel

from . import hookspecs
from ._errors import ConfigError, ProviderUnavailable
from ._provider import Provider
from ._types import Capabilities, Transcript

ENTRY_POINT_GROUP = "stt_core"
# Adapters' own tables of stt.toml ([livekit] ...): name -> their settings model, for `config show`.
SECTIONS_GROUP = "stt_core.sections"
LOAD_PLUGINS_ENV = "STT_CORE_LOAD_PLUGINS"
# Providers this project ships as extras, so a missing one gets an install hint.
FIRST_PARTY = ("funasr", "groq", "openai", "deepgram", "whisper")


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    provider_class: type[Provider]
    distribution: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class PluginError:
    """A plugin distribution whose entry point failed to load, or one provider class of it that
    the registry refused (``provider`` then names it: a chain naming it is told why)."""

    distribution: str
    entry_point: str
    error: str
    provider: str | None = None


class Registry:
    """The providers known to this process and the plugins that failed to load."""

    def __init__(self) -> None:
        self.plugin_manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.plugin_manager.add_hookspecs(hookspecs)
        self._providers: dict[str, ProviderInfo] = {}
        self.plugin_errors: list[PluginError] = []

    def load_entry_points(self, only: set[str] | None = None) -> None:
        """Load every plugin of the ``stt_core`` group (or those of the ``only`` distributions)."""
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist_name = ep.dist.name if ep.dist else ep.name
            version = ep.dist.version if ep.dist else None
            if only is not None and _normalize(dist_name) not in only:
                continue
            try:
                plugin = ep.load()
            except Exception as e:  # any import error of a third party's code
                self.plugin_errors.append(PluginError(dist_name, ep.name, f"{type(e).__name__}: {e}"))
                continue
            self.register_plugin(plugin, name=ep.name, distribution=dist_name, version=version)

    def register_plugin(
        self,
        plugin: object,
        *,
        name: str | None = None,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        """Register a plugin object (a module with hookimpls) and the providers it registers.

        A plugin whose hook raises is recorded in ``plugin_errors`` with its error and skipped
        whole. A class it registers that is no usable provider is recorded on its own, and the
        plugin's other providers still load: nothing a plugin does breaks the host.
        """
        if self.plugin_manager.is_registered(plugin):
            return
        found: list[Any] = []
        where = str(distribution or getattr(plugin, "__name__", None) or repr(plugin))
        try:
            plugin_name = self.plugin_manager.register(plugin, name=name)
            self.plugin_manager.check_pending()
            for impl in self.plugin_manager.hook.register_providers.get_hookimpls():
                if impl.plugin_name == plugin_name:
                    impl.function(register=found.append)
        except Exception as e:  # anything a third party's hook does
            with contextlib.suppress(Exception):
                self.plugin_manager.unregister(plugin)
            self.plugin_errors.append(PluginError(where, name or where, f"{type(e).__name__}: {e}"))
            return
        for cls in found:
            try:
                _check_provider_class(cls)
            except TypeError as e:
                claimed = getattr(cls, "name", None)
                self.plugin_errors.append(PluginError(
                    where, name or where, f"TypeError: {e}",
                    provider=claimed if isinstance(claimed, str) and claimed else None))
                continue
            self.add(cls, distribution=distribution, version=version)

    def add(
        self, cls: type[Provider], *, distribution: str | None = None, version: str | None = None
    ) -> None:
        """Make ``cls`` available under ``cls.name``. Two owners of one name is an error."""
        _check_provider_class(cls)
        name = cls.name
        existing = self._providers.get(name)
        if existing is not None and existing.provider_class is not cls:
            raise ConfigError(
                f"provider name {name!r} is registered by two distributions: "
                f"{existing.distribution or existing.provider_class.__module__} and "
                f"{distribution or cls.__module__}; uninstall one, or choose with "
                f"{LOAD_PLUGINS_ENV}"
            )
        self._providers[name] = ProviderInfo(name, cls, distribution, version)

    def get(self, name: str) -> ProviderInfo:
        try:
            return self._providers[name]
        except KeyError:
            raise ConfigError(self.missing_reason(name)) from None

    def known_names(self) -> set[str]:
        """Every name a config may use for an engine: installed providers, this project's own
        (installable as extras), and plugins that are installed but failed to load."""
        failed = {problem.provider or problem.entry_point for problem in self.plugin_errors}
        return set(self._providers) | set(FIRST_PARTY) | failed

    def missing_reason(self, name: str) -> str:
        for problem in self.plugin_errors:
            names = {problem.provider} if problem.provider else {
                problem.entry_point, problem.distribution, problem.distribution.removeprefix("stt-core-")}
            if name in names:
                return (f"provider {name!r} is installed ({problem.distribution}) but failed to load: "
                        f"{problem.error}")
        installed = ", ".join(sorted(self._providers)) or "none"
        hint = f"; install it with: {install_command(name)}" if name in FIRST_PARTY else ""
        return f"provider {name!r} is not installed (installed: {installed}){hint}"

    def create(self, name: str, settings: dict[str, Any] | None = None, *, source: str = "") -> Provider:
        """Build provider ``name`` with validated settings (cheap: nothing is loaded yet)."""
        cls = self.get(name).provider_class
        return cls(cls.build_settings(settings or {}, source=source))

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def __iter__(self) -> Iterator[ProviderInfo]:
        return iter(sorted(self._providers.values(), key=lambda info: info.name))


def section_models() -> dict[str, type[BaseModel] | str]:
    """The settings model of every adapter table an installed distribution declares in the
    ``stt_core.sections`` entry-point group, or why it could not be loaded."""
    found: dict[str, type[BaseModel] | str] = {}
    for ep in metadata.entry_points(group=SECTIONS_GROUP):
        try:
            model = ep.load()
        except Exception as e:  # a third party's import error: shown, never fatal
            found[ep.name] = f"cannot load its settings: {type(e).__name__}: {e}"
            continue
        if isinstance(model, type) and issubclass(model, BaseModel):
            found[ep.name] = model
        else:
            found[ep.name] = f"cannot load its settings: {ep.value} is not a pydantic model"
    return found


_default: Registry | None = None
_default_lock = threading.Lock()


def registry(*, reload: bool = False) -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _default
    with _default_lock:
        if _default is None or reload:
            fresh = Registry()
            fresh.load_entry_points(_plugins_to_load())
            _default = fresh
        return _default


def get_provider(name: str, /, **settings: Any) -> Provider:
    """An installed provider by name, built with ``settings``."""
    return registry().create(name, settings)


def list_providers() -> list[ProviderInfo]:
    """Every installed provider, by name."""
    return list(registry())


def _check_provider_class(cls: Any) -> None:
    """A class the registry can build: a concrete ``Provider`` subclass with a name."""
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise TypeError(f"register() takes a Provider subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} must set a class attribute 'name'")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise TypeError(f"{cls.__qualname__} ({name!r}) does not implement {missing}")


def _plugins_to_load() -> set[str] | None:
    value = os.environ.get(LOAD_PLUGINS_ENV)
    if value is None:
        return None
    return {_normalize(part) for part in value.split(",") if part.strip()}


def _normalize(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name.strip()).lower()


class UnusableEngine(Provider):
    """A chain link for an engine named in config that cannot be built here (not installed, or
    its class fails to build): the chain reports it and moves on. It declares no language or
    feature, so it never makes the chain look able to take a request."""

    name = "unusable"
    capabilities = Capabilities(languages=frozenset())

    def __init__(self, name: str, reason: str) -> None:
        super().__init__()
        self.name = name  # type: ignore[misc]  # shadows the class name on purpose
        self._reason = reason

    def why_unavailable(self) -> str:
        return self._reason

    async def _transcribe(
        self, audio: Any, *, language: str | None, prompt: str | None, word_timestamps: bool
    ) -> Transcript:
        raise ProviderUnavailable(self._reason, provider=self.name)


# -- install hints ------------------------------------------------------------------------------
# How to install a part of stt-core the way this stt-core was installed, for the hints in errors
# and ``stt-core providers``: ``pip install 'stt-core[groq]'`` fails while stt-core is not on the
# package index, and is not what a checkout or a directory of wheels needs.
#
# How stt-core was installed is read from its ``direct_url.json`` (PEP 610), which pip writes for
# an editable checkout (``pip install -e .``) and for a wheel installed by its path; an install from
# an index (or from wheels found through ``--find-links`` alone) has none.

DISTRIBUTION = "stt-core"
# An extra that is one of this repository's own distributions: `stt-core-groq; extra == "groq"`.
_SIBLING = re.compile(r"""^(stt-core-[a-z0-9-]+)(\[[^\]]*\])?\s*;\s*extra\s*==\s*["']([^"']+)["']$""")


@dataclass(frozen=True)
class InstalledFrom:
    """``kind``: ``"checkout"`` (editable, ``where`` is the repository), ``"wheels"`` (``where``
    is the wheels' directory) or ``"index"``."""

    kind: str
    where: Path | None = None


def install_command(extra: str) -> str:
    """The command that installs ``stt-core[extra]`` (``"groq"``, ``"serve"``, ...) into this
    environment, for how stt-core is installed here: the repository's own directory in editable
    mode for a checkout (with this interpreter's pip), the wheels' directory for wheels, the
    package index otherwise."""
    source = installed_from()
    if source.kind == "checkout" and source.where is not None:  # its venv is seldom the active one
        return f"{sys.executable} -m pip install -e '{_in_checkout(source.where, extra)}'"
    if source.kind == "wheels" and source.where is not None:
        return f"pip install --find-links {source.where} 'stt-core[{extra}]'"
    return f"pip install 'stt-core[{extra}]'"


@functools.cache
def installed_from() -> InstalledFrom:
    try:
        recorded = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        root = Path(__file__).resolve().parents[1]
        in_checkout = (root / "pyproject.toml").is_file()
        return InstalledFrom("checkout", root) if in_checkout else InstalledFrom("index")
    try:
        direct = json.loads(recorded or "{}")
    except ValueError:
        direct = {}
    url = urlparse(str(direct.get("url", "")))
    if url.scheme != "file":
        return InstalledFrom("index")
    path = Path(unquote(url.path))
    if (direct.get("dir_info") or {}).get("editable"):
        return InstalledFrom("checkout", path)
    if "archive_info" in direct and path.suffix == ".whl":
        return InstalledFrom("wheels", path.parent)
    return InstalledFrom("index")


def _in_checkout(root: Path, extra: str) -> str:
    """The directory to install for ``extra`` in a checkout: a sibling distribution's own
    (``providers/groq``, ``providers/whisper[bundled]``), whose name pip could not find on the
    index, or the repository itself with the extra (``serve``: third-party packages only)."""
    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        requires = []
    siblings = [m.groups() for m in map(_SIBLING.match, requires) if m and m.group(3) == extra]
    if len(siblings) == 1:
        name, extras, _ = siblings[0]
        for folder in ("providers", "adapters"):
            directory = root / folder / name.removeprefix("stt-core-")
            if (directory / "pyproject.toml").is_file():
                return f"{directory}{extras or ''}"
    return f"{root}[{extra}]"
