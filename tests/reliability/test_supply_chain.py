"""Models load only from where they are configured, and a model directory's own code runs only
when trust_remote_code is set."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from speech import TINY_SENSEVOICE
from stt_core_funasr._provider import FunASRProvider

AUDIO = Path(__file__).parents[1] / "fixtures" / "audio"


@pytest.fixture
def model_with_code(tmp_path: Path) -> tuple[Path, Path]:
    """The tiny model, plus a model.py that would leave a mark if anything imported it."""
    model = tmp_path / "model"
    shutil.copytree(TINY_SENSEVOICE, model)
    marker = tmp_path / "remote-code-ran"
    (model / "model.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = (model / "config.yaml").read_text()
    (model / "config.yaml").write_text(config + f"remote_code: {model / 'model.py'}\n")
    return model, marker


@pytest.mark.parametrize("backend", ["onnx", "torch"])
async def test_a_models_own_code_does_not_run_by_default(
    model_with_code: tuple[Path, Path], backend: str
) -> None:
    model, marker = model_with_code
    provider = FunASRProvider(model=str(model), use_itn=False, ncpu=3, backend=backend)
    assert (await provider.transcribe(AUDIO / "zh_hello.wav")).text == "你好世界"
    assert not marker.exists()


async def test_trust_remote_code_runs_it_when_asked(model_with_code: tuple[Path, Path]) -> None:
    model, marker = model_with_code
    # funasr's AutoModel is what runs a model's code; the ONNX backend never runs any.
    await FunASRProvider(model=str(model), trust_remote_code=True, ncpu=3, backend="torch").warmup()
    assert marker.exists()  # the switch is real: this is what stays off unless configured


async def test_a_local_model_loads_with_the_network_cut_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No update check, no hub call: any attempt to open a connection fails the test."""
    def refuse(self: socket.socket, address: object) -> None:
        raise AssertionError(f"network call to {address} while loading a local model")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    model = tmp_path / "offline-copy"
    shutil.copytree(TINY_SENSEVOICE, model)
    result = await FunASRProvider(model=str(model), use_itn=False, ncpu=3, vad="silero-vad",
                                  vad_min_audio_s=0).transcribe(AUDIO / "good_morning.wav")
    assert result.text == "good morning everyone"
