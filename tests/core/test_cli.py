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
NO_KEYS = {"GROQ_API_KEY": "", "DEEPGRAM_API_KEY": ""}


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
    # Engines that exist but cannot serve here: no model downloaded, no key.
    run = stt("transcribe", str(AUDIO / "fox.wav"), "--chain", "funasr,groq", cwd=tmp_path, env=NO_KEYS)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert "no provider could transcribe" in last and "funasr" in last and "groq: no API key" in last


def test_config_show_redacts_secrets(tmp_path: Path) -> None:
    (tmp_path / "stt.toml").write_text(f'[deepgram]\napi_key = "{SECRET}"\n')
    run = stt("config", "show", cwd=tmp_path, env={"GROQ_API_KEY": SECRET})
    assert run.returncode == 0
    assert SECRET not in run.stdout + run.stderr
    assert '"api_key": "**********"' in run.stdout


@pytest.mark.parametrize("fmt", ["json", "srt"])
def test_formats_on_an_unusable_chain_still_fail_cleanly(tmp_path: Path, fmt: str) -> None:
    fox = str(AUDIO / "fox.wav")
    run = stt("transcribe", fox, "--chain", "groq", "--format", fmt, cwd=tmp_path, env=NO_KEYS)
    assert run.returncode == 1 and run.stdout == ""


def test_bench_bad_input_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    run = stt("bench", "empty.wav", cwd=tmp_path)
    assert run.returncode == 2 and "file is empty" in run.stderr and "Traceback" not in run.stderr
    run = stt("bench", str(AUDIO / "fox.wav"), "--repeats", "0", cwd=tmp_path)
    assert run.returncode == 2 and "expected a whole number of at least 1, got '0'" in run.stderr


def test_bench_with_no_engine_that_can_serve_is_exit_1(tmp_path: Path) -> None:
    run = stt("bench", str(AUDIO / "fox.wav"), "--chain", "funasr,groq", cwd=tmp_path, env=NO_KEYS)
    assert run.returncode == 1, run.stderr
    rows = table_rows(run.stdout)
    assert rows["funasr"][-1].startswith("skipped: model 'iic/SenseVoiceSmall' is not downloaded")
    assert rows["groq"][-1].startswith("skipped: no API key")
    assert rows["chain"][-1].startswith("failed: no provider could transcribe")


@pytest.mark.parametrize(("toml", "env", "said"), [
    ('chain = ["whisperr"]', {}, "unknown engine 'whisperr' in chain in stt.toml"),
    ("", {"STT_CHAIN": "whisperr,whisper"}, "unknown engine 'whisperr' in STT_CHAIN"),
    ("", {"STT_PROVIDER": "nosuch"}, "unknown engine 'nosuch' in STT_PROVIDER"),
    ("[whsiper]\nmodel = 'bundled'", {}, "unknown section [whsiper] in stt.toml; did you mean 'whisper'?"),
    ("", {"STT_WHSIPER__MODEL": "bundled"}, "unknown section [whsiper] in the environment; did you mean"),
    ("", {"STT_CHIAN": "whisper"}, "unknown setting STT_CHIAN in the environment; did you mean STT_CHAIN?"),
])
def test_typos_are_config_errors_that_name_them(
    tmp_path: Path, toml: str, env: dict[str, str], said: str
) -> None:
    (tmp_path / "stt.toml").write_text(toml)
    for args in (["config", "show"], ["transcribe", str(AUDIO / "fox.wav")]):
        done = stt(*args, env=env, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_close_engine_name_gets_a_suggestion(tmp_path: Path) -> None:
    done = stt("transcribe", str(AUDIO / "fox.wav"), "--chain", "whisperr", cwd=tmp_path)
    assert done.returncode == 2 and "did you mean 'whisper'?" in done.stderr


def test_a_language_that_is_no_language_code_is_exit_2(tmp_path: Path) -> None:
    fox = str(AUDIO / "fox.wav")
    done = stt("transcribe", fox, "--chain", "whisper", "--language", "klingon", cwd=tmp_path)
    assert done.returncode == 2 and "'klingon' is not a language code" in done.stderr


def test_json_names_the_engine_that_answered_not_the_chain(tmp_path: Path) -> None:
    import json

    fox = str(AUDIO / "fox.wav")
    done = stt("transcribe", fox, "--chain", "groq,whisper", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["provider"] == "whisper" and "->" not in str(result["model"])
