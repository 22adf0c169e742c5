"""The funasr provider on a real (tiny, trained) SenseVoice model, through funasr's own loading and
inference code. The model is tests/fixtures/funasr/tiny-sensevoice, made by the script beside it
from the committed espeak-ng clips; it reproduces those clips exactly and nothing else."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import stt_core
from speech import TINY_SENSEVOICE
from stt_core import Audio, Chain, ConfigError, ProviderUnavailable
from stt_core.testing import FakeProvider
from stt_core.testing.conformance import ProviderConformance
from stt_core_funasr._engine import get_engine
from stt_core_funasr._provider import FunASRProvider

ROOT = Path(__file__).parents[2]
AUDIO = ROOT / "tests" / "fixtures" / "audio"

# name: (language, emotion, text without ITN, text with ITN) - what the model was trained on
CLIPS = {
    "good_morning": ("en", "happy", "good morning everyone", "Good morning everyone."),
    "begin_meeting": ("en", "neutral", "let us begin the meeting", "Let us begin the meeting."),
    "chairs": ("en", "neutral", "we need twenty five chairs for the party",
               "We need 25 chairs for the party."),
    "zh_hello": ("zh", "neutral", "你好世界", "你好世界。"),
    "zh_weather": ("zh", "neutral", "今天天气很好", "今天天气很好。"),
}


def funasr(**settings: object) -> FunASRProvider:
    return FunASRProvider(model=str(TINY_SENSEVOICE), **settings)


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable copy of the model without its ONNX files, for the export the provider does on
    first load where torch is installed."""
    target = tmp_path_factory.mktemp("onnx") / "tiny-sensevoice"
    shutil.copytree(TINY_SENSEVOICE, target, ignore=shutil.ignore_patterns("model*.onnx*"))
    return target


# -- recognition -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLIPS)
async def test_exact_text_language_and_tags(name: str) -> None:
    language, emotion, plain, written = CLIPS[name]
    provider = funasr(use_itn=False)
    result = await provider.transcribe(AUDIO / f"{name}.wav")
    assert result.text == plain
    assert result.language == language  # parsed from the <|en|>-style tag, the query was 'auto'
    assert result.metadata["emotion"] == emotion
    assert result.metadata["event"] == "speech"
    assert "<|" not in result.text
    assert result.provider == "funasr"
    assert result.duration == pytest.approx(Audio.from_file(AUDIO / f"{name}.wav").duration)
    with_itn = await funasr(use_itn=True).transcribe(AUDIO / f"{name}.wav")
    assert with_itn.text == written


async def test_language_hint_reaches_the_model_and_unknown_languages_are_refused() -> None:
    result = await funasr(use_itn=False).transcribe(AUDIO / "zh_hello.wav", language="zh")
    assert (result.text, result.language) == ("你好世界", "zh")
    # zh_CN is zh, as the chain reads it (funasr refused it, and the chain paid the next engine)
    result = await funasr(use_itn=False).transcribe(AUDIO / "zh_hello.wav", language="zh_CN")
    assert (result.text, result.language) == ("你好世界", "zh")
    with pytest.raises(ConfigError, match="does not recognise language 'fr'"):
        await funasr().transcribe(AUDIO / "zh_hello.wav", language="fr")


async def test_a_chain_routes_unsupported_languages_past_funasr() -> None:
    fallback = FakeProvider(name="fallback", text="bonjour")
    chain = Chain([funasr(), fallback], retry=stt_core.RetryPolicy(attempts=1))
    result = await chain.transcribe(AUDIO / "good_morning.wav", language="fr")
    assert result.provider == "fallback"
    assert result.attempts[0].outcome == "skipped"


async def test_word_timestamps() -> None:
    # The torch path: the ONNX export has no CTC alignment for word times.
    result = await funasr(use_itn=False, backend="torch").transcribe(AUDIO / "good_morning.wav",
                                                                     word_timestamps=True)
    words = result.words
    assert [w.text for w in words] == ["good", "morning", "everyone"]
    assert all(0 <= w.start <= w.end <= result.duration for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)


async def test_one_model_per_process_per_settings() -> None:
    a, b = funasr(), funasr()
    await asyncio.gather(a.warmup(), b.warmup())
    assert get_engine(a.settings) is get_engine(b.settings)
    assert get_engine(funasr(vad="none").settings) is not get_engine(a.settings)


async def test_concurrent_requests_are_batched_and_each_gets_its_own_text() -> None:
    provider = funasr(use_itn=False, max_batch=8)
    await provider.warmup()
    engine = get_engine(provider.settings)
    calls_before = engine.generate_calls
    names = list(CLIPS) * 4
    results = await asyncio.gather(*(provider.transcribe(AUDIO / f"{n}.wav") for n in names))
    assert [r.text for r in results] == [CLIPS[n][2] for n in names]
    assert engine.generate_calls - calls_before < len(names)  # some requests shared a generate() call


async def test_batching_off_gives_the_same_results() -> None:
    provider = funasr(use_itn=False, max_batch=1)
    names = list(CLIPS) * 2
    results = await asyncio.gather(*(provider.transcribe(AUDIO / f"{n}.wav") for n in names))
    assert [r.text for r in results] == [CLIPS[n][2] for n in names]


async def test_resampled_stereo_input() -> None:
    clip = Audio.from_file(AUDIO / "good_morning.wav").to(sample_rate=48_000, channels=2)
    assert (await funasr(use_itn=False).transcribe(clip)).text == "good morning everyone"


# -- VAD -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vad", ["silero-vad", "silero-onnx", "auto"])
async def test_silero_vad_cuts_two_utterances_with_their_times(vad: str) -> None:
    # silero-onnx: stt-core's Silero on onnxruntime, what "auto" picks where its model is installed.
    provider = funasr(use_itn=False, vad=vad, vad_min_audio_s=0)
    result = await provider.transcribe(AUDIO / "two_utterances.wav")
    # two_utterances.wav is good_morning (1.69 s), 1.5 s of silence, then begin_meeting (1.92 s)
    assert [s.text for s in result.segments] == ["good morning everyone", "let us begin the meeting"]
    expected = [(0.0, 1.69), (3.19, 5.10)]
    for segment, (start, end) in zip(result.segments, expected, strict=True):
        assert segment.start == pytest.approx(start, abs=0.5)
        assert segment.end == pytest.approx(end, abs=0.5)
    assert result.text == "good morning everyone let us begin the meeting"
    assert [s["emotion"] for s in result.metadata["segments"]] == ["happy", "neutral"]


async def test_short_audio_skips_the_vad_and_vad_none_never_cuts() -> None:
    default = await funasr(use_itn=False).transcribe(AUDIO / "two_utterances.wav")  # 5.1 s < 10 s
    assert len(default.segments) == 1
    off = await funasr(use_itn=False, vad="none", vad_min_audio_s=0).transcribe(AUDIO / "two_utterances.wav")
    assert len(off.segments) == 1 and off.segments[0].end == pytest.approx(5.1, abs=0.01)


async def test_silence_gives_an_empty_transcript() -> None:
    result = await funasr(vad_min_audio_s=0).transcribe(Audio.silence(3.0))
    assert (result.text, result.segments) == ("", ())


# -- ONNX ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("quantize", [False, True], ids=["fp32", "int8"])
async def test_onnx_backend_exports_once_and_matches_torch(onnx_dir: Path, quantize: bool) -> None:
    exported = onnx_dir / ("model_quant.onnx" if quantize else "model.onnx")
    provider = FunASRProvider(model=str(onnx_dir), backend="onnx", quantize=quantize, use_itn=True)
    assert "ONNX exported on first load" in FunASRProvider.model_status(provider.settings)
    await provider.warmup()
    assert exported.is_file()
    if not quantize:
        assert (onnx_dir / "model.onnx.data").is_file()  # funasr's fp32 export keeps weights beside it
    torch_provider = funasr(use_itn=True)
    for name in CLIPS:
        onnx_result = await provider.transcribe(AUDIO / f"{name}.wav")
        torch_result = await torch_provider.transcribe(AUDIO / f"{name}.wav")
        assert (onnx_result.text, onnx_result.language) == (torch_result.text, torch_result.language)
        assert onnx_result.text == CLIPS[name][3]
    assert provider.capabilities.word_timestamps is False


async def test_onnx_backend_uses_an_existing_export(onnx_dir: Path, tmp_path: Path) -> None:
    """A directory holding only the exported model and its frontend/tokenizer files needs no torch model."""
    await FunASRProvider(model=str(onnx_dir), backend="onnx", quantize=True).warmup()
    only_onnx = tmp_path / "only-onnx"
    shutil.copytree(onnx_dir, only_onnx, ignore=shutil.ignore_patterns("model.pt", "model.onnx*"))
    result = await FunASRProvider(model=str(only_onnx), backend="onnx", quantize=True,
                                  use_itn=False).transcribe(AUDIO / "chairs.wav")
    assert result.text == "we need twenty five chairs for the party"


# -- errors ----------------------------------------------------------------------------------------


async def test_not_enough_memory_is_unavailable_with_numbers() -> None:
    provider = funasr(min_free_memory_gb=100_000, ncpu=1)  # settings no other test loaded
    with pytest.raises(ProviderUnavailable, match=r"GiB available, min_free_memory_gb is 100000"):
        await provider.transcribe(AUDIO / "good_morning.wav")


async def test_missing_model_says_how_to_download_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STT_CORE_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "modelscope"))
    provider = FunASRProvider()  # iic/SenseVoiceSmall, not on this machine
    reason = provider.why_unavailable()
    assert reason is not None and "stt-core models download funasr" in reason
    with pytest.raises(ProviderUnavailable, match="not downloaded"):
        await provider.transcribe(AUDIO / "good_morning.wav")
    # Once it is in the stt-core model directory, it is found there.
    shutil.copytree(TINY_SENSEVOICE, tmp_path / "models" / "iic" / "SenseVoiceSmall")
    assert FunASRProvider().why_unavailable() is None
    fsmn = FunASRProvider(vad="fsmn-vad").why_unavailable()
    assert fsmn is not None and "--model fsmn-vad" in fsmn


async def test_missing_and_corrupt_model_directories(tmp_path: Path) -> None:
    missing = FunASRProvider(model=str(tmp_path / "nowhere"))
    with pytest.raises(ProviderUnavailable, match="does not exist"):
        await missing.transcribe(AUDIO / "good_morning.wav")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ProviderUnavailable, match="not a FunASR model directory"):
        await FunASRProvider(model=str(empty)).transcribe(AUDIO / "good_morning.wav")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(TINY_SENSEVOICE, corrupt)
    (corrupt / "model.pt").write_bytes(b"not a checkpoint")
    (corrupt / "model_quant.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ProviderUnavailable, match=f"cannot load funasr model from {corrupt}"):
        await FunASRProvider(model=str(corrupt), backend="torch").transcribe(AUDIO / "good_morning.wav")
    with pytest.raises(ProviderUnavailable, match=f"{corrupt}/model_quant.onnx does not load in onnxruntime"):
        await FunASRProvider(model=str(corrupt)).transcribe(AUDIO / "good_morning.wav")


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"device": "gpu"}, "funasr.device: String should match pattern"),
        ({"language": "fr"}, "funasr.language: Input should be"),
        ({"backend": "tensorrt"}, "funasr.backend: Input should be 'torch' or 'onnx'"),
        ({"max_batch": 0}, "funasr.max_batch: Input should be greater than or equal to 1"),
        ({"use_external_vad": True}, "funasr.use_external_vad: unknown key"),
    ],
)
def test_bad_settings_name_the_key(settings: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match="bad settings for provider 'funasr'") as info:
        FunASRProvider(**settings)
    assert problem in str(info.value)


# -- through the installed plugin, config and CLI ---------------------------------------------------


def test_registered_through_its_entry_point() -> None:
    info = stt_core.registry(reload=True).get("funasr")
    assert info.provider_class is FunASRProvider
    assert info.distribution == "stt-core-funasr"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command, in an empty directory (so no stt.toml), configured by ``env`` only."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "FUNASR_"))}
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run(
            [sys.executable, "-m", "stt_core.cli", *args], capture_output=True, text=True,
            env={**clean, **env}, cwd=cwd, timeout=300, check=False,
        )


def test_seed_env_aliases_drive_the_cli() -> None:
    done = _cli("transcribe", "--chain", "funasr", str(AUDIO / "chairs.wav"),
                FUNASR_MODEL_DIR=str(TINY_SENSEVOICE), FUNASR_USE_ITN="true", FUNASR_LANGUAGE="en",
                FUNASR_USE_EXTERNAL_VAD="false")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "We need 25 chairs for the party."


def test_models_download_reports_an_unreachable_hub(tmp_path: Path) -> None:
    done = _cli("models", "download", "funasr", "--dir", str(tmp_path / "sv"),
                MODELSCOPE_ENDPOINT="http://127.0.0.1:9", MODELSCOPE_DOMAIN="127.0.0.1:9")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot download 'iic/SenseVoiceSmall' from ModelScope")
    assert "Traceback" not in done.stderr


def test_models_download_refuses_a_local_directory() -> None:
    done = _cli("models", "download", "funasr", "--model", str(TINY_SENSEVOICE))
    assert done.returncode == 2
    assert "is a local directory; there is nothing to download" in done.stderr


class TestFunASRConformance(ProviderConformance):
    @pytest.fixture
    def provider(self) -> FunASRProvider:
        return funasr()

    @pytest.fixture
    def conformance_audio(self) -> Audio:
        return Audio.from_file(AUDIO / "zh_weather.wav")



@pytest.mark.parametrize("samples", [1, 96, 399])  # 1 sample, 6 ms, just under one 25 ms window
async def test_a_clip_too_short_to_recognise_fails_alone_and_never_opens_the_breaker(samples: int) -> None:
    chain = Chain([funasr(use_itn=True, max_batch=8)])
    short = Audio(np.full(samples, 0.1, np.float32), 16_000)
    async with chain:
        await chain.warmup()
        names = [*CLIPS, "chairs", "good_morning"]  # seven good clips, batched with the short one
        results = await asyncio.gather(*(chain.transcribe(AUDIO / f"{n}.wav") for n in names),
                                       chain.transcribe(short), return_exceptions=True)
        *good, bad = results
        assert isinstance(bad, stt_core.InvalidAudioError) and "too short to recognise" in str(bad)
        assert [getattr(r, "text", r) for r in good] == [CLIPS[n][3] for n in names]
        after = await chain.transcribe(AUDIO / "chairs.wav")  # funasr still serves: its breaker is closed
    assert after.provider == "funasr" and chain.breakers[0].state == "closed"


async def test_running_out_of_memory_moves_the_request_on_and_opens_no_breaker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = funasr(vad="none", max_batch=1)
    await provider.warmup()
    engine = get_engine(provider.settings)

    def out_of_memory(batch: object, options: object) -> object:
        raise MemoryError("onnxruntime: failed to allocate 8 GB")

    monkeypatch.setattr(engine, "_recognise", out_of_memory)  # the runtime's call, where memory runs out
    fallback = FakeProvider(name="fallback", text="from the fallback")
    chain = Chain([provider, fallback])
    for _ in range(3):
        result = await chain.transcribe(AUDIO / "chairs.wav")
        assert result.provider == "fallback"
        first = result.attempts[0]
        assert first.outcome == "unavailable" and "ran out of memory" in (first.error or "")
    assert chain.breakers[0].state == "closed"


async def test_an_answer_the_runtime_malformed_fails_its_request_and_the_worker_serves_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = funasr(vad="none", max_batch=1)
    await provider.warmup()
    engine = get_engine(provider.settings)
    runtime, malformed = engine._recognise, iter([[{"txt": "a result without its text"}]])

    def once_malformed(batch: Any, options: Any) -> Any:
        return next(malformed, None) or runtime(batch, options)

    monkeypatch.setattr(engine, "_recognise", once_malformed)
    with pytest.raises(stt_core.STTError):
        await asyncio.wait_for(provider.transcribe(AUDIO / "chairs.wav"), timeout=30)
    # The shared worker thread lived (it died, and every later request waited for ever)
    after = await asyncio.wait_for(provider.transcribe(AUDIO / "chairs.wav"), timeout=30)
    assert after.text == CLIPS["chairs"][3]


# -- confidence (quality-aware routing, #35) ---------------------------------------------------------


async def test_confidence_from_the_ctc_posteriors_on_onnx_and_none_on_torch() -> None:
    from stt_core import Audio

    onnx = funasr(vad="none")
    learnt = await onnx.transcribe(AUDIO / "zh_hello.wav")
    assert learnt.language == "zh" and learnt.confidence is not None and learnt.confidence > 0.9
    heard_nothing = await onnx.transcribe(Audio.silence(2.0))
    assert heard_nothing.text == ""
    assert heard_nothing.confidence is not None and heard_nothing.confidence > 0.5  # sure of it
    assert onnx.capabilities.languages == frozenset({"zh", "en", "yue", "ja", "ko"})
    torch = await funasr(vad="none", backend="torch").transcribe(AUDIO / "zh_hello.wav")
    assert torch.text == learnt.text and torch.confidence is None  # funasr's generate() gives none
