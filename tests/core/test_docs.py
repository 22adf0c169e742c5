"""docs/plugins.md followed to the letter, as a plugin author would: its own snippets make the
distribution, its own commands install stt-core from this checkout and then the plugin into a
fresh venv, and run the conformance suite there; each does what the doc says it does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tables import provider_entries

ROOT = Path(__file__).parents[2]
DOC = (ROOT / "docs" / "plugins.md").read_text()


def snippet(section: str, language: str) -> str:
    """The first ``language`` code block under the heading that starts with ``section``."""
    body = DOC.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    found = re.search(rf"```{language}\n(.*?)```", body, re.DOTALL)
    assert found, f"no {language} block in section {section!r}"
    return found.group(1)


def commands(section: str) -> list[list[str]]:
    """The shell commands of a section's first ``sh`` block, comments dropped."""
    lines = (line.split("#", 1)[0].strip() for line in snippet(section, "sh").splitlines())
    return [line.split() for line in lines if line]


@pytest.mark.slow
def test_a_plugin_built_from_the_docs_snippets_installs_and_works(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "pyproject.toml").write_text(snippet("1.", "toml"))
    # The provider, then the hook that registers it: the module the entry point names.
    (plugin / "stt_plugin_myengine.py").write_text(snippet("3.", "python") + "\n" + snippet("2.", "python"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env |= {"COLUMNS": "200", "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_COMPILE": "1"}  # its commands, without .pyc

    def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        """A command of the guide as a user types it, in the venv (its pip, its stt-core)."""
        command = [str(ROOT) if word == "/path/to/stt-core" else word for word in command]
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=600,
                              check=False)
        assert done.returncode == 0, f"{' '.join(command)}: {done.stdout}{done.stderr}"
        return done

    # Section 1, verbatim: the core from this checkout, then the plugin, then the listing.
    installed = [run(command, plugin) for command in commands("1.")]
    listed = provider_entries(installed[-1].stdout)["myengine"]
    assert "stt-plugin-myengine" in listed["about"]
    assert "no API key; set STT_MYENGINE__API_KEY" in listed["can serve"]

    # "The [myengine] table of stt.toml and the STT_MYENGINE__<FIELD> variables ... reach self.settings"
    (tmp_path / "stt.toml").write_text('chain = ["myengine"]\n[myengine]\nmodel = "v2-file"\n')
    env |= {"STT_MYENGINE__MODEL": "v3", "STT_MYENGINE__API_KEY": "sk-doc-test-key"}
    shown = run(["stt-core", "config", "show"], tmp_path)
    settings = json.loads(shown.stdout)["myengine"]
    assert settings == {"api_key": "**********", "model": "v3"}  # the environment wins; the key hidden
    probe = ("import stt_core; p = stt_core.load_config().build_chain().providers[0]; "
             "print(type(p).__name__, p.settings.model, p.why_unavailable(), p.model)")
    built = run(["python", "-c", probe], tmp_path)
    assert built.stdout.split() == ["MyEngine", "v3", "None", "v3"]
    heard = run(["stt-core", "transcribe", str(ROOT / "examples" / "audio" / "fox.wav")], tmp_path)
    assert "bytes heard by v3" in heard.stdout and "myengine ok" in heard.stderr

    # Section 4: the conformance suite, from its own test file and commands.
    (plugin / "test_myengine.py").write_text(snippet("4.", "python"))
    *setup, test = commands("4.")
    for command in setup:
        run(command, plugin)
    checked = run(test, plugin)
    assert "6 passed, 3 skipped" in checked.stdout, checked.stdout
