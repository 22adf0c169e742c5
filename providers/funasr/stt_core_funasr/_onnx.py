"""SenseVoice on onnxruntime: a thin runner over the model funasr's own export writes.

We run it ourselves rather than through ``funasr-onnx`` because that package pins
``numpy<=1.26.4``, which the rest of the stack (funasr, torch, soxr) has moved past. Features,
tokenizer and query ids are funasr's own, so results match the torch path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stt_core import ProviderUnavailable

if TYPE_CHECKING:
    from ._engine import Options
    from ._provider import FunASRSettings

OPSET = 18
# SenseVoiceSmall's query embeddings: language ids and text-normalisation ids (its lid_dict and
# textnorm_dict; the export's inputs take these indices).
_LANGUAGE_IDS = {"auto": 0, "zh": 3, "en": 4, "yue": 7, "ja": 11, "ko": 12, "nospeech": 13}
_WITH_ITN, _WITHOUT_ITN = 14, 15
_BLANK = 0


def onnx_file(model_dir: Path, *, quantize: bool) -> Path:
    return model_dir / ("model_quant.onnx" if quantize else "model.onnx")


def export(settings: FunASRSettings, model_dir: Path) -> None:
    """funasr's own export, once, into the model directory (fp32 also writes model.onnx.data)."""
    from ._engine import auto_model

    try:
        model = auto_model(settings, str(model_dir))
        model.export(type="onnx", quantize=settings.quantize, opset_version=OPSET)
    except OSError as e:
        raise ProviderUnavailable(
            f"cannot export the ONNX model into {model_dir} ({e}); export it once where the "
            "directory is writable, or set funasr.backend = 'torch'",
            provider="funasr",
        ) from e


class OnnxSenseVoice:
    def __init__(self, session: Any, frontend: Any, tokenizer: Any) -> None:
        self._session = session
        self._frontend = frontend
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, model_dir: Path, settings: FunASRSettings) -> OnnxSenseVoice:
        import onnxruntime
        import sentencepiece
        from funasr.download.download_model_from_hub import download_model
        from funasr.frontends.wav_frontend import WavFrontend

        path = onnx_file(model_dir, quantize=settings.quantize)
        if not path.is_file():
            export(settings, model_dir)
        # funasr's reading of the model directory (local, so no download): frontend and tokenizer.
        config = download_model(model=str(model_dir), hub=settings.hub)
        frontend = WavFrontend(**config["frontend_conf"])
        tokenizer = sentencepiece.SentencePieceProcessor(model_file=config["tokenizer_conf"]["bpemodel"])
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = settings.ncpu
        providers = ["CPUExecutionProvider"]
        if settings.device.startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        return cls(session, frontend, tokenizer)

    def __call__(self, batch: list[np.ndarray], options: Options) -> list[dict[str, Any]]:
        from funasr.utils.load_utils import extract_fbank

        feats, lengths = extract_fbank(batch, data_type="sound", frontend=self._frontend)
        size = len(batch)
        logits, out_lengths = self._session.run(
            ["ctc_logits", "encoder_out_lens"],
            {
                "speech": feats.numpy(),
                "speech_lengths": lengths.numpy().astype(np.int32).reshape(size),
                "language": np.full(size, _LANGUAGE_IDS.get(options.language, 0), dtype=np.int32),
                "textnorm": np.full(size, _WITH_ITN if options.use_itn else _WITHOUT_ITN, dtype=np.int32),
            },
        )
        results = []
        for row, n in zip(logits, out_lengths, strict=True):
            best = row[: int(n)].argmax(-1)
            keep = np.concatenate(([True], best[1:] != best[:-1])) & (best != _BLANK)  # CTC collapse
            results.append({"text": self._tokenizer.decode(best[keep].tolist())})
        return results
