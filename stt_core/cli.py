"""The ``stt-core`` command.

Exit codes: 0 success, 2 bad input or config, 1 when every provider failed. Errors are one
line on stderr; ``--debug`` shows the traceback and the chain's log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from ._audio import Audio
from ._chain import Chain
from ._config import LoadedConfig, load_config
from ._errors import AllProvidersFailed, ConfigError, InvalidAudioError, STTError
from ._files import transcribe_file
from ._provider import Provider
from ._registry import registry
from ._types import Attempt, Transcript

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.run(args))
    except STTError as e:
        if args.debug:
            err.print_exception()
        _error(str(e))
        return EXIT_BAD_INPUT if isinstance(e, ConfigError | InvalidAudioError) else EXIT_FAILED
    except OSError as e:  # the last net for a file the checks above did not catch
        if args.debug:
            err.print_exception()
        _error(f"{e.strerror or type(e).__name__}: {e.filename or ''}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


_LONGEST_ERROR = 2000  # characters of one error line; --debug shows the rest


def _error(message: str) -> None:
    err.print(f"error: {_one_line(message)}", markup=False)


def _one_line(text: str) -> str:
    """``text`` as one line, whatever it holds: control characters (a file name with a newline)
    are shown escaped, and a huge text is cut."""
    line = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    if len(line) > _LONGEST_ERROR:
        line = f"{line[:_LONGEST_ERROR]}... ({len(line) - _LONGEST_ERROR} more characters; --debug shows all)"
    return line


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stt-core", description="Speech to text through an engine chain.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and the chain's log")
    parser.add_argument("--config", metavar="PATH", help="config file (default: $STT_CONFIG or ./stt.toml)")
    commands = parser.add_subparsers(dest="command", required=True)

    providers = commands.add_parser("providers", help="installed providers and whether they can serve")
    providers.set_defaults(run=cmd_providers)

    transcribe = commands.add_parser("transcribe", help="transcribe audio files through the chain")
    transcribe.add_argument("files", nargs="+", metavar="FILE")
    transcribe.add_argument("--chain", help="engines in order, e.g. funasr,groq (default: config)")
    transcribe.add_argument("--language", help="language code, e.g. en, zh (default: detect)")
    transcribe.add_argument("--format", choices=("text", "json", "srt"), default="text")
    transcribe.add_argument("--quiet", action="store_true", help="do not report the chain's attempts")
    transcribe.set_defaults(run=cmd_transcribe)

    bench = commands.add_parser("bench", help="time each engine of the chain, and the chain, on your audio")
    bench.add_argument("file", metavar="FILE", help="an utterance (a few seconds) to transcribe")
    bench.add_argument("--chain", help="engines in order, e.g. funasr,groq (default: config)")
    bench.add_argument("--repeats", type=_positive_int, default=5, help="timed calls per engine (default 5)")
    bench.set_defaults(run=cmd_bench)

    models = commands.add_parser("models", help="local models")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    download = models_commands.add_parser("download", help="fetch a provider's model for offline use")
    download.add_argument("provider", metavar="NAME", help="provider name, e.g. funasr")
    download.add_argument("--model", help="model id (default: the configured one)")
    download.add_argument("--dir", type=Path, help="directory to put it in (default: the provider's cache)")
    download.set_defaults(run=cmd_models_download)

    config = commands.add_parser("config", help="configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    show = config_commands.add_parser("show", help="the effective configuration, secrets redacted")
    show.set_defaults(run=cmd_config_show)
    return parser


def cmd_providers(args: argparse.Namespace) -> int:
    plugins = registry()
    try:
        config: LoadedConfig | None = load_config(args.config)
    except ConfigError as e:
        err.print(f"warning: {e}; showing providers with default settings", markup=False)
        config = None
    table = Table(title="stt-core providers")
    table.add_column("name", no_wrap=True)
    for column in ("distribution", "version", "can serve", "model", "capabilities"):
        table.add_column(column, overflow="fold")  # wrap long paths and reasons, never cut them
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
        features = [
            name
            for name, present in (
                ("streaming", caps.streaming),
                ("word times", caps.word_timestamps),
                ("offline", caps.offline),
            )
            if present
        ]
        languages = "any language" if caps.languages is None else ",".join(sorted(caps.languages))
        table.add_row(
            info.name,
            info.distribution or "-",
            info.version or "-",
            "[green]yes[/]" if reason is None else f"[red]no[/]: {escape(reason)}",
            escape(model or "-"),
            ", ".join([*features, languages]),
        )
    out.print(table)
    for problem in plugins.plugin_errors:
        out.print(f"[red]failed to load[/] {escape(f'{problem.distribution} ({problem.entry_point})')}: "
                  f"{escape(str(problem.error))}")
    return EXIT_OK


def cmd_models_download(args: argparse.Namespace) -> int:
    cls = registry().get(args.provider).provider_class
    settings = cls.build_settings(load_config(args.config).provider_settings(args.provider))
    path = cls.download_model(settings, model=args.model, target=args.dir)
    err.print(f"downloaded to {path}", markup=False)
    if args.dir or args.model:
        err.print(f"use it with: [{args.provider}] model = \"{path}\"", markup=False)
    return EXIT_OK


def cmd_config_show(args: argparse.Namespace) -> int:
    out.print_json(json.dumps(load_config(args.config).redacted()))
    return EXIT_OK


def cmd_transcribe(args: argparse.Namespace) -> int:
    chain = load_config(args.config).build_chain(names=_chain_names(args.chain))
    return asyncio.run(_transcribe_files(chain, args))


def _chain_names(option: str | None) -> list[str] | None:
    return [n.strip() for n in option.split(",") if n.strip()] if option else None


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def cmd_bench(args: argparse.Namespace) -> int:
    chain = load_config(args.config).build_chain(names=_chain_names(args.chain))
    audio = Audio.from_file(args.file)
    return asyncio.run(_bench(chain, audio, args.repeats))


async def _bench(chain: Chain, audio: Audio, repeats: int) -> int:
    """Each engine on its own, then the chain: load, first call, and the median of ``repeats``
    calls, on this machine. (benchmarks/ in the repository compares stt_core with the engines.)"""
    table = Table(title=f"stt-core bench: {audio.duration:.1f} s of audio, median of {repeats} calls, "
                        f"chain {chain.model}")
    table.add_column("engine", no_wrap=True)
    for column in ("load ms", "first call ms", "median ms", "x real time", "result"):
        table.add_column(column, overflow="fold")
    served = False
    async with chain:
        for provider in [*chain.providers, chain]:
            name = "chain" if provider is chain else provider.name
            if reason := provider.why_unavailable():
                table.add_row(name, "-", "-", "-", "-", f"[red]skipped[/]: {escape(reason)}")
                continue
            try:
                load, first, median, result = await _time_calls(provider, audio, repeats)
            except STTError as e:
                table.add_row(name, "-", "-", "-", "-", f"[red]failed[/]: {escape(str(e))}")
                continue
            served = True
            answered = f"{result.provider}: " if provider is chain else ""
            table.add_row(name, f"{load * 1000:.0f}", f"{first * 1000:.0f}", f"{median * 1000:.0f}",
                          f"{audio.duration / median:.1f}", escape(f"{answered}{result.text}"))
    out.print(table)
    return EXIT_OK if served else EXIT_FAILED


async def _time_calls(
    provider: Provider, audio: Audio, repeats: int
) -> tuple[float, float, float, Transcript]:
    """Seconds to warm up, for the first call, and the median of ``repeats`` calls after it."""
    started = time.perf_counter()
    await provider.warmup()
    load = time.perf_counter() - started
    seconds = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        result = await provider.transcribe(audio)
        seconds.append(time.perf_counter() - started)
    return load, seconds[0], statistics.median(seconds[1:]), result


async def _transcribe_files(chain: Chain, args: argparse.Namespace) -> int:
    worst = EXIT_OK
    files = [Path(f) for f in args.files]
    async with chain:
        with _progress(len(files)) as advance:
            for path in files:
                try:
                    result = await transcribe_file(chain, path, language=args.language)
                except (InvalidAudioError, ConfigError) as e:
                    _error(f"{path}: {e}")
                    worst = max(worst, EXIT_BAD_INPUT)
                except AllProvidersFailed as e:
                    if not args.quiet:
                        _report(path, e.attempts)
                    _error(f"{path}: {e}")
                    worst = max(worst, EXIT_FAILED)
                else:
                    if not args.quiet:
                        _report(path, result.attempts)
                    _print_result(path, result, args.format, several=len(files) > 1)
                advance()
    return worst


def _report(path: Path, attempts: Sequence[Attempt]) -> None:
    for attempt in attempts:
        detail = f": {attempt.error}" if attempt.error else ""
        err.print(
            _one_line(f"{path.name}: {attempt.provider} {attempt.outcome} ({attempt.latency:.2f}s){detail}"),
            markup=False,
        )


def _print_result(path: Path, result: Transcript, fmt: str, *, several: bool) -> None:
    if fmt == "json":
        out.print_json(json.dumps({"file": str(path), **result.to_dict()}), indent=None)
        return
    if several:
        out.print(f"# {path}", markup=False)
    out.print(result.to_srt() if fmt == "srt" else result.text, markup=False)


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr when there are several files; nothing for one."""
    if total < 2:
        yield lambda: None
        return
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("transcribing", total=total)
        yield lambda: bar.advance(task)


if __name__ == "__main__":
    sys.exit(main())
