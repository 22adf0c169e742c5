"""Plugin discovery through real entry points of installed distributions."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from stt_core import Chain, ConfigError, Registry, hookspecs
from stt_core.testing import FakeProvider
from tables import provider_entries

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "plugin-example"
STT_CORE = [sys.executable, "-m", "stt_core.cli"]


def install_dist(site: Path, dist: str, module: str, source: str, entry_name: str) -> None:
    """Install a one-module distribution into ``site`` the way pip lays one out."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[stt_core]\n{entry_name} = {module}\n")


GOOD = """
    import stt_core
    from stt_core.testing import FakeProvider

    class Good(FakeProvider):
        name = "good"

    @stt_core.hookimpl
    def register_providers(register):
        register(Good)
"""
TWIN = (
    GOOD.replace("class Good", "class Twin")
    .replace("register(Good)", "register(Twin)")
    .replace('name = "good"', 'name = "good"  # same name, other distribution')
)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def test_broken_plugin_is_reported_and_others_still_load(site: Path) -> None:
    install_dist(site, "stt-broken", "stt_broken", "raise ImportError('needs libfoo')\n", "broken")
    install_dist(site, "stt-good", "stt_good", GOOD, "good")
    reg = Registry()
    reg.load_entry_points()
    assert "good" in reg
    assert reg.get("good").distribution == "stt-good"
    [error] = [e for e in reg.plugin_errors if e.distribution == "stt-broken"]
    assert "needs libfoo" in error.error


def test_two_distributions_registering_one_name_is_a_clear_error(site: Path) -> None:
    install_dist(site, "stt-good", "stt_good", GOOD, "good")
    install_dist(site, "stt-twin", "stt_twin", TWIN, "twin")
    with pytest.raises(ConfigError, match="registered by two distributions") as info:
        Registry().load_entry_points()
    assert "stt-good" in str(info.value) and "stt-twin" in str(info.value)


def test_load_plugins_env_selects_distributions(site: Path) -> None:
    install_dist(site, "stt-good", "stt_good", GOOD, "good")
    install_dist(site, "stt-twin", "stt_twin", TWIN, "twin")
    reg = Registry()
    reg.load_entry_points(only={"stt-twin"})
    assert reg.get("good").distribution == "stt-twin"
    empty = Registry()
    empty.load_entry_points(only=set())
    assert list(empty) == []


def test_cli_lists_broken_plugins_and_honours_load_plugins_env(site: Path) -> None:
    install_dist(site, "stt-broken", "stt_broken", "raise ImportError('needs libfoo')\n", "broken")
    install_dist(site, "stt-good", "stt_good", GOOD, "good")
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200"}
    shown = subprocess.run([*STT_CORE, "providers"], env=env, capture_output=True, text=True, check=True)
    assert "good" in shown.stdout and "stt-broken" in shown.stdout and "needs libfoo" in shown.stdout
    env["STT_CORE_LOAD_PLUGINS"] = ""
    shown = subprocess.run([*STT_CORE, "providers"], env=env, capture_output=True, text=True, check=True)
    rows = provider_entries(shown.stdout)
    assert "good" not in rows and "whisper" not in rows and "No engine is installed" in shown.stdout


def test_registering_a_non_provider_is_refused() -> None:
    with pytest.raises(TypeError):
        Registry().add(object)  # type: ignore[arg-type]


def test_every_hook_is_documented() -> None:
    import inspect

    specs = [obj for name, obj in vars(hookspecs).items() if callable(obj) and hasattr(obj, "stt_core_spec")]
    assert specs, "no hookspecs found"
    for spec in specs:
        doc = inspect.getdoc(spec) or ""
        assert doc, f"hook {spec.__name__} has no docstring"
        for param in inspect.signature(spec).parameters:
            assert f":param {param}:" in doc, f"hook {spec.__name__} does not document {param}"


# -- the example plugin, pip-installed for real --------------------------------------------


@pytest.fixture(scope="module")
def example_installed() -> Iterator[None]:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", str(EXAMPLE)], check=True)
    try:
        yield
    finally:
        subprocess.run([*pip, "uninstall", "-y", "stt-plugin-energy"], check=True)


@pytest.mark.slow
def test_example_plugin_is_discovered_and_works_in_a_chain(example_installed: None) -> None:
    import asyncio

    import stt_core

    reg = Registry()
    reg.load_entry_points()
    info = reg.get("energy")
    assert (info.distribution, info.version) == ("stt-plugin-energy", "0.1.0")
    energy = reg.create("energy", {"threshold_db": -30})
    audio = stt_core.Audio.from_file(ROOT / "tests" / "fixtures" / "audio" / "two_utterances.wav")
    failing = FakeProvider(name="down", script=[stt_core.ProviderUnavailable("down")])
    result = asyncio.run(Chain([failing, energy]).transcribe(audio))
    assert result.provider == "energy"
    assert [s.text for s in result.segments] == ["[speech]", "[speech]"]  # two utterances
    assert result.segments[0].end < 2.0 < result.segments[1].start

    env = {**os.environ, "COLUMNS": "200"}
    shown = subprocess.run([*STT_CORE, "providers"], env=env, capture_output=True, text=True, check=True)
    assert "energy" in shown.stdout and "stt-plugin-energy" in shown.stdout


@pytest.mark.slow
def test_example_plugin_passes_the_conformance_suite_via_the_pytest_plugin(
    example_installed: None,
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        cwd=EXAMPLE,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "6 passed, 3 skipped" in run.stdout  # the HTTP error-mapping checks skip: a local engine


BROKEN = {  # (distribution, module, entry point) -> source: every way a plugin can be broken
    ("stt-raising-hook", "stt_raising_hook", "raising"): """
        import stt_core

        @stt_core.hookimpl
        def register_providers(register):
            raise RuntimeError("the hook exploded")
    """,
    ("stt-bad-register", "stt_bad_register", "badreg"): """
        import stt_core

        @stt_core.hookimpl
        def register_providers(register):
            register(42)
    """,
    ("stt-abstract", "stt_abstract", "abstract"): """
        import stt_core

        class Abstract(stt_core.Provider):
            name = "abstract"

        @stt_core.hookimpl
        def register_providers(register):
            register(Abstract)
    """,
    ("stt-checky", "stt_checky", "checky"): """
        import stt_core
        from stt_core.testing import FakeProvider

        class Checky(FakeProvider):
            name = "checky"

            @classmethod
            def unavailable_reason(cls, settings):
                raise KeyError("boom")

        @stt_core.hookimpl
        def register_providers(register):
            register(Checky)
    """,
    ("stt-broken", "stt_broken", "broken"): "raise ImportError('needs libfoo')\n",
}


def test_broken_plugins_of_every_kind_leave_the_host_working(site: Path, tmp_path: Path) -> None:
    for (dist, module, entry), source in BROKEN.items():
        install_dist(site, dist, module, source, entry)
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "250"}
    fox = str(ROOT / "tests" / "fixtures" / "audio" / "fox.wav")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*STT_CORE, *args], env=env, capture_output=True, text=True, cwd=tmp_path,
                              timeout=120, check=False)

    listed = cli("providers")
    assert listed.returncode == 0, listed.stderr
    for expected in ("the hook exploded", "got 42", "does not implement _transcribe",
                     "could not tell whether it can serve: KeyError", "needs libfoo", "whisper"):
        assert expected in listed.stdout, expected
    assert "Traceback" not in listed.stdout + listed.stderr

    # A chain of other engines works; the engine whose check raises is passed, not fatal.
    done = cli("transcribe", fox, "--chain", "checky,whisper")
    assert done.returncode == 0 and "fox" in done.stdout.lower(), done.stderr
    assert "checky skipped" in done.stderr or "checky unavailable" in done.stderr
    api = subprocess.run(
        [sys.executable, "-c", "import stt_core; c = stt_core.load_config().build_chain(names=['whisper']); "
         "print(type(c.providers[0]).__name__)"],
        env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120, check=True)
    assert api.stdout.strip() == "WhisperProvider"

    # A plugin that failed to load is not "not installed": it says so, and why.
    broken = cli("transcribe", fox, "--chain", "broken")
    assert broken.returncode == 1
    assert "'broken' is installed (stt-broken) but failed to load: ImportError: needs libfoo" in broken.stderr


ONE_BAD_CLASS = """
    import stt_core
    from stt_core.testing import FakeProvider

    class BrokenAbstract(stt_core.Provider):
        name = "broken-abstract"

    class BrokenReason(FakeProvider):
        name = "broken-reason"

        @classmethod
        def unavailable_reason(cls, settings):
            raise KeyError("no reason today")

    class BrokenCtor(FakeProvider):
        name = "broken-ctor"

        def __init__(self, *args, **kwargs):
            raise RuntimeError("cannot build me")

    @stt_core.hookimpl
    def register_providers(register):
        register(BrokenAbstract)
        register(BrokenReason)
        register(BrokenCtor)
"""


def test_one_bad_class_costs_only_itself_not_the_plugins_other_engines(site: Path, tmp_path: Path) -> None:
    install_dist(site, "stt-core-broken", "stt_core_broken", ONE_BAD_CLASS, "broken")
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "250"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*STT_CORE, *args], env=env, capture_output=True, text=True, cwd=tmp_path,
                              timeout=180, check=False)

    listed = cli("providers")
    assert listed.returncode == 0, listed.stderr
    rows = provider_entries(listed.stdout)
    assert rows["broken-reason"]["can serve"].startswith("no: broken-reason could not tell whether it can "
                                                         "serve: KeyError")
    assert rows["broken-ctor"]["can serve"].startswith("no: RuntimeError: cannot build me")
    assert ("failed to load stt-core-broken (broken-abstract): TypeError: BrokenAbstract ('broken-abstract') "
            "does not implement _transcribe") in listed.stdout

    fox = str(ROOT / "tests" / "fixtures" / "audio" / "fox.wav")
    done = cli("transcribe", fox, "--chain", "broken-reason,broken-ctor,whisper")
    assert done.returncode == 0, done.stderr
    assert "fox" in done.stdout.lower()
    assert "'broken-ctor' is installed but cannot be built: RuntimeError: cannot build me" in done.stderr
    assert "could not tell whether it can serve" in done.stderr
    # Installed but refused: said so, with why (a failure, exit 1); a name nobody registered stays a typo.
    refused = cli("transcribe", fox, "--chain", "broken-abstract")
    assert refused.returncode == 1, refused.stderr
    assert "'broken-abstract' is installed (stt-core-broken) but failed to load" in refused.stderr
    typo = cli("transcribe", fox, "--chain", "broken-reasn")
    assert typo.returncode == 2 and "unknown engine 'broken-reasn'" in typo.stderr
    assert "did you mean 'broken-reason'" in typo.stderr
