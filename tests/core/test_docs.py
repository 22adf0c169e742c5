"""docs/plugins.md followed to the letter, as a plugin author would: its own snippets make the
distribution, which installs into a fresh venv beside stt-core built from this repository, and
does there what the doc says it does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOC = (ROOT / "docs" / "plugins.md").read_text()


def snippet(section: str, language: str) -> str:
    """The first ``language`` code block under the heading that starts with ``section``."""
    body = DOC.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    found = re.search(rf"```{language}\n(.*?)```", body, re.DOTALL)
    assert found, f"no {language} block in section {section!r}"
    return found.group(1)


@pytest.mark.slow
def test_a_plugin_built_from_the_docs_snippets_installs_and_works(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "pyproject.toml").write_text(snippet("1.", "toml"))
    # The provider, then the hook that registers it: the module the entry point names.
    (plugin / "stt_plugin_myengine.py").write_text(snippet("3.", "python") + "\n" + snippet("2.", "python"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(ROOT)], check=True, timeout=600)  # stt-core, as a wheel built here
    subprocess.run([*pip, str(plugin)], check=True, timeout=600)  # as section 1 says: pip install .

    env = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "VIRTUAL_ENV"))}
    env["COLUMNS"] = "200"
    stt = str(venv / "bin" / "stt-core")
    listed = subprocess.run([stt, "providers"], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=120, check=True)
    row = next(line for line in listed.stdout.splitlines() if "myengine" in line)
    assert "stt-plugin-myengine" in row and "no API key: set STT_MYENGINE__API_KEY" in row

    # "The [myengine] table of stt.toml and the STT_MYENGINE__<FIELD> variables ... reach self.settings"
    (tmp_path / "stt.toml").write_text('chain = ["myengine"]\n[myengine]\nmodel = "v2-file"\n')
    env |= {"STT_MYENGINE__MODEL": "v3", "STT_MYENGINE__API_KEY": "sk-doc-test-key"}
    shown = subprocess.run([stt, "config", "show"], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=120, check=True)
    settings = json.loads(shown.stdout)["myengine"]
    assert settings == {"api_key": "**********", "model": "v3"}  # the environment wins; the key hidden
    probe = ("import stt_core; p = stt_core.load_config().build_chain().providers[0]; "
             "print(type(p).__name__, p.settings.model, p.why_unavailable(), p.model)")
    built = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=120, check=True)
    assert built.stdout.split() == ["MyEngine", "v3", "None", "v3"]
