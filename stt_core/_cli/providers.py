"""``stt-core providers``: what is installed and whether each engine can serve, found without
loading any model. As lines wrapped at the terminal's width between words (a reason or a path is
never cut in the middle), or as JSON (``--json``) for scripts."""

from __future__ import annotations

import json
import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.text import Text

from .._config import LoadedConfig, load_config
from .._errors import ConfigError
from .._registry import Registry, install_command, registry
from .terminal import err, out


@dataclass
class Listed:
    """One installed provider, as ``stt-core providers`` shows it."""

    name: str
    distribution: str | None
    version: str | None
    can_serve: bool
    reason: str | None
    model: str | None
    capabilities: dict[str, Any] = field(default_factory=dict)


def listed(plugins: Registry, config: LoadedConfig | None) -> list[Listed]:
    found = []
    for info in plugins:
        cls = info.provider_class
        model, caps = None, cls.capabilities
        try:
            settings = cls.build_settings(config.provider_settings(info.name) if config else {})
            provider = cls(settings)
            caps = provider.capabilities  # an instance may narrow them (an English-only model)
            reason, model = provider.why_unavailable(), cls.model_status(settings)
        except Exception as e:  # bad settings, or a plugin's class or check that raises
            reason = str(e) if isinstance(e, ConfigError) else f"{type(e).__name__}: {e}"
        languages = None if caps.languages is None else sorted(caps.languages)
        found.append(Listed(info.name, info.distribution, info.version, reason is None, reason, model,
                            {"streaming": caps.streaming, "word_timestamps": caps.word_timestamps,
                             "offline": caps.offline, "languages": languages}))
    return found


def show_providers(*, as_json: bool, config_path: str | None) -> None:
    plugins = registry()
    try:
        config: LoadedConfig | None = load_config(config_path)
    except ConfigError as e:
        err.print(f"warning: {e}; showing providers with default settings", markup=False)
        config = None
    found = listed(plugins, config)
    failed = [{"distribution": p.distribution, "entry_point": p.entry_point, "provider": p.provider,
               "error": p.error} for p in plugins.plugin_errors]
    if as_json:
        out.file.write(json.dumps({"providers": [asdict(f) for f in found], "failed_to_load": failed},
                                  ensure_ascii=False, indent=2) + "\n")
        return
    for entry in found:
        _show(entry)
    if not found:
        _print(f"No engine is installed. For one that works offline: {install_command('whisper')}; "
               f"cloud ones: {install_command('groq')}, or deepgram, openai; SenseVoice: "
               f"{install_command('funasr')}.")
    for problem in failed:
        which = problem["provider"] or problem["entry_point"]
        _print(f"failed to load {problem['distribution']} ({which}): {problem['error']}", "red", (0, 14))


def _show(entry: Listed) -> None:
    caps = entry.capabilities
    features = [name for key, name in (("streaming", "streaming"), ("word_timestamps", "word times"),
                                       ("offline", "offline")) if caps[key]]
    languages = ("any language" if caps["languages"] is None else f"{len(caps['languages'])} languages"
                 if len(caps["languages"]) > 8 else ", ".join(caps["languages"]))
    made_by = " ".join(part for part in (entry.distribution, entry.version) if part) or "-"
    about = "; ".join(part for part in (", ".join(features), languages) if part)
    _print(f"{entry.name}  {made_by}: {about}", "bold", (0, len(entry.name)))
    if entry.can_serve:
        _print("  can serve: yes", "green", (13, 16), indent="    ")
    else:
        _print(f"  can serve: no: {entry.reason}", "red", (13, 15), indent="    ")
    if entry.model:
        _print(f"  model: {entry.model}", indent="    ")


def _print(line: str, style: str = "", styled: tuple[int, int] = (0, 0), *, indent: str = "  ") -> None:
    """``line`` wrapped between words at the terminal's width (a word longer than a line, such as
    a path, keeps a line of its own, whole), the characters ``styled`` (from, to) in ``style``."""
    width = max(40, out.width)
    for i, part in enumerate(textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False,
                                           break_on_hyphens=False, drop_whitespace=True) or [""]):
        text = Text(part)
        if i == 0 and style:
            text.stylize(style, *styled)
        out.print(text, soft_wrap=True)
