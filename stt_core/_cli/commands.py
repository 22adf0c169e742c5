"""The ``stt-core`` command.

Exit codes: 0 success, 2 bad input or config, 1 when every provider failed. Errors are one
line on stderr; ``--debug`` shows the traceback and the chain's log.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import os
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from .. import __version__
from .._audio.audio import Audio
from .._chain.chain import Chain
from .._config import load_config
from .._errors import AllProvidersFailed, ConfigError, InvalidAudioError, STTError, validation_problems
from .._provider import Provider, check_audio, transcribe_file
from .._registry import install_command, registry
from .._types import Transcript
from .terminal import StatusLines, err, error, one_line, out, progress

FORMATS = ("text", "json", "srt", "vtt")
_EXTENSIONS = {"text": "txt", "json": "json", "srt": "srt", "vtt": "vtt"}

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Given before or after the subcommand, or not at all. (Not parser defaults: argparse shares a
    # parent's actions between parsers, and a default there would overwrite the flag.)
    args.debug, args.config = getattr(args, "debug", False), getattr(args, "config", None)
    # Our warnings, and everyone's with --debug; engines' own chatter (funasr warns on the root
    # logger about trust_remote_code at every load) stays out of the user's output otherwise.
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("stt_core").setLevel(logging.DEBUG if args.debug else logging.WARNING)
    try:
        return int(args.run(args))
    except STTError as e:
        if args.debug:
            err.print_exception()
        error(str(e))
        return EXIT_BAD_INPUT if isinstance(e, ConfigError | InvalidAudioError) else EXIT_FAILED
    except OSError as e:  # the last net for a file the checks above did not catch
        if args.debug:
            err.print_exception()
        error(f"{e.strerror or type(e).__name__}: {e.filename or ''}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    # --debug and --config go before or after the subcommand alike.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and the chain's log")
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (default: $STT_CONFIG or ./stt.toml)")
    parser = argparse.ArgumentParser(prog="stt-core", description="Speech to text through an engine chain.",
                                     parents=[common])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(group: Any, name: str, summary: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, parents=[common], help=summary)
        return sub

    providers = command(commands, "providers", "installed providers and whether they can serve")
    providers.add_argument("--json", action="store_true", help="as JSON, for scripts")
    providers.set_defaults(run=cmd_providers)

    transcribe = command(commands, "transcribe", "transcribe audio files through the chain")
    transcribe.add_argument("files", nargs="+", metavar="FILE", help="audio files; - reads stdin")
    transcribe.add_argument("--chain", help="engines in order, e.g. funasr,groq (default: config)")
    transcribe.add_argument("--language", help="language code, e.g. en, zh (default: detect)")
    transcribe.add_argument("--format", choices=FORMATS, default="text",
                            help="text, json (one object per line per file), srt or vtt subtitles")
    transcribe.add_argument("--word-timestamps", action="store_true",
                            help="ask for each word's times (json: segments' words; engines that give "
                                 "them take the request first)")
    outputs = transcribe.add_mutually_exclusive_group()
    outputs.add_argument("-o", "--output", type=Path, metavar="FILE",
                         help="write the result here (several inputs: as json or text, one after another)")
    outputs.add_argument("--output-dir", type=Path, metavar="DIR",
                         help="write one file per input, named after it (meeting.wav -> DIR/meeting.srt)")
    transcribe.add_argument("--quiet", action="store_true", help="do not report the chain's attempts")
    transcribe.set_defaults(run=cmd_transcribe)

    listen = command(commands, "listen", "transcribe live audio in real time: interims, then each final")
    listen.add_argument("source", metavar="FILE|-", help="an audio file, or - for raw 16-bit PCM on stdin "
                                                         "(arecord -f S16_LE -r 16000 | stt-core listen -)")
    listen.add_argument("--chain", help="engines in order, e.g. funasr,groq (default: config)")
    listen.add_argument("--language", help="language code, e.g. en, zh (default: detect)")
    listen.add_argument("--format", choices=("text", "json"), default="text",
                        help="text (the interim on one line, finals below) or json (one event per line)")
    listen.add_argument("--speed", type=float, default=1.0,
                        help="a FILE is pushed at this many times real time (default 1; 0: at once)")
    listen.add_argument("--rate", type=int, default=16_000, help="stdin PCM sample rate (default 16000)")
    listen.add_argument("--channels", type=int, default=1, help="stdin PCM channels (default 1)")
    listen.add_argument("--url", help="listen through a remote stt-core serve (ws://host:port): its "
                                      "/v1/realtime, --chain as the model, [serve] api_key as the key")
    listen.set_defaults(run=cmd_listen)

    bench = command(commands, "bench", "time each engine of the chain, and the chain, on your audio")
    bench.add_argument("file", metavar="FILE", help="an utterance (a few seconds) to transcribe")
    bench.add_argument("--chain", help="engines in order, e.g. funasr,groq (default: config)")
    bench.add_argument("--repeats", type=_positive_int, default=5, help="timed calls per engine (default 5)")
    bench.set_defaults(run=cmd_bench)

    serve = command(commands, "serve", "an OpenAI-compatible transcription API over the chain")
    serve.add_argument("--host", help="address to listen on (default: [serve] host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: [serve] port, 8000)")
    serve.add_argument("--chain", help="engines in order, e.g. funasr,groq (default: config)")
    serve.add_argument("--ray", action="store_true",
                       help="on Ray Serve, each local engine a deployment of replicas ([ray])")
    serve.add_argument("--ray-address", metavar="ADDRESS",
                       help="the Ray cluster to serve on (implies --ray; default: $RAY_ADDRESS, else a new "
                            "local one)")
    serve.set_defaults(run=cmd_serve)

    models = command(commands, "models", "local models")
    models_commands = models.add_subparsers(dest="models_command", required=True)
    download = command(models_commands, "download", "fetch a provider's model for offline use")
    download.add_argument("provider", metavar="NAME", help="provider name, e.g. funasr")
    download.add_argument("--model", help="model id (default: the configured one)")
    download.add_argument("--dir", type=Path, help="directory to put it in (default: the provider's cache)")
    download.set_defaults(run=cmd_models_download)
    export = command(models_commands, "export", "convert a provider's model into the form it serves")
    export.add_argument("provider", metavar="NAME", help="provider name, e.g. funasr")
    export.add_argument("--model", help="model directory or id (default: the configured one)")
    export.set_defaults(run=cmd_models_export)

    config = command(commands, "config", "configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    show = command(config_commands, "show", "the effective configuration, secrets redacted")
    show.set_defaults(run=cmd_config_show)
    return parser


def cmd_providers(args: argparse.Namespace) -> int:
    from .providers import show_providers

    show_providers(as_json=args.json, config_path=args.config)
    return EXIT_OK


def cmd_models_download(args: argparse.Namespace) -> int:
    cls = registry().get(args.provider).provider_class
    settings = cls.build_settings(load_config(args.config).provider_settings(args.provider))
    path = cls.download_model(settings, model=args.model, target=args.dir)
    err.print(f"downloaded to {path}", markup=False)
    if args.dir or args.model:
        err.print(f"use it with: [{args.provider}] model = \"{path}\"", markup=False)
    return EXIT_OK


def _check_port(host: str, port: int) -> None:
    """A port another server holds is said now, in one line (uvicorn says it after the models
    load, as a log and exit code 3)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
            probe.bind(address)
    except OSError as e:  # in use, or not ours to take; anything else (one of several addresses) is uvicorn's
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            raise ConfigError(f"stt-core serve: cannot listen on {host}:{port}: {e.strerror}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from ..server import SECTION, ServeSettings, serve
    except ImportError as e:
        raise ConfigError(f"stt-core serve needs FastAPI and uvicorn ({e.name} is missing): "
                          f"{install_command('serve')}") from None
    config = load_config(args.config)
    given = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    try:
        settings = ServeSettings(**(config.provider_settings(SECTION) | given))
    except ValidationError as e:
        at_fault = {str(err["loc"][0]) for err in e.errors() if err["loc"]}
        on_line = at_fault and at_fault <= set(given)
        where = "on the command line" if on_line else f"in {config.source_of(SECTION)}"
        raise ConfigError(f"bad [{SECTION}] settings {where}: "
                          f"{validation_problems(e, ServeSettings)}") from None
    if args.ray or args.ray_address:
        try:
            from stt_core_ray import serve_on_ray
        except ImportError as e:
            raise ConfigError(f"stt-core serve --ray needs Ray Serve ({e.name} is missing): "
                              f"{install_command('ray')}") from None
        if (args.ray_address or os.environ.get("RAY_ADDRESS") or "local") == "local":  # its own cluster, here
            _check_port(settings.host, settings.port)
        serve_on_ray(config, settings, names=_chain_names(args.chain), address=args.ray_address)
        return EXIT_OK
    chain = config.build_chain(names=_chain_names(args.chain))
    if never := chain.never_serves():  # every request would get 503: say why now, and do not start
        reasons = "; ".join(f"{name}: {reason}" for name, reason in never.items())
        raise ConfigError(f"stt-core serve: no engine of the chain ({chain.model}) can serve ({reasons})")
    _check_port(settings.host, settings.port)
    err.print(f"stt-core serve: chain {chain.model}, loading models, then listening on "
              f"http://{settings.host}:{settings.port}/v1", markup=False)
    serve(chain, settings, realtime=config.config.realtime)
    return EXIT_OK


def cmd_models_export(args: argparse.Namespace) -> int:
    cls = registry().get(args.provider).provider_class
    settings = cls.build_settings(load_config(args.config).provider_settings(args.provider))
    for path in cls.export_model(settings, model=args.model):
        err.print(f"exported {path}", markup=False)
    return EXIT_OK


def cmd_config_show(args: argparse.Namespace) -> int:
    out.print_json(json.dumps(load_config(args.config).redacted()))
    return EXIT_OK


def cmd_transcribe(args: argparse.Namespace) -> int:
    several = len(args.files) > 1
    if several and args.output and args.format in ("srt", "vtt"):
        raise ConfigError(f"-o takes one input file as {args.format} (several would not be one valid file): "
                          "use --output-dir DIR (one file per input)")
    if several and args.format in ("srt", "vtt") and not args.output_dir:
        raise ConfigError(f"several files as {args.format} on stdout would not be one valid file: "
                          "use --output-dir DIR (one file per input)")
    stems = [Path(name).stem for name in args.files]
    if args.output_dir and (twice := next((stem for stem in stems if stems.count(stem) > 1), None)):
        raise ConfigError(f"--output-dir: several inputs are named {twice!r}, and each would write "
                          f"{args.output_dir / twice}.{_EXTENSIONS[args.format]} over the other")
    chain = load_config(args.config).build_chain(names=_chain_names(args.chain))
    return asyncio.run(_transcribe_files(chain, args))


def cmd_listen(args: argparse.Namespace) -> int:
    from .._serve.settings import SECTION, ServeSettings
    from .listen import check_pcm_options, listen, listen_url

    check_pcm_options(args.rate, args.channels)
    loaded = load_config(args.config)
    if args.url:  # a client of a remote server: no engine is built here
        key = loaded.table(SECTION, ServeSettings).api_key
        return asyncio.run(listen_url(args.url, args.source, speed=max(0.0, args.speed), rate=args.rate,
                                      channels=args.channels, fmt=args.format, language=args.language,
                                      model=args.chain, settings=loaded.config.realtime,
                                      key=key.get_secret_value() if key else None))
    chain = loaded.build_chain(names=_chain_names(args.chain))
    return asyncio.run(listen(chain, args.source, speed=max(0.0, args.speed), rate=args.rate,
                              channels=args.channels, fmt=args.format, language=args.language,
                              settings=loaded.config.realtime))


def _chain_names(option: str | None) -> list[str] | None:
    return [n.strip() for n in option.split(",") if n.strip()] if option else None


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def cmd_bench(args: argparse.Namespace) -> int:
    chain = load_config(args.config).build_chain(names=_chain_names(args.chain))
    audio = Audio.from_file(args.file)
    check_audio(audio)  # audio no engine could hear: one line and exit 2, not a table of failures
    return asyncio.run(_bench(chain, audio, args.repeats))


async def _bench(chain: Chain, audio: Audio, repeats: int) -> int:
    """Each engine on its own, then the chain: load, first call, and the median of ``repeats``
    calls, on this machine. (benchmarks/ in the repository compares stt_core with the engines.)"""
    table = Table(title=f"stt-core bench: {audio.duration:.1f} s of audio, median of {repeats} calls, "
                        f"chain {chain.model}",
                  caption="speed: seconds of audio transcribed per second of the median call "
                          "(over 1: faster than real time)")
    table.add_column("engine", no_wrap=True)
    for column in ("load ms", "first call ms", "median ms", "speed audio s/s", "result"):
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
    files = [Path("/dev/stdin" if f == "-" else f) for f in args.files]  # "-": the audio on stdin
    report = StatusLines(quiet=args.quiet)
    if args.output:  # written one result after another (several inputs as json lines or text)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("", encoding="utf-8")
    async with chain:
        with progress(len(files)) as shown:
            for path in files:
                shown.file_started(path.name)
                try:
                    result = await transcribe_file(chain, path, language=args.language,
                                                   word_timestamps=args.word_timestamps,
                                                   progress=shown.piece_done if err.is_terminal else None)
                except (InvalidAudioError, ConfigError) as e:
                    error(_about(path, e))
                    worst = max(worst, EXIT_BAD_INPUT)
                except AllProvidersFailed as e:
                    report.file(path, e.attempts)
                    error(_about(path, report.failed(e)))
                    worst = max(worst, EXIT_FAILED)
                else:
                    report.file(path, result.attempts)
                    _print_result(path, result, args, several=len(files) > 1)
                    if result.metadata.get("untranscribed"):  # pieces no engine heard (each said above)
                        worst = max(worst, EXIT_FAILED)
                shown.file_done()
    return worst


def _about(path: Path, e: STTError | str) -> str:
    """The error about ``path``, naming it once (a decoding error names its file already)."""
    return str(e) if str(path) in str(e) else f"{path}: {e}"


def _print_result(path: Path, result: Transcript, args: argparse.Namespace, *, several: bool) -> None:
    """The result in its format: into its own file (-o, --output-dir) or on stdout, which stays
    one valid document (JSON gives one object per line per file)."""
    rendered = _render(path, result, args.format)
    if several and args.format == "text" and not args.output_dir:  # in one stream: say whose it is
        rendered = f"# {path}\n{rendered}"
    target = args.output or (args.output_dir / f"{path.stem}.{_EXTENSIONS[args.format]}"
                             if args.output_dir else None)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a" if args.output else "w", encoding="utf-8") as written:  # -o: after the others
            written.write(rendered + "\n")
        if not args.quiet:
            err.print(one_line(f"{path.name}: wrote {target}"), markup=False)
        return
    sys.stdout.write(rendered + "\n")
    sys.stdout.flush()


def _render(path: Path, result: Transcript, fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"file": str(path), **result.to_dict()}, ensure_ascii=False)
    if fmt == "srt":
        return result.to_srt()
    if fmt == "vtt":
        return result.to_vtt()
    return result.text

