"""Configuration: ``stt.toml`` (or the file named by ``STT_CONFIG``), overridden by the environment.

    chain = ["funasr", "groq", "whisper"]     # STT_CHAIN=funasr,groq,whisper
    attempt_timeout = 60                      # STT_ATTEMPT_TIMEOUT=60
    [retry]                                   # STT_RETRY__ATTEMPTS=3
    attempts = 3
    [breaker]                                 # STT_BREAKER__COOLDOWN=30
    failures = 3
    [groq]                                    # STT_GROQ__API_KEY=...  (or GROQ_API_KEY)
    api_key = "..."
    [vllm]                                    # a second instance of a provider: the table
    provider = "openai"                       # names it, the chain names the table
    base_url = "http://gpu-box:8000/v1"

Every other table is a provider's settings, validated by that provider's own model when the
chain is built; a table's name is the name of that engine in the chain, in errors and in
transcripts; its provider is the one of that name unless ``provider`` says otherwise (``provider``
and ``min_confidence`` are the chain's keys). The seed's environment names are aliases (``_ALIASES``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ._chain import BreakerPolicy, Chain, Percentile, RetryPolicy, hedge_setting
from ._chain.quality import DEFAULT_MIN_CONFIDENCE, Confidence, QualityPolicy
from ._errors import ConfigError, did_you_mean, validation_problems, without_secrets_in
from ._provider import Provider
from ._realtime import RealtimeSettings
from ._registry import Registry, UnusableEngine, registry, section_models
from ._serve import SECTION as SERVE_SECTION
from ._serve import ServeSettings
from ._text import shorten
from ._types import Attempt

Settings = TypeVar("Settings", bound=BaseModel)

DEFAULT_CHAIN = ("funasr", "groq", "whisper")
# Tables that are no engine: an adapter's (stt-core-livekit's [livekit], stt-core-ray's [ray]) or serve's.
ADAPTER_SECTIONS = {"livekit", "ray", "serve"}
# STT_ variables that are not config keys: read elsewhere (file, plugin and decoding limits).
_OTHER_SETTINGS = ("STT_CONFIG", "STT_CORE_", "STT_MAX_AUDIO_SECONDS", "STT_MAX_DECODED_MB")
CONFIG_ENV = "STT_CONFIG"
DEFAULT_CONFIG_FILE = "stt.toml"
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("stt_core_environ", default=None)  # + overrides
_ARGUMENTS = "the arguments"  # where load_config's overrides come from (serve run stt_core_ray:app chain=...)
_ON = {"1", "true", "yes", "on"}  # a seed flag that is set


# The seed's environment names -> (section, field, conversion).
_ALIASES: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "FUNASR_MODEL_DIR": ("funasr", "model", str),
    "FUNASR_LANGUAGE": ("funasr", "language", str),
    "FUNASR_USE_ITN": ("funasr", "use_itn", str),
    "FUNASR_MAX_SEGMENT_TIME": ("funasr", "max_single_segment_time", str),
    "FUNASR_DEVICE": ("funasr", "device", str),
    "FUNASR_USE_EXTERNAL_VAD": ("funasr", "vad",
                                lambda flag: "fsmn-vad" if flag.strip().lower() in _ON else "none"),
    "GROQ_API_KEY": ("groq", "api_key", str),
    "DEEPGRAM_API_KEY": ("deepgram", "api_key", str),
    "OPENAI_API_KEY": ("openai", "api_key", str),
}
PROVIDER_KEY = "provider"  # in a table: which provider this engine is (default: the table's name)
CHAIN_KEYS = (PROVIDER_KEY, "min_confidence")  # in a table: the chain's, not the provider's


# Every number has a bound a sane deployment stays far inside: a value past it is a typo or an
# attack (a cooldown of inf, 10**6 threads), refused here with the key's name.
_HOUR = 3600.0
MAX_CHAIN = 32
MAX_CONFIG_BYTES = 1024 * 1024


class _EnvSource(PydanticBaseSettingsSource):
    """``STT_KEY`` and ``STT_SECTION__FIELD`` variables, plus the seed's aliases."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # everything is read in __call__

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        environ = _ENVIRON.get() or os.environ
        for name, (section, key, convert) in _ALIASES.items():
            if name in environ:
                data.setdefault(section, {})[key] = convert(environ[name])
        for name, value in environ.items():
            if not name.startswith("STT_") or name.startswith(_OTHER_SETTINGS):
                continue
            # STT_RAY__AUTOSCALING__MAX_REPLICAS: [ray.autoscaling] max_replicas
            *tables, key = name[len("STT_"):].lower().split("__")
            if not tables and key not in STTConfig.model_fields:
                env = name in os.environ  # else one of load_config's overrides (key=value) set it
                setting, where, prefix = (name, "the environment", "STT_") if env else (key, _ARGUMENTS, "")
                raise ConfigError(f"unknown setting {setting} in {where}"
                                  f"{did_you_mean(key, set(STTConfig.model_fields), prefix=prefix)}")
            table = data
            for depth, part in enumerate(tables, 1):
                table = table.setdefault(part, {})
                if not isinstance(table, dict):
                    raise ConfigError(f"STT_{'__'.join(tables[:depth]).upper()} and {name} are both set: "
                                      f"{part!r} is a table, set only its fields")
            if isinstance(table.get(key), dict):
                raise ConfigError(f"{name} is set, but {key!r} is a table: set {name}__<FIELD>")
            table[key] = value
        return data


class STTConfig(BaseSettings):
    """The chain and its policies; provider tables are kept as extra fields."""

    model_config = SettingsConfigDict(extra="allow", allow_inf_nan=False)

    chain: list[str] = Field(default_factory=lambda: list(DEFAULT_CHAIN), min_length=1, max_length=MAX_CHAIN)
    provider: str | None = None
    """Seed alias ``STT_PROVIDER``: this engine goes first, the rest of the chain follows."""
    attempt_timeout: float | None = Field(60.0, ge=0.01, le=_HOUR)
    hedge_after: Annotated[float | Percentile | None, BeforeValidator(hedge_setting),
                           PlainSerializer(lambda v: str(v) if isinstance(v, Percentile) else v)] = None
    """Off by default. Seconds (0.5), or a percentile of the engine's own recent latencies ('p95'):
    an engine that has not answered by then races the next one, and the first answer wins."""
    stream_stall_timeout: float | None = Field(10.0, ge=0.5, le=_HOUR)
    """A streaming engine that takes audio and says nothing for this long has failed."""
    min_confidence: Confidence = DEFAULT_MIN_CONFIDENCE
    """Re-ask a less confident answer (or one in a language its engine does not transcribe); 0: off."""
    max_reasks: int = Field(1, ge=0, le=MAX_CHAIN)  # re-asks of cloud engines (paid calls) per request
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    realtime: RealtimeSettings = RealtimeSettings()
    """The VAD-driven real-time stream over local engines (``stt-core listen``, LiveKit)."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents come in as init values; the environment overrides them.
        return (_EnvSource(settings_cls), init_settings)

    @field_validator("chain", mode="before")
    @classmethod
    def _split_chain(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in re.split(r",|->", value) if part.strip()]
        return value

    @property
    def chain_order(self) -> list[str]:
        rest = [name for name in self.chain if name != self.provider]
        return [self.provider, *rest] if self.provider else list(self.chain)

    @property
    def provider_sections(self) -> dict[str, dict[str, Any]]:
        return dict(self.model_extra or {})


class LoadedConfig:
    """A validated configuration and where it came from."""

    def __init__(self, config: STTConfig, path: Path | None, file_data: dict[str, Any],
                 given: frozenset[str] = frozenset()) -> None:
        self.config, self.path, self._file_data, self._given = config, path, file_data, given

    def source_of(self, section: str) -> str:
        return _sources_of({section}, self.path, self._file_data, self._given)

    def provider_settings(self, name: str) -> dict[str, Any]:
        """Engine ``name``'s table, less the chain's keys (``provider``, ``min_confidence``)."""
        section = self.config.provider_sections.get(name, {})
        return {key: value for key, value in section.items() if key not in CHAIN_KEYS}

    def provider_of(self, name: str) -> str:
        """The provider engine ``name`` is: its table's ``provider``, or the name itself."""
        return str(self.config.provider_sections.get(name, {}).get(PROVIDER_KEY, name))

    def build_engine(self, name: str, *, plugins: Registry | None = None) -> Provider:
        """Engine ``name`` as a chain of this config holds it (bad settings are a ``ConfigError``); one
        that says why it cannot serve when its provider is not installed or cannot be built."""
        plugins = plugins or registry()
        kind = self.provider_of(name)
        if kind not in plugins:
            return UnusableEngine(name, plugins.missing_reason(kind))
        cls, settings = plugins.get(kind).provider_class, self._settings_for(plugins, name)
        try:
            return cls(settings).named(name)
        except ConfigError:
            raise
        except Exception as e:  # a plugin's __init__ that raises: this engine is skipped, not the chain
            return UnusableEngine(name, f"provider {kind!r} is installed but cannot be built: "
                                        f"{type(e).__name__}: {e}")

    def build_chain(
        self,
        *,
        names: list[str] | None = None,
        on_attempt: Callable[[Attempt], None] | None = None,
        plugins: Registry | None = None,
        adapt: Callable[[Provider], Provider] | None = None,
    ) -> Chain:
        """The chain this config declares; engines that are not installed are kept as
        unavailable links so the chain reports them, but bad settings fail here, up front.

        ``adapt`` may stand another link in for each engine (an adapter serving local engines
        from another process does)."""
        plugins = plugins or registry()
        for section in self.config.provider_sections:
            if self.provider_of(section) in plugins:
                self._settings_for(plugins, section)
        order = names or self.config.chain_order
        if len(order) > MAX_CHAIN:
            raise ConfigError(f"a chain of {len(order)} engines is too long (at most {MAX_CHAIN})")
        self.check_names(plugins, names)
        engines = [self.build_engine(name, plugins=plugins) for name in order]
        if adapt is not None:
            engines = [adapt(engine) for engine in engines]
        c = self.config
        try:  # the top keys and each engine's own line
            quality = QualityPolicy.from_tables(c.min_confidence, c.max_reasks, c.provider_sections, order)
        except ValidationError as e:
            problems = validation_problems(e).replace("per_engine.", "")
            raise ConfigError(f"bad min_confidence: {problems}") from None
        return Chain(engines, retry=c.retry, breaker=c.breaker, quality=quality,
                     attempt_timeout=c.attempt_timeout, hedge_after=c.hedge_after,
                     stream_stall_timeout=c.stream_stall_timeout, on_attempt=on_attempt)

    def check_names(self, plugins: Registry, names: list[str] | None = None) -> None:
        """A chain entry or section that names no engine (installed, or this project's own) is a
        typo, not an engine to skip quietly: one ``ConfigError`` naming it and where it came from."""
        known = plugins.known_names()
        for section, table in self.config.provider_sections.items():
            kind = table.get(PROVIDER_KEY)
            if kind is not None and not isinstance(kind, str):
                raise ConfigError(f"[{section}] {PROVIDER_KEY} in {self.source_of(section)} must be a "
                                  f"provider's name, not {type(kind).__name__}")
            if kind is None and section not in known | ADAPTER_SECTIONS:
                raise ConfigError(f"unknown section [{section}] in {self.source_of(section)}"
                                  f"{did_you_mean(section, known | ADAPTER_SECTIONS)}; a second "
                                  f"instance of a provider names it: provider = \"...\"")
            if kind is not None and kind not in known:
                raise ConfigError(f"[{section}] in {self.source_of(section)} names provider {kind!r}, "
                                  f"which is not installed{did_you_mean(str(kind), known)}")
        named = {s for s, table in self.config.provider_sections.items() if PROVIDER_KEY in table}
        for name in names or self.config.chain_order:
            if name in known | named:
                continue
            where = ("--chain" if names else "STT_PROVIDER" if name == self.config.provider
                     else "STT_CHAIN" if "STT_CHAIN" in os.environ and "chain" not in self._given
                     else f"chain in {self.source_of('chain')}")
            installed = ", ".join(info.name for info in plugins) or "none"
            raise ConfigError(f"unknown engine {name!r} in {where} (installed: {installed})"
                              f"{did_you_mean(name, known)}")

    def _settings_for(self, plugins: Registry, name: str) -> Any:
        cls = plugins.get(self.provider_of(name)).provider_class
        return cls.build_settings(self.provider_settings(name), source=self.source_of(name))

    def redacted(self, plugins: Registry | None = None) -> dict[str, Any]:
        """The effective configuration with every secret replaced, for ``config show``."""
        plugins = plugins or registry()
        self.check_names(plugins)
        c = self.config
        shown: dict[str, Any] = {
            "config_file": str(self.path) if self.path else None, "chain": c.chain_order,
            "attempt_timeout": c.attempt_timeout,
            "hedge_after": c.model_dump(include={"hedge_after"})["hedge_after"],  # "p95" as written
            "stream_stall_timeout": c.stream_stall_timeout,
            "min_confidence": c.min_confidence, "max_reasks": c.max_reasks,
            "retry": c.retry.model_dump(), "breaker": c.breaker.model_dump(),
            "realtime": c.realtime.model_dump(),
        }
        sections = {SERVE_SECTION: ServeSettings, **section_models()}
        installed = {info.name for info in plugins}
        engines = (set(c.provider_sections) | set(c.chain_order) | installed) - set(sections)
        for name in sorted(engines):
            kind = self.provider_of(name)
            table = {PROVIDER_KEY: kind} if kind != name else {}
            table |= {k: v for k, v in c.provider_sections.get(name, {}).items() if k == "min_confidence"}
            if kind in plugins and (name in c.provider_sections or name in c.chain_order):
                shown[name] = table | self._shown(plugins, name)
            elif kind in plugins:  # installed, not configured: its defaults (and environment)
                try:
                    shown[name] = self._shown(plugins, name)
                except ConfigError as e:
                    shown[name] = {"error": str(e)}
            elif name in c.provider_sections:
                shown[name] = table | without_secrets_in(self.provider_settings(name))
        for name, model in sorted(sections.items()):
            shown[name] = self._section(name, model)
        return shown

    def table(self, name: str, model: type[Settings]) -> Settings:
        """An adapter's table ``[name]`` read by its own ``model``: one ``ConfigError`` naming the
        table, where it came from and each problem."""
        try:
            return model(**self.provider_settings(name))
        except ValidationError as e:
            raise ConfigError(f"bad [{name}] settings in {self.source_of(name)}: "
                              f"{validation_problems(e, model)}") from None

    def realtime(self, **defaults: Any) -> RealtimeSettings:
        """``[realtime]``, with an adapter's ``defaults`` for the settings it leaves unset (Pipecat's
        0.2 s ``min_silence``, say)."""
        settings = self.config.realtime
        unset = {key: value for key, value in defaults.items() if key not in settings.model_fields_set}
        return settings.model_copy(update=unset) if unset else settings

    def _shown(self, plugins: Registry, name: str) -> dict[str, Any]:
        return without_secrets_in(self._settings_for(plugins, name).model_dump(mode="json"))

    def _section(self, name: str, model: type[BaseModel] | str) -> dict[str, Any]:
        """An adapter's table as its own model reads it (defaults filled in, secrets redacted)."""
        if isinstance(model, str):  # its model could not be loaded: the table as written
            return {"error": model} | without_secrets_in(self.provider_settings(name))
        return without_secrets_in(self.table(name, model).model_dump(mode="json"))


def load_config(
    path: str | os.PathLike[str] | None = None, *, overrides: Mapping[str, str] | None = None
) -> LoadedConfig:
    """Read ``path``, or ``$STT_CONFIG``, or ``./stt.toml`` if it exists; then the environment. Then
    ``overrides``, dotted keys (``chain``, ``ray.replicas``; ``config`` names the file), each read as
    its ``STT_`` variable would be (``STT_RAY__REPLICAS``)."""
    added = {"STT_" + key.upper().replace(".", "__"): str(value) for key, value in (overrides or {}).items()}
    given = frozenset(key.split(".")[0].lower() for key in overrides or {})  # the tables they set
    elsewhere = f"the environment or {_ARGUMENTS}" if overrides else "the environment"
    environ = os.environ | added
    chosen = path or environ.get(CONFIG_ENV)
    if chosen is None and Path(DEFAULT_CONFIG_FILE).is_file():
        chosen = DEFAULT_CONFIG_FILE
    file_path = Path(chosen) if chosen else None
    file_data = _read_toml(file_path) if file_path is not None else {}
    token = _ENVIRON.set(environ)
    try:
        config = STTConfig(**file_data)
    except ValidationError as e:  # where the keys at fault were set
        at_fault = {str(error["loc"][0]) for error in e.errors() if error["loc"]}
        where = _sources_of(at_fault, file_path, file_data, given) if at_fault else elsewhere
        raise ConfigError(f"bad config in {where}: " + validation_problems(e, STTConfig)) from None
    except RecursionError:
        raise ConfigError(f"config in {file_path or elsewhere} is nested too deeply") from None
    finally:
        _ENVIRON.reset(token)
    loaded = LoadedConfig(config, file_path, file_data, given)
    for key, value in config.provider_sections.items():
        if not isinstance(value, dict):
            raise ConfigError(f"unknown config key {key!r} in {loaded.source_of(key)}"
                              f"{did_you_mean(key, set(STTConfig.model_fields))}")
    return loaded


def _sources_of(keys: set[str], path: Path | None, file_data: dict[str, Any], given: frozenset[str]) -> str:
    """Where ``keys`` (top-level keys or tables) were set: the file, the environment (``STT_``
    variables, aliases), the arguments (``overrides``); the environment when none says."""
    variables = {f"STT_{key.upper()}" for key in keys}
    from_env = any(name.split("__")[0] in variables for name in os.environ) or any(
        table in keys and name in os.environ for name, (table, _, _) in _ALIASES.items())
    sources = [str(path)] if path is not None and keys & file_data.keys() else []
    sources += ["the environment"] * from_env + [_ARGUMENTS] * bool(keys & given)
    return " or ".join(sources) or "the environment"


def _read_toml(path: Path) -> dict[str, Any]:
    """A config file's tables: a regular file of at most ``MAX_CONFIG_BYTES`` (never a FIFO that
    blocks or a device that never ends), with one clear error for anything else."""
    try:
        if not path.is_file():
            raise ConfigError(f"config file {path} is not a regular file" if path.exists()
                              else f"config file not found: {path}")
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024} KB")
        return tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        problem = shorten(str(e), 300) or type(e).__name__
        raise ConfigError(f"cannot read config file {path}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"cannot read config file {path}: nested too deeply") from None
