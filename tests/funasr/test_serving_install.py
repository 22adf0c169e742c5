"""The two funasr installs, from wheels in fresh venvs, as the README gives them:

- serving, `pip install stt-core-funasr` (what `stt-core[funasr]` installs): no torch, no funasr, no
  CUDA, a fraction of the size, and it transcribes with the tiny model's committed ONNX export;
- export, `pip install torch==2.13.0` (the CPU build: here it lies on disk, elsewhere the README's
  index URL) and then `stt-core-funasr[torch]`: the CPU torch stays, nothing from nvidia comes,
  and `stt-core models export funasr` makes the files serving reads;

and what pip would install for every extra of every distribution of this repo, resolved with
nothing installed: never torch, never an nvidia-* wheel (pip cannot be told which torch build to
take, so no extra may name torch, even through another package)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from fakes.modelscope_api import FakeModelScope
from speech import TINY_SENSEVOICE

ROOT = Path(__file__).parents[2]
CHAIRS = ROOT / "tests" / "fixtures" / "audio" / "chairs.wav"
TORCH_INSTALL_MB = 1900  # stt-core[funasr] with torch and funasr, as issue 17 measured it
DISTS = [ROOT, *sorted((ROOT / "providers").iterdir()), *sorted((ROOT / "adapters").iterdir())]
PIP = ["-m", "pip", "--disable-pip-version-check"]
INSTALL = [*PIP, "install", "-q", "--no-compile"]  # no .pyc written: 18 CPU-s of torch's modules, unused


@pytest.fixture(scope="module")
def wheels(dists: Path) -> Path:
    return dists  # `make dists`, once per run: every distribution's wheel (and sdist)


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin"


def _installed(bin_dir: Path) -> dict[str, str]:
    listed = subprocess.run([str(bin_dir / "python"), *PIP, "list", "--format=json"], capture_output=True,
                            text=True, check=True).stdout
    return {p["name"].lower(): p["version"] for p in json.loads(listed)}


def _stt_core(bin_dir: Path, *args: str, cwd: Path, extra_env: dict[str, str] | None = None,
              ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "VIRTUAL_ENV"))}
    return subprocess.run([str(bin_dir / "stt-core"), *args], capture_output=True, text=True, cwd=cwd,
                          env={**env, **(extra_env or {})}, timeout=300)


def _config(directory: Path, model: Path) -> None:
    (directory / "stt.toml").write_text(f'chain = ["funasr"]\n[funasr]\nmodel = "{model}"\n'
                                        "min_free_memory_gb = 0\n")


@pytest.mark.slow
def test_the_serving_install_has_no_torch_and_transcribes(
    tmp_path: Path, wheels: Path, serve_in_thread: Callable[[web.Application], str]
) -> None:
    bin_dir = _venv(tmp_path / "venv")
    subprocess.run([str(bin_dir / "python"), *INSTALL, "--find-links", str(wheels),
                    "stt-core-funasr"], check=True, timeout=600)
    names = set(_installed(bin_dir))
    assert not names & {"torch", "funasr", "torchaudio", "silero-vad"}
    assert not any(name.startswith("nvidia-") for name in names)

    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    size_mb = sum(f.stat().st_size for f in site.rglob("*") if f.is_file()) / 1e6
    print(f"serving install: {size_mb:.0f} MB in site-packages")
    assert size_mb * 4 <= TORCH_INSTALL_MB

    _config(tmp_path, TINY_SENSEVOICE)
    done = _stt_core(bin_dir, "transcribe", str(CHAIRS), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "We need 25 chairs for the party."
    # What it says with a VAD that needs torch: how to install it, the CPU build first.
    shown = _stt_core(bin_dir, "providers", cwd=tmp_path, extra_env={"COLUMNS": "400",
                                                                       "STT_FUNASR__VAD": "silero-vad"})
    said = " ".join(shown.stdout.split())  # a reason wraps between words
    assert "vad 'silero-vad' runs through funasr and torch" in said
    assert "torch is not installed: install torch first (pip install torch --index-url" in said
    assert "pip install 'stt-core[funasr-torch]' silero-vad" in said  # installed by name: the index's words
    # A model directory with no ONNX export: the whole hint, in the one error line, cut nowhere.
    unexported = tmp_path / "unexported"
    shutil.copytree(TINY_SENSEVOICE, unexported, ignore=shutil.ignore_patterns("*.onnx*"))
    _config(tmp_path, unexported)
    refused = _stt_core(bin_dir, "transcribe", str(CHAIRS), cwd=tmp_path)
    assert refused.returncode == 1
    [said] = [line for line in refused.stderr.splitlines() if "no ONNX model in" in line]
    assert f"funasr unavailable: no ONNX model in {unexported}: run `stt-core models export funasr`" in said
    assert said.endswith("or use an exported ONNX model directory"), said

    # SenseVoice from the first hint, with the default settings: the hint says, before any download,
    # what the download fetches (the published ONNX export: no torch) and what to do without ModelScope;
    # followed against a fake ModelScope on 127.0.0.1 (the tiny model's files under the real names),
    # it ends with a model that runs.
    home = tmp_path / "default"
    home.mkdir()
    (home / "stt.toml").write_text('chain = ["funasr"]\n')
    env = {"STT_CORE_MODELS_DIR": str(tmp_path / "models"), "MODELSCOPE_CACHE": str(tmp_path / "ms-cache")}
    listed = json.loads(_stt_core(bin_dir, "providers", "--json", cwd=home, extra_env=env).stdout)
    [reason] = [p["reason"] for p in listed["providers"] if p["name"] == "funasr"]
    assert reason.startswith("model 'iic/SenseVoiceSmall' is not downloaded: run `stt-core models download "
                             "funasr` (its ONNX export, iic/SenseVoiceSmall-onnx, and the tokenizer from "
                             "ModelScope, about 240 MB, into "), reason
    assert reason.endswith(": no torch needed); where ModelScope cannot be reached, copy an exported model "
                           "directory (model_quant.onnx, am.mvn, config.yaml and the *.bpe.model tokenizer) "
                           "to this machine and set [funasr] model to it"), reason
    hub = FakeModelScope()
    hub.hold("iic/SenseVoiceSmall-onnx", TINY_SENSEVOICE,
             ["model_quant.onnx", "am.mvn", "config.yaml"])  # no tokenizer
    hub.hold("iic/SenseVoiceSmall", TINY_SENSEVOICE,
             ["model.pt", "config.yaml", "configuration.json", "am.mvn",
              "chn_jpn_yue_eng_ko_spectok.bpe.model"])
    fetched = _stt_core(bin_dir, "models", "download", "funasr", cwd=home,
                        extra_env={**env, "MODELSCOPE_ENDPOINT": serve_in_thread(hub.app())})
    assert fetched.returncode == 0, fetched.stderr
    assert not [path for path in hub.requests if "model.pt" in path]  # no torch weights: nothing to export
    heard = _stt_core(bin_dir, "transcribe", str(CHAIRS), cwd=home, extra_env=env)
    assert heard.returncode == 0, heard.stderr
    assert heard.stdout.strip() == "We need 25 chairs for the party."


@pytest.mark.slow
def test_the_export_install_keeps_the_cpu_torch_and_exports(tmp_path: Path, wheels: Path) -> None:
    bin_dir = _venv(tmp_path / "venv")
    python = str(bin_dir / "python")
    subprocess.run([python, *INSTALL, "torch==2.13.0"], check=True, timeout=600)
    before = _installed(bin_dir)["torch"]
    subprocess.run([python, *INSTALL, "--find-links", str(wheels), "stt-core-funasr[torch]"],
                   check=True, timeout=900)
    after = _installed(bin_dir)
    assert after["torch"] == before
    assert "funasr" in after and "onnx" in after
    assert not any(name.startswith("nvidia-") for name in after)

    model = tmp_path / "model"  # the tiny model without its committed exports
    shutil.copytree(TINY_SENSEVOICE, model, ignore=shutil.ignore_patterns("*.onnx*"))
    exported = _stt_core(bin_dir, "models", "export", "funasr", "--model", str(model), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert (model / "model_quant.onnx").is_file() and (model / "model.onnx").is_file()

    _config(tmp_path, model)
    done = _stt_core(bin_dir, "transcribe", str(CHAIRS), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "We need 25 chairs for the party."


@pytest.mark.slow
def test_no_extra_of_any_distribution_resolves_torch_or_cuda(tmp_path: Path, wheels: Path) -> None:
    wanted = []
    for dist in DISTS:
        project = tomllib.loads((dist / "pyproject.toml").read_text())["project"]
        extras = sorted(project.get("optional-dependencies", {}))
        wanted.append(f"{project['name']}[{','.join(extras)}]" if extras else project["name"])
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, *PIP, "install", "-q", "--dry-run", "--ignore-installed",
                    "--find-links", str(wheels), "--report", str(report), *wanted], check=True, timeout=600)
    resolved = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "stt-core-funasr" in resolved and "funasr" in resolved  # the torch extra was resolved
    assert "torch" not in resolved
    assert not [name for name in resolved if name.startswith("nvidia-")]
