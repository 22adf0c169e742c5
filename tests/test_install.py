"""stt-core installed as the README says, run as written: every distribution's wheel and sdist
built and twine-checked by its one command, `stt-core[whisper]` installed from them into a fresh
venv with no package index (its third-party wheels downloaded once per run into a wheelhouse,
from pip's cache after the set-up), the demo clip transcribed there; a missing engine's hint is
the command that installs it; and the Observability section's two recipes run as written on
`stt-core[otel]` installed the same way, one printing to the console, one exporting to a fake
collector on 127.0.0.1. The release workflow that publishes these files is checked for what it
must do (it cannot run here)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from fakes.otlp_collector import FakeCollector
from speech import MAX_WER, wer

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
DISTS = [ROOT, *sorted((ROOT / "providers").iterdir()), *sorted((ROOT / "adapters").iterdir())]
pytestmark = pytest.mark.slow


def section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def _requirements(project: Path, *extras: str) -> list[str]:
    """A distribution's third-party requirements (its own and those of ``extras``)."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    wanted = [*meta["dependencies"], *(r for extra in extras for r in meta["optional-dependencies"][extra])]
    return [r for r in wanted if not r.startswith("stt-core")]


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every third-party wheel stt-core[whisper,otel], stt-core-groq and stt-core-pipecat need:
    what the installs below take instead of an index."""
    house = tmp_path_factory.mktemp("wheelhouse")
    wanted = [*_requirements(ROOT, "otel"), *_requirements(ROOT / "providers" / "whisper", "bundled"),
              *_requirements(ROOT / "providers" / "groq"), *_requirements(ROOT / "adapters" / "pipecat")]
    # `pip wheel`, not `pip download --only-binary`: a few (docopt, under pipecat-ai) are sdists only,
    # and a venv with no index could not build them (no setuptools to build with).
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(house), *wanted], check=True,
                   timeout=900)
    return house


class Home:
    """A user's shell with no package index: ``~`` is a directory of its own."""

    def __init__(self, home: Path, wheelhouse: Path) -> None:
        self.home, self.venv = home, home / "stt-venv"
        self.installed: subprocess.CompletedProcess[str] | None = None
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "VIRTUAL_ENV", "GROQ_"))}
        self.env = {**clean, "HOME": str(home), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse),
                    "PIP_DISABLE_PIP_VERSION_CHECK": "1", "COLUMNS": "200",
                    "PIP_NO_COMPILE": "1"}  # no .pyc written at install: a third of its time, for nothing

    def sh(self, script: str, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env={**self.env, **env},
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{script}\n{done.stdout}{done.stderr}"
        return done

    def python(self, code: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.sh(f"{self.venv}/bin/python - <<'PY'\n{code}\nPY", **env)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, dists: Path) -> Home:
    """The README's install from wheels, run as written (once: the tests below share its venv)."""
    user = Home(tmp_path_factory.mktemp("home"), wheelhouse)
    _, install, *_ = blocks(section("Install"), "sh")
    user.installed = user.sh(install)
    return user


def test_every_distribution_has_a_wheel_and_an_sdist_twine_passes(dists: Path) -> None:
    build, *_ = blocks(section("Install"), "sh")
    assert build.split("#")[0].strip() == "make dists"  # the command the `dists` fixture ran
    names = [tomllib.loads((d / "pyproject.toml").read_text())["project"]["name"].replace("-", "_")
             for d in DISTS]
    made = sorted(path.name for path in dists.iterdir())
    expected = [f"{n}-0.1.0-py3-none-any.whl" for n in names] + [f"{n}-0.1.0.tar.gz" for n in names]
    assert made == sorted(expected)
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dists.iterdir())],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0 and checked.stdout.count("PASSED") == len(made), checked.stdout


def test_the_readme_install_from_wheels_runs_as_written_with_no_index(home: Home) -> None:
    done = home.installed
    assert done is not None
    assert wer("fox", done.stdout.splitlines()[-1]) <= MAX_WER, done.stdout + done.stderr  # after pip's lines
    listed = json.loads(home.sh(f"{home.venv}/bin/pip list --format json").stdout)
    names = {p["name"].lower() for p in listed}
    assert {"stt-core", "stt-core-whisper", "faster-whisper"} <= names
    assert not {"torch", "funasr"} & names and not [n for n in names if n.startswith("nvidia-")]

    # The README's first Python example, as written, on this install (the default chain: funasr,
    # groq, whisper, only whisper installed): English, and the engines passed are said to be not
    # installed, with the command that installs them here, never "does not support language 'en'".
    example = blocks(section("Using it"), "python")[0]
    printed = home.python(example).stdout
    assert wer("fox", printed.split(" whisper (")[0]) <= MAX_WER, printed
    assert printed.count("is not installed") == 2 and "--find-links" in printed, printed
    assert "does not support" not in printed, printed


def test_a_missing_engines_hint_is_the_command_that_installs_it(home: Home, dists: Path) -> None:
    said = home.sh(f"{home.venv}/bin/stt-core transcribe examples/audio/fox.wav --chain groq,whisper").stderr
    hint = f"pip install --find-links {dists} 'stt-core[groq]'"
    assert f"provider 'groq' is not installed (installed: whisper); install it with: {hint}" in said, said
    serve = subprocess.run([f"{home.venv}/bin/stt-core", "serve"], env=home.env, capture_output=True,
                           text=True, timeout=60)
    assert serve.returncode == 2 and serve.stderr.strip().endswith(  # and the server's extra, the same way
        f"(fastapi is missing): pip install --find-links {dists} 'stt-core[serve]'"), serve.stderr
    home.sh(f"PATH={home.venv}/bin:$PATH {hint}")  # the hint as given, in the venv's shell
    listed = json.loads(home.sh(f"{home.venv}/bin/stt-core providers --json").stdout)["providers"]
    groq = next(p for p in listed if p["name"] == "groq")
    assert groq["distribution"] == "stt-core-groq" and groq["reason"].startswith("no API key")


def test_the_readme_observability_recipes_run_as_written_on_the_otel_extra(
    home: Home, serve_in_thread: Callable[[web.Application], str]
) -> None:
    command = home.python("import stt_core; print(stt_core.install_command('otel'))").stdout.strip()
    home.sh(f"PATH={home.venv}/bin:$PATH {command}")  # stt-core[otel], as its own hint says
    console, otlp = blocks(section("Observability"), "python")

    printed = home.python(console).stdout  # the spans as they end, the transcript, the metrics at exit
    heard = [line for line in printed.splitlines() if re.fullmatch(r"[A-Z][A-Za-z ,.'-]*", line)]  # not JSON
    assert len(heard) == 1 and wer("fox", heard[0]) <= MAX_WER, printed
    assert '"name": "speech_to_text"' in printed and '"name": "speech_to_text whisper"' in printed
    assert '"service.name": "my-voice-app"' in printed and '"name": "stt_core.request.duration"' in printed

    collector = FakeCollector()
    exported = home.python(otlp, OTEL_EXPORTER_OTLP_ENDPOINT=serve_in_thread(collector.app()))
    assert wer("fox", exported.stdout.strip()) <= MAX_WER, exported.stdout
    traces, metrics = (b"".join(collector.received[signal]) for signal in ("traces", "metrics"))
    assert b"speech_to_text whisper" in traces and b"my-voice-app" in traces
    assert b"stt_core.request.duration" in metrics and b"stt_core.failovers" not in metrics


def test_the_readme_pipecat_section_installs_and_runs_its_example_as_written(home: Home, dists: Path) -> None:
    """The Pipecat section's install line and its example, as written, on the wheels' install (pip
    pointed at the wheels, as Install says until stt-core is on the index): a final from whisper,
    the only engine of examples/stt.toml installed here, and status 0."""
    [lines] = blocks(section("Pipecat"), "sh")
    install, example = (line.split("#")[0].strip() for line in lines.strip().splitlines()[:2])
    assert install.startswith("pip install") and "pipecat" in install
    assert example.startswith("python examples/pipecat_agent.py")
    home.sh(f"PATH={home.venv}/bin:$PATH {install}", PIP_FIND_LINKS=f"{home.env['PIP_FIND_LINKS']} {dists}")
    ran = home.sh(f"PATH={home.venv}/bin:$PATH {example}")
    finals = [line for line in ran.stdout.splitlines() if line.startswith("final: ")]
    assert len(finals) == 1 and finals[0].endswith("(stt: whisper)"), ran.stdout + ran.stderr[-2000:]
    assert wer("fox", finals[0].removeprefix("final: ").rpartition(" (stt:")[0]) <= MAX_WER, finals


def test_the_release_workflow_publishes_every_distribution_from_a_tag() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    assert workflow[True]["push"]["tags"] == ["v*"]  # YAML reads the key `on` as True
    build, publish = workflow["jobs"]["build"], workflow["jobs"]["publish"]
    steps = " ".join(str(step.get("run", "")) for step in build["steps"])
    assert "scripts/check_version.py" in steps and "./scripts/dists.sh dist" in steps
    assert publish["needs"] == "build" and publish["permissions"] == {"id-token": "write"}
    uses = [str(step.get("uses", "")) for step in publish["steps"]]
    assert [u for u in uses if u.startswith("pypa/gh-action-pypi-publish@")]
    assert not [step for step in publish["steps"] if "password" in step.get("with", {})]  # no token: trusted
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert subprocess.run([sys.executable, "scripts/check_version.py", version], cwd=ROOT).returncode == 0
    wrong = subprocess.run([sys.executable, "scripts/check_version.py", "99.0.0"], cwd=ROOT,
                           capture_output=True, text=True)
    assert wrong.returncode == 1 and "providers/groq/pyproject.toml" in wrong.stderr
