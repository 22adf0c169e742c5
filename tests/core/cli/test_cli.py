"""The stt-core command, run as a user runs it: a subprocess, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from speech import MAX_WER, TINY_SENSEVOICE, wer
from stt_core import Audio, install_command
from tables import provider_entries, table_rows

AUDIO = Path(__file__).parents[2] / "fixtures" / "audio"
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


def test_a_message_is_printed_as_it_is_not_read_for_emoji_codes(tmp_path: Path) -> None:
    # rich turned ":1234:" (in "127.0.0.1:1234: Connection refused") into an emoji.
    run = stt("transcribe", "take:1234:thumbs_up:.wav", "--chain", "whisper", cwd=tmp_path)
    assert run.returncode == 2 and "take:1234:thumbs_up:.wav" in run.stderr, run.stderr


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
    fox = str(AUDIO / "fox.wav")
    run = stt("transcribe", fox, fox, "--chain", "funasr,groq", cwd=tmp_path, env=NO_KEYS)
    assert run.returncode == 1
    said = run.stderr.strip().splitlines()
    assert said[0].startswith("funasr unavailable: model 'iic/SenseVoiceSmall' is not downloaded")
    assert said[1] == "groq unavailable: no API key; set GROQ_API_KEY (or [groq] api_key)"
    assert said[2:] == [f"error: {fox}: no provider could transcribe the audio (funasr: as said above; "
                        "groq: as said above)"] * 2  # each reason once, however many files
    quiet = stt("transcribe", fox, "--chain", "funasr,groq", "--quiet", cwd=tmp_path, env=NO_KEYS)
    assert quiet.returncode == 1 and "groq: no API key" in quiet.stderr  # not said above: said here


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
    (tmp_path / "10ms.wav").write_bytes(Audio.silence(0.01).encode())  # decodes; too short for any engine
    run = stt("bench", "10ms.wav", "--chain", "whisper", cwd=tmp_path)
    assert run.returncode == 2 and "too short to recognise" in run.stderr, run.stderr


def test_bench_with_no_engine_that_can_serve_is_exit_1(tmp_path: Path) -> None:
    run = stt("bench", str(AUDIO / "fox.wav"), "--chain", "funasr,groq", cwd=tmp_path, env=NO_KEYS)
    assert run.returncode == 1, run.stderr
    header = next(line for line in run.stdout.splitlines() if "engine" in line)
    assert [cell.strip() for cell in header.strip("┃ ").split("┃")] == [  # each number names its unit
        "engine", "load ms", "first call ms", "median ms", "speed audio s/s", "result"]
    assert "speed: seconds of audio transcribed per second" in run.stdout
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
    ('[whisper]\nmodle = "small"', {}, "whisper.modle: unknown key; did you mean 'model'?"),
    ("atempt_timeout = 5", {}, "key 'atempt_timeout' in stt.toml; did you mean 'attempt_timeout'?"),
    ("[retry]\natempts = 2", {}, "bad config in stt.toml: retry.atempts: unknown key; did you mean"),
    ('chain = ["whisper"]', {"STT_RETRY__ATEMPTS": "5"}, "bad config in the environment: retry.atempts"),
    ('attempt_timeout = "abc"', {"STT_CHAIN": "whisper"}, "bad config in stt.toml: attempt_timeout"),
    ("", {"STT_WHISPER__BEAM_SIZ": "2"}, "whisper.beam_siz: unknown key; did you mean 'beam_size'?"),
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


def test_debug_goes_after_the_subcommand_too_and_version_is_there(tmp_path: Path) -> None:
    done = stt("transcribe", str(AUDIO / "fox.wav"), "--chain", "whisper", "--debug", cwd=tmp_path)
    assert done.returncode == 0 and "DEBUG stt_core" in done.stderr
    version = stt("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip().startswith("stt-core 0.")


def test_subtitles_and_one_file_per_input(tmp_path: Path) -> None:
    fox, lights = str(AUDIO / "fox.wav"), str(AUDIO / "lights.wav")
    vtt = stt("transcribe", fox, "--chain", "whisper", "--format", "vtt", cwd=tmp_path)
    assert vtt.returncode == 0 and vtt.stdout.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:0")
    many = stt("transcribe", fox, lights, "--chain", "whisper", "--format", "srt", cwd=tmp_path)
    assert many.returncode == 2 and "use --output-dir" in many.stderr  # not one invalid SRT on stdout
    written = stt("transcribe", fox, lights, "--chain", "whisper", "--format", "srt",
                  "--output-dir", str(tmp_path / "subs"), cwd=tmp_path)
    assert written.returncode == 0 and written.stdout == ""
    assert sorted(p.name for p in (tmp_path / "subs").iterdir()) == ["fox.srt", "lights.srt"]
    assert (tmp_path / "subs" / "fox.srt").read_text().startswith("1\n00:00:00,000 --> ")
    one = stt("transcribe", fox, "--chain", "whisper", "-o", str(tmp_path / "fox.txt"), cwd=tmp_path)
    assert one.returncode == 0 and "fox" in (tmp_path / "fox.txt").read_text().lower()
    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "fox.wav").write_bytes((AUDIO / "lights.wav").read_bytes())
    both = stt("transcribe", fox, str(tmp_path / "again" / "fox.wav"), "--chain", "whisper",
               "--output-dir", str(tmp_path / "texts"), cwd=tmp_path)
    assert both.returncode == 2 and "several inputs are named 'fox'" in both.stderr  # not one over the other
    texts = stt("transcribe", fox, lights, "--chain", "whisper", "--output-dir", str(tmp_path / "texts"),
                cwd=tmp_path)
    assert texts.returncode == 0 and not (tmp_path / "texts" / "fox.txt").read_text().startswith("#")


def test_json_for_several_files_is_one_object_per_line(tmp_path: Path) -> None:
    import json

    fox, lights = str(AUDIO / "fox.wav"), str(AUDIO / "lights.wav")
    done = stt("transcribe", fox, lights, "--chain", "whisper", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0
    assert [json.loads(line)["file"] for line in done.stdout.splitlines()] == [fox, lights]


def test_several_files_as_json_lines_in_one_file_with_word_times(tmp_path: Path) -> None:
    fox, lights = str(AUDIO / "fox.wav"), str(AUDIO / "lights.wav")
    done = stt("transcribe", fox, lights, "--chain", "whisper", "--format", "json", "--word-timestamps",
               "-o", "out/all.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    results = [json.loads(line) for line in (tmp_path / "out" / "all.jsonl").read_text().splitlines()]
    assert [r["file"] for r in results] == [fox, lights]
    for result, name in zip(results, ("fox", "lights"), strict=True):
        words = [w for segment in result["segments"] for w in segment["words"]]
        assert wer(name, " ".join(w["text"] for w in words)) <= MAX_WER, words
        assert all(w["start"] <= w["end"] for w in words)
    refused = stt("transcribe", fox, lights, "--format", "srt", "-o", "all.srt", cwd=tmp_path)
    assert refused.returncode == 2 and "use --output-dir DIR" in refused.stderr


def test_an_engines_own_warnings_stay_out_of_the_output(tmp_path: Path) -> None:
    env = {"STT_FUNASR__MODEL": str(TINY_SENSEVOICE), "STT_FUNASR__VAD": "none"}
    done = stt("transcribe", str(AUDIO / "chairs.wav"), "--chain", "funasr", cwd=tmp_path, env=env)
    assert done.returncode == 0 and "25 chairs" in done.stdout
    assert "trust_remote_code" not in done.stdout + done.stderr  # funasr's root-logger warning


def _encoded(target: Path, codec: str) -> Path:
    """fox.wav in another container, made with PyAV's own encoders (no ffmpeg binary needed)."""
    import av
    import numpy as np

    from stt_core import Audio

    samples = Audio.from_file(AUDIO / "fox.wav").to(sample_rate=48_000, channels=1).float32()
    with av.open(str(target), "w") as out:
        stream = out.add_stream(codec, rate=48_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T), format="flt", layout="mono")
        frame.sample_rate = 48_000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return target


@pytest.mark.parametrize(("name", "codec"), [("fox.m4a", "aac"), ("fox.webm", "libopus")])
def test_containers_libsndfile_cannot_read_are_decoded(tmp_path: Path, name: str, codec: str) -> None:
    done = stt("transcribe", str(_encoded(tmp_path / name, codec)), "--chain", "whisper", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "lazy dog" in done.stdout.lower()  # lossy AAC/Opus: tiny.en may mishear "brown fox"


def test_audio_from_stdin_and_from_a_fifo(tmp_path: Path) -> None:
    import threading

    wav = (AUDIO / "fox.wav").read_bytes()
    piped = subprocess.run([sys.executable, "-m", "stt_core.cli", "transcribe", "-", "--chain", "whisper"],
                           input=wav, capture_output=True, cwd=tmp_path, timeout=120, check=False)
    assert piped.returncode == 0, piped.stderr
    assert wer("fox", piped.stdout.decode()) <= MAX_WER, piped.stdout
    fifo = tmp_path / "audio.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(wav))
    writer.start()
    done = stt("transcribe", str(fifo), "--chain", "whisper", cwd=tmp_path)
    writer.join(timeout=10)
    assert done.returncode == 0, done.stderr
    assert wer("fox", done.stdout) <= MAX_WER, done.stdout


def test_a_truncated_wav_is_transcribed_with_a_warning(tmp_path: Path) -> None:
    import json

    cut = tmp_path / "cut.wav"
    cut.write_bytes((AUDIO / "two_utterances.wav").read_bytes()[:60_000])  # the header promises 5.1 s
    done = stt("transcribe", str(cut), "--chain", "whisper", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "cut.wav is truncated" in done.stderr
    result = json.loads(done.stdout)
    assert "truncated" in result["metadata"]["warnings"][0] and result["text"]


def test_providers_reads_at_80_columns_with_no_word_cut_and_as_json(tmp_path: Path) -> None:
    def providers(*args: str, **env: str) -> str:
        return subprocess.run([sys.executable, "-m", "stt_core.cli", "providers", *args], cwd=tmp_path,
                              env={**os.environ, **NO_KEYS, **env}, capture_output=True, text=True,
                              timeout=120, check=True).stdout

    shown, listed = providers(COLUMNS="80"), json.loads(providers("--json"))
    lines = shown.splitlines()
    assert all(len(line) <= 80 or " " not in line.strip() for line in lines), shown  # a path keeps its line
    assert len(lines) <= 4 * len(listed["providers"]), shown  # it was 45 lines for 5 engines
    entries = provider_entries(shown)
    assert sorted(entries) == sorted(p["name"] for p in listed["providers"])
    for engine in listed["providers"]:  # joined back, each reason is the whole one: no word was cut
        said = entries[engine["name"]]
        assert said["can serve"] == ("yes" if engine["can_serve"] else f"no: {engine['reason']}")
        assert said.get("model") == engine["model"]
    funasr = next(p for p in listed["providers"] if p["name"] == "funasr")
    assert funasr["can_serve"] is False and "is not downloaded" in funasr["reason"]
    assert funasr["capabilities"]["languages"] == ["en", "ja", "ko", "yue", "zh"]
    assert listed["failed_to_load"] == []
    none = providers(STT_CORE_LOAD_PLUGINS="")
    assert "No engine is installed" in none and f"{install_command('whisper')};" in " ".join(none.split())
    nothing = json.loads(providers("--json", STT_CORE_LOAD_PLUGINS=""))
    assert nothing == {"providers": [], "failed_to_load": []}


def _engine_plugin(tmp_path: Path, name: str, body: str = "") -> dict[str, str]:
    """An engine ``name`` installed as a plugin distribution (a FakeProvider answering 'hello
    world', with ``body`` added to its class): the environment that makes it importable."""
    site = tmp_path / "site"
    info = site / f"stt_{name}-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (site / f"stt_{name}.py").write_text(
        "import asyncio, stt_core\nfrom stt_core.testing import FakeProvider\n\n"
        f"class Engine(FakeProvider):\n    name = {name!r}\n{body}\n"
        "@stt_core.hookimpl\ndef register_providers(register):\n    register(Engine)\n")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: stt-{name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[stt_core]\n{name} = stt_{name}\n")
    return {"PYTHONPATH": str(site)}


def _quick_engine(tmp_path: Path) -> dict[str, str]:
    """A fast engine ('quick', answers 'hello world'): for long files."""
    return _engine_plugin(tmp_path, "quick")


def test_a_long_file_shows_progress_on_a_terminal_and_stdout_stays_the_result(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(16_000 * 610, dtype=np.int16), 16_000)  # over two 300 s pieces
    env = {**_quick_engine(tmp_path), "FORCE_COLOR": "1"}  # rich treats stderr as a terminal
    done = stt("transcribe", str(long), "--chain", "quick", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "of audio" in done.stderr and "x real time" in done.stderr
    pieces = done.stdout.split("hello world")  # one per piece of at most 300 s, and nothing else
    assert len(pieces) - 1 >= 3 and all(not rest.strip() for rest in pieces)


def test_a_long_file_with_a_piece_no_engine_heard_prints_the_rest_and_exits_1(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(16_000 * 610, dtype=np.int16), 16_000)  # in pieces of at most 300 s
    down = "stt_core.ProviderError('down', provider='flaky')"
    body = ("    def __init__(self, settings=None, /, **fields):\n"
            f"        super().__init__(settings, script=['first', {down}], **fields)\n")
    env = _engine_plugin(tmp_path, "flaky", body)
    done = stt("transcribe", str(long), "--chain", "flaky", cwd=tmp_path, env=env)
    assert done.returncode == 1, done.stderr  # not all of it was transcribed
    heard = done.stdout.split()  # what was (it printed nothing, and the pieces after were never asked)
    assert heard[0] == "first" and heard[1:] and set(heard[1:]) == {"hello", "world"}, done.stdout
    assert re.search(r"long\.wav: \d+\.\d-\d+\.\d s not transcribed: .*down", done.stderr), done.stderr


def test_the_readme_python_snippet_runs_as_a_script(tmp_path: Path) -> None:
    import re

    readme = (Path(__file__).parents[3] / "README.md").read_text()
    snippet = re.search(r"```python\n(import asyncio\n.*?)```", readme, re.DOTALL)
    assert snippet, "the README's first Python snippet"
    script = tmp_path / "snippet.py"
    script.write_text(snippet.group(1))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180,
                          cwd=Path(__file__).parents[3], env={**os.environ, "STT_CHAIN": "whisper"},
                          check=False)
    assert done.returncode == 0, done.stderr
    text, _, rest = done.stdout.partition(" whisper ")  # print(text, provider, attempts)
    assert rest and wer("fox", text) <= MAX_WER, done.stdout


def test_a_long_m4a_goes_through_in_pieces_as_it_decodes(tmp_path: Path) -> None:
    import av
    import numpy as np

    long = tmp_path / "long.m4a"
    with av.open(str(long), "w") as out:  # 610 s of quiet noise, written a second at a time
        stream = out.add_stream("aac", rate=16_000, layout="mono")
        for second in range(610):
            samples = np.random.default_rng(second).normal(0, 0.001, (1, 16_000)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate = 16_000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    done = stt("transcribe", str(long), "--chain", "quick", "--format", "json", cwd=tmp_path,
               env=_quick_engine(tmp_path))
    assert done.returncode == 0, done.stderr
    import json

    result = json.loads(done.stdout)
    assert result["text"].count("hello world") >= 3  # pieces of at most 300 s
    assert result["duration"] == pytest.approx(610, abs=1)


def _slow_engine(tmp_path: Path) -> dict[str, str]:
    """An engine ('slow') that takes 3 s per request and answers 'hello world'."""
    return _engine_plugin(tmp_path, "slow", (
        "    async def _transcribe(self, audio, **options):\n"
        "        await asyncio.sleep(3)\n        return await super()._transcribe(audio, **options)\n"))


def test_a_file_that_takes_seconds_shows_progress_under_the_piece_length(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    medium = tmp_path / "medium.wav"
    sf.write(medium, np.zeros(16_000 * 250, dtype=np.int16), 16_000)  # one request: under 300 s
    env = {**_slow_engine(tmp_path), "FORCE_COLOR": "1"}  # rich treats stderr as a terminal
    done = stt("transcribe", str(medium), "--chain", "slow", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "medium.wav" in done.stderr and "transcribing" in done.stderr and "0:00:0" in done.stderr
    assert done.stdout.strip() == "hello world"
    quick = stt("transcribe", str(AUDIO / "fox.wav"), "--chain", "quick", cwd=tmp_path,
                env={**_quick_engine(tmp_path), "FORCE_COLOR": "1"})
    assert quick.returncode == 0 and "transcribing" not in quick.stderr  # done before a second: no bar


def test_one_status_line_per_file_and_each_missing_engine_said_once(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf

    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(16_000 * 610, dtype=np.int16), 16_000)  # sent in pieces of at most 300 s
    done = stt("transcribe", str(long), str(AUDIO / "fox.wav"), "--chain", "funasr,groq,quick",
               "--output-dir", str(tmp_path / "out"), cwd=tmp_path,
               env={**_quick_engine(tmp_path), **NO_KEYS, "STT_CORE_LOAD_PLUGINS": "stt-quick,stt-core-groq"})
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    [long_line] = [line for line in lines if line.startswith("long.wav: quick")]  # one, for all its pieces
    assert re.fullmatch(r"long\.wav: quick ok x[3-9] \(\d+\.\d\ds\)", long_line), long_line
    assert len([line for line in lines if line.startswith("fox.wav: quick ok (")]) == 1
    assert sum("provider 'funasr' is not installed" in line for line in lines) == 1  # not once per file
    assert sum("groq unavailable: no API key" in line for line in lines) == 1


def test_a_file_named_in_its_own_error_is_named_once(tmp_path: Path) -> None:
    import wave

    with wave.open(str(tmp_path / "rate1.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(1)
        w.writeframes(b"\0\0" * 10)
    done = stt("transcribe", str(tmp_path / "rate1.wav"), "--chain", "whisper", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {tmp_path / 'rate1.wav'}: sample rate 1 Hz is not plausible " \
                                  "(2000 to 384000 Hz)"


def test_config_show_has_every_installed_engine_and_adapter(tmp_path: Path) -> None:
    (tmp_path / "stt.toml").write_text('chain = ["whisper"]\n')
    done = stt("config", "show", cwd=tmp_path, env={"OPENAI_API_KEY": SECRET, "STT_SERVE__API_KEY": SECRET})
    assert done.returncode == 0, done.stderr
    import json

    shown = json.loads(done.stdout)
    for engine in ("whisper", "funasr", "groq", "openai", "deepgram"):  # all installed here
        assert engine in shown, engine
    assert shown["openai"]["api_key"] == "**********" and shown["deepgram"]["api_key"] is None
    assert shown["serve"] == {"host": "127.0.0.1", "port": 8000, "api_key": "**********",
                              "max_upload_mb": 25.0, "max_concurrent": 4, "max_waiting": 64,
                              "shutdown_timeout": 30, "head_timeout": 10.0, "metrics": True,
                              "body_timeout": 120.0, "page": True, "max_realtime_sessions": 8,
                              "max_message_mb": 1.0, "max_buffer_seconds": 60.0,
                              "realtime_idle_timeout": 60.0}
    assert shown["livekit"] == {"shared_inference": False}
    assert shown["ray"] == {  # stt-core-ray's table
        "replicas": 1, "autoscaling": None, "num_cpus": 1.0, "num_gpus": 0.0, "threads": None,
        "max_ongoing_requests": None, "batch_wait_timeout": 0.01, "max_replicas_per_node": None,
        "ingress_replicas": 1, "ingress_num_cpus": 1.0, "reroutes": 2, "status_interval": 1.0,
        "engine_wait": 120.0, "app_name": "stt-core", "route_prefix": "/", "engines": {}}
    assert SECRET not in done.stdout + done.stderr


def test_listen_prints_each_final_of_a_file_streamed_in_real_time(tmp_path: Path) -> None:
    done = stt("listen", str(AUDIO / "two_utterances.wav"), "--chain", "whisper", "--speed", "4")
    assert done.returncode == 0, done.stderr
    finals = done.stdout.strip().splitlines()
    assert len(finals) == 2, done.stdout  # one line per utterance: interims are shown only on a terminal
    import json

    done = stt("listen", str(AUDIO / "two_utterances.wav"), "--chain", "whisper", "--speed", "0",
               "--format", "json")
    times = [e[key] for e in map(json.loads, done.stdout.splitlines()) for key in ("start", "end")]
    assert times and all(t is None or t == round(t, 3) for t in times), times  # not 3.1700000000000004


def test_listen_exits_1_when_an_utterance_got_no_transcript(tmp_path: Path) -> None:
    # groq without a key: each utterance is reported failed, and listening goes on (it exited 0)
    done = stt("listen", str(AUDIO / "two_utterances.wav"), "--chain", "groq", "--speed", "0",
               env=NO_KEYS, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("not transcribed: no provider could transcribe") == 2, done.stderr


def test_listen_reads_raw_pcm_from_a_pipe_and_gives_json_events() -> None:
    import json

    import numpy as np

    from stt_core import Audio

    audio = Audio.from_file(AUDIO / "lights.wav").to(16_000, 1, "float32")
    pcm = (np.concatenate([np.zeros(8000), audio.samples.reshape(-1), np.zeros(16000)]) * 32767)
    full_env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "stt_core.cli", "listen", "-", "--chain", "whisper",
                           "--format", "json"], input=pcm.astype("<i2").tobytes(), capture_output=True,
                          env=full_env, timeout=120)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.decode().splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "speech_start" and kinds[-1] == "final" and "speech_end" in kinds
    assert wer("lights", events[-1]["text"]) <= MAX_WER
    assert events[-1]["provider"] == "whisper" and events[-1]["start"] == pytest.approx(0.5, abs=0.2)
    assert 0.5 <= events[-1]["confidence"] <= 1  # finals carry their engine's confidence
    wav = subprocess.run([sys.executable, "-m", "stt_core.cli", "listen", "-", "--chain", "whisper"],
                         input=(AUDIO / "lights.wav").read_bytes(), capture_output=True, env=full_env,
                         timeout=120)
    assert wav.returncode == 2 and b"stdin holds a WAV file" in wav.stderr  # was: its header heard as PCM



def _on_a_terminal(*args: str, env: dict[str, str]) -> str:
    """What ``stt-core`` writes to a terminal (a pseudo-terminal: stdout and stderr as a user sees
    them, escapes and all)."""
    import pty

    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "stt_core.cli", *args], stdin=subprocess.DEVNULL,
                               stdout=terminal, stderr=terminal, env={**os.environ, **env})
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the process closed its side
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    assert process.wait(timeout=120) == 0, seen.decode(errors="replace")
    return seen.decode()


def test_listen_on_a_terminal_says_it_listens_marks_speech_and_dims_interims(tmp_path: Path) -> None:
    # A quick engine, so that interims come whatever the machine's load (whisper on a busy CPU
    # falls behind and turns them off).
    shown = _on_a_terminal("listen", str(AUDIO / "two_utterances.wav"), "--chain", "quick", "--speed", "1",
                           env={**_quick_engine(tmp_path), "COLUMNS": "100"})
    lines = shown.split("\r\n")
    assert lines[0] == "stt-core listen: loading quick ..."  # before a model loads: no blank screen
    assert lines[1] == "listening to two_utterances.wav (at 1x real time) through quick; Ctrl+C stops"
    live = re.findall(r"\x1b\[2m(.*?)\x1b\[0m", shown)  # the live line, dim
    assert live.count("\u25cf speech ...") == 2, shown  # each utterance marked when the VAD hears it
    assert [text for text in live if "speech ..." not in text], shown  # interims, dim too
    finals = [line.rpartition("\x1b[2K")[2] for line in lines[2:] if line]
    assert finals == ["hello world"] * 2, shown  # plain


@pytest.mark.parametrize(("option", "named"), [
    (["--rate", "99"], "--rate"), (["--channels", "0"], "--channels"),
])
def test_listen_refuses_impossible_pcm_options_in_one_line(option: list[str], named: str) -> None:
    done = stt("listen", "-", *option)
    assert done.returncode == 2 and named in done.stderr and len(done.stderr.splitlines()) == 1


def test_json_output_carries_the_confidence(tmp_path: Path) -> None:
    import json

    done = stt("transcribe", str(AUDIO / "fox.wav"), "--chain", "whisper", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert 0.5 <= shown["confidence"] <= 1 and shown["language"] == "en"
    assert shown["attempts"][0]["outcome"] == "ok"
