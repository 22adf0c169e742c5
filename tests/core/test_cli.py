"""The stt-core command, run as a user runs it: a subprocess, exit codes, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tables import table_rows

AUDIO = Path(__file__).parents[1] / "fixtures" / "audio"
SECRET = "gsk_live_secret_0123456789"


def stt(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "stt_core.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_import_and_providers_load_no_engine() -> None:
    code = (
        "import sys, stt_core; from stt_core.cli import main; main(['providers']);"
        "heavy = [m for m in ('torch', 'funasr', 'faster_whisper', 'ctranslate2', 'groq',"
        " 'deepgram', 'livekit') if m in sys.modules]; assert not heavy, heavy"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_missing_file_is_exit_2_with_one_line(tmp_path: Path) -> None:
    run = stt("transcribe", str(tmp_path / "nope.wav"), "--chain", "whisper", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in run.stderr


def test_empty_file_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    run = stt("transcribe", "empty.wav", cwd=tmp_path)
    assert run.returncode == 2 and "file is empty" in run.stderr and "Traceback" not in run.stderr


def test_bad_config_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "stt.toml").write_text("chian = []\n")
    run = stt("transcribe", str(AUDIO / "fox.wav"), cwd=tmp_path)
    assert run.returncode == 2 and "unknown config key 'chian'" in run.stderr
    assert "Traceback" not in run.stderr
    debug = stt("--debug", "transcribe", str(AUDIO / "fox.wav"), cwd=tmp_path)
    assert "Traceback" in debug.stderr


def test_every_provider_failing_is_exit_1_with_each_reason(tmp_path: Path) -> None:
    run = stt("transcribe", str(AUDIO / "fox.wav"), "--chain", "funasr,nosuch", cwd=tmp_path)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert "no provider could transcribe" in last and "funasr" in last and "nosuch" in last


def test_config_show_redacts_secrets(tmp_path: Path) -> None:
    (tmp_path / "stt.toml").write_text(f'[deepgram]\napi_key = "{SECRET}"\n')
    run = stt("config", "show", cwd=tmp_path, env={"GROQ_API_KEY": SECRET})
    assert run.returncode == 0
    assert SECRET not in run.stdout + run.stderr
    assert '"api_key": "**********"' in run.stdout


@pytest.mark.parametrize("fmt", ["json", "srt"])
def test_formats_on_an_unusable_chain_still_fail_cleanly(tmp_path: Path, fmt: str) -> None:
    run = stt("transcribe", str(AUDIO / "fox.wav"), "--chain", "nosuch", "--format", fmt, cwd=tmp_path)
    assert run.returncode == 1 and run.stdout == ""


def test_bench_bad_input_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    run = stt("bench", "empty.wav", cwd=tmp_path)
    assert run.returncode == 2 and "file is empty" in run.stderr and "Traceback" not in run.stderr
    run = stt("bench", str(AUDIO / "fox.wav"), "--repeats", "0", cwd=tmp_path)
    assert run.returncode == 2 and "expected a whole number of at least 1, got '0'" in run.stderr


def test_bench_with_no_engine_that_can_serve_is_exit_1(tmp_path: Path) -> None:
    run = stt("bench", str(AUDIO / "fox.wav"), "--chain", "funasr,nosuch", cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    rows = table_rows(run.stdout)
    assert rows["funasr"][-1].startswith("skipped: model 'iic/SenseVoiceSmall' is not downloaded")
    assert rows["nosuch"][-1].startswith("skipped: ") and "nosuch" in rows["nosuch"][-1]
    assert rows["chain"][-1].startswith("failed: no provider could transcribe")
