"""Bad and unusual input through the Python API, the CLI and the LiveKit adapter: each gives a
correct result or one clear InvalidAudioError (exit code 2), and bad input never reaches an
engine, so it cannot start a fallback storm."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import stt_core
from speech import FIXTURES, MAX_WER, wer
from stt_core import Audio, Chain, InvalidAudioError, transcribe_file
from stt_core.testing import FakeProvider


def wav_bytes(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    out = io.BytesIO()
    sf.write(out, samples, rate, format="WAV", subtype=subtype)
    return out.getvalue()


def with_rate(data: bytes, rate: int) -> bytes:
    """A WAV whose header claims ``rate`` (bytes 24-27 of a canonical header)."""
    return data[:24] + struct.pack("<I", rate) + data[28:]


SPEECH = wav_bytes(sf.read(FIXTURES / "lights.wav", dtype="float32")[0], 16_000)

# name -> (file bytes, the InvalidAudioError message, or None when the file is fine)
BAD: dict[str, tuple[bytes, str]] = {
    "empty file": (b"", "is empty"),
    "header, no data": (wav_bytes(np.zeros(0, np.float32), 16_000), "no audio samples"),
    "truncated header": (SPEECH[:30], "cannot decode"),
    "random bytes": (np.random.default_rng(7).bytes(4096), "cannot decode"),
    "rate of 0 Hz": (with_rate(SPEECH, 0), "cannot decode"),
    "absurd rate": (with_rate(SPEECH, 2_000_000_000), "sample rate"),
    "NaN samples": (wav_bytes(np.array([0.1, np.nan, 0.2] * 800, np.float32), 16_000, "FLOAT"),
                    "NaN or infinite"),
    "inf samples": (wav_bytes(np.array([0.1, np.inf, 0.2] * 800, np.float32), 16_000, "FLOAT"),
                    "NaN or infinite"),
}


def unusual(tmp_path: Path) -> dict[str, tuple[Path, Callable[[str], bool]]]:
    """Inputs that must work: name -> (file, check on the transcript text)."""
    lights, rate = sf.read(FIXTURES / "lights.wav", dtype="float32")
    same = lambda text: wer("lights", text) <= MAX_WER  # noqa: E731
    files = {
        "8 kHz telephone audio": ("phone.wav", Audio(lights, rate).to(sample_rate=8_000), same),
        "48 kHz stereo": ("wide.wav", Audio(lights, rate).to(sample_rate=48_000, channels=2), same),
        "5 s of silence": ("silence.wav", Audio.silence(5.0), lambda text: text == ""),
    }
    out = {}
    for name, (filename, audio, check) in files.items():
        path = tmp_path / filename
        sf.write(path, audio.float32(), audio.sample_rate)
        out[name] = (path, check)
    flac_named_wav = tmp_path / "really_flac.wav"  # wrong extension: decoded by content
    sf.write(flac_named_wav, lights, rate, format="FLAC")
    out["wrong extension"] = (flac_named_wav, same)
    return out


@pytest.fixture(scope="module")
def whisper() -> stt_core.Provider:
    return stt_core.registry().create("whisper")


@pytest.mark.parametrize("name", BAD)
async def test_bad_files_are_one_clear_error_and_reach_no_engine(name: str, tmp_path: Path) -> None:
    data, message = BAD[name]
    path = tmp_path / "input.wav"
    path.write_bytes(data)
    first, second = FakeProvider(name="first"), FakeProvider(name="second")
    with pytest.raises(InvalidAudioError, match=message):
        await transcribe_file(Chain([first, second]), path)
    with pytest.raises(InvalidAudioError, match=message):
        await Chain([first, second]).transcribe(data)  # the same bytes, through the API
    assert first.calls == [] and second.calls == []


@pytest.mark.parametrize("name", BAD)
def test_bad_files_through_the_cli_exit_2_with_one_line(name: str, tmp_path: Path) -> None:
    data, message = BAD[name]
    path = tmp_path / "input.wav"
    path.write_bytes(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STT_")}
    command = [sys.executable, "-m", "stt_core.cli", "transcribe", "--chain", "whisper", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
                          check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr


async def test_unusual_but_valid_input_is_transcribed(whisper: stt_core.Provider, tmp_path: Path) -> None:
    for name, (path, check) in unusual(tmp_path).items():
        result = await transcribe_file(whisper, path)
        assert check(result.text), f"{name}: {result.text!r}"


async def test_bad_livekit_frames_are_a_non_retryable_api_error() -> None:
    from livekit import rtc
    from livekit.agents import APIStatusError

    from stt_core_livekit import STT

    engine = FakeProvider(name="engine")
    adapter = STT(engine)
    empty = rtc.AudioFrame(b"", 48_000, 1, 0)
    with pytest.raises(APIStatusError, match="empty") as info:
        await adapter.recognize([empty])
    assert info.value.retryable is False and engine.calls == []
