"""`pip install stt-core-funasr` (what `stt-core[funasr]` installs) from wheels in a fresh venv:
no torch, no funasr, no CUDA, a fraction of the size, and it transcribes with the tiny model's
committed ONNX export."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
TINY = ROOT / "tests" / "fixtures" / "funasr" / "tiny-sensevoice"
TORCH_INSTALL_MB = 1900  # stt-core[funasr] with torch and funasr, as issue 17 measured it


@pytest.mark.slow
def test_the_serving_install_has_no_torch_and_transcribes(tmp_path: Path) -> None:
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(ROOT), str(ROOT / "providers" / "funasr")],
                   check=True, timeout=300)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--find-links",
                    str(wheels), "stt-core-funasr"], check=True, timeout=600)
    listed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                            check=True).stdout.lower()
    names = {line.split("==")[0] for line in listed.splitlines()}
    assert not names & {"torch", "funasr", "torchaudio", "silero-vad"}
    assert not any(name.startswith("nvidia-") for name in names)

    site = next((venv / "lib").glob("python3*/site-packages"))
    size_mb = sum(f.stat().st_size for f in site.rglob("*") if f.is_file()) / 1e6
    print(f"serving install: {size_mb:.0f} MB in site-packages")
    assert size_mb * 4 <= TORCH_INSTALL_MB

    config = f'chain = ["funasr"]\n[funasr]\nmodel = "{TINY}"\nmin_free_memory_gb = 0\n'
    (tmp_path / "stt.toml").write_text(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "VIRTUAL_ENV"))}
    done = subprocess.run([str(venv / "bin" / "stt-core"), "transcribe", str(ROOT / "tests" / "fixtures" /
                           "audio" / "chairs.wav")], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "We need 25 chairs for the party."
    # What it says without an export, and with a VAD that needs torch.
    shown = subprocess.run([str(venv / "bin" / "stt-core"), "providers"], capture_output=True, text=True,
                           cwd=tmp_path, env={**env, "COLUMNS": "300", "STT_FUNASR__VAD": "silero-vad"},
                           timeout=120)
    assert "runs through funasr and torch: pip install 'stt-core-funasr[torch]'" in shown.stdout
