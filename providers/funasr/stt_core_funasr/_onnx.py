"""SenseVoice on onnxruntime, with neither torch nor funasr in the process.

The serving path: the model directory's ONNX file (funasr's own export, or an ONNX SenseVoice
directory as FunASR publishes them), its front end (Kaldi fbank from ``kaldi-native-fbank``, then
LFR stacking and CMVN from ``am.mvn``, as funasr's ``WavFrontend`` does them), greedy CTC decoding
and the ``sentencepiece`` tokenizer. We do not run it through ``funasr-onnx`` because that package
pins ``numpy<=1.26.4``, which the rest of the stack has moved past.

Only the export (``stt-core models export funasr``) needs torch and funasr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from stt_core import ProviderUnavailable

from ._errors import bad_file
from ._models import ONNX_FILES, TORCH_HINT, can_export
from ._settings import SAMPLE_RATE, FunASRSettings, Options
from ._torch import auto_model

OPSET = 18
# SenseVoiceSmall's query embeddings: language ids and text-normalisation ids (its lid_dict and
# textnorm_dict; the export's inputs take these indices).
_LANGUAGE_IDS = {"auto": 0, "zh": 3, "en": 4, "yue": 7, "ja": 11, "ko": 12, "nospeech": 13}
_WITH_ITN, _WITHOUT_ITN = 14, 15
_BLANK = 0
_TAG_FRAMES = 4  # the first output frames read the query: language, emotion, event, text style
INPUTS = {"speech", "speech_lengths", "language", "textnorm"}
OUTPUTS = ("ctc_logits", "encoder_out_lens")


def onnx_file(model_dir: Path, *, quantize: bool) -> Path:
    return model_dir / ONNX_FILES[quantize]


EXPORT_HINT = (f"run `stt-core models export funasr` where torch and funasr are installed ({TORCH_HINT}), "
               "or use an exported ONNX model directory")


def export(settings: FunASRSettings, model_dir: Path) -> Path:
    """funasr's own export into the model directory (fp32 also writes model.onnx.data); returns
    the file made. Needs torch and funasr."""
    if not can_export():
        raise ProviderUnavailable(f"cannot export {model_dir} to ONNX without torch and funasr: "
                                  f"{EXPORT_HINT}", provider="funasr")
    try:
        model = auto_model(settings, str(model_dir))
        model.export(type="onnx", quantize=settings.quantize, opset_version=OPSET)
    except OSError as e:
        raise ProviderUnavailable(
            f"cannot export the ONNX model into {model_dir} ({e}); export it once where the "
            "directory is writable, or set funasr.backend = 'torch'",
            provider="funasr",
        ) from e
    return onnx_file(model_dir, quantize=settings.quantize)


class Frontend:
    """funasr's ``WavFrontend`` for SenseVoice (fbank, LFR, CMVN) on kaldi-native-fbank and numpy."""

    def __init__(self, conf: dict[str, Any], cmvn_file: Path) -> None:
        import kaldi_native_fbank as knf

        self._knf = knf
        self.conf = conf
        self.lfr_m, self.lfr_n = int(conf.get("lfr_m", 1)), int(conf.get("lfr_n", 1))
        self.shift, self.scale = _read_cmvn(cmvn_file)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        feats = self._lfr(self._fbank(samples))
        dim = feats.shape[1]
        normalised: np.ndarray = ((feats + self.shift[:dim]) * self.scale[:dim]).astype(np.float32)
        return normalised

    def _fbank(self, samples: np.ndarray) -> np.ndarray:
        conf, knf = self.conf, self._knf
        rate = float(conf.get("fs", SAMPLE_RATE))
        opts = knf.FbankOptions()
        opts.frame_opts.samp_freq = rate
        # As funasr: a clip shorter than one frame is one frame of its own length.
        opts.frame_opts.frame_length_ms = float(min(conf.get("frame_length", 25), len(samples) / rate * 1000))
        opts.frame_opts.frame_shift_ms = float(conf.get("frame_shift", 10))
        opts.frame_opts.dither = float(conf.get("dither", 1.0))
        opts.frame_opts.snip_edges = bool(conf.get("snip_edges", True))
        opts.frame_opts.window_type = str(conf.get("window", "hamming"))
        opts.mel_opts.num_bins = int(conf.get("n_mels", 80))
        opts.energy_floor = 0.0
        fbank = knf.OnlineFbank(opts)
        fbank.accept_waveform(rate, (samples * (1 << 15)).astype(np.float32))
        fbank.input_finished()
        frames = [fbank.get_frame(i) for i in range(fbank.num_frames_ready)]
        return np.array(frames, dtype=np.float32).reshape(len(frames), opts.mel_opts.num_bins)

    def _lfr(self, feats: np.ndarray) -> np.ndarray:
        """Low frame rate: ``lfr_m`` frames stacked every ``lfr_n``, the first frame repeated in
        front and the last one behind, as funasr's ``apply_lfr``."""
        m, n = self.lfr_m, self.lfr_n
        if m == 1 and n == 1:
            return feats
        count = int(np.ceil(len(feats) / n))
        padded = np.vstack([np.repeat(feats[:1], (m - 1) // 2, axis=0), feats])
        needed = (count - 1) * n + m
        if len(padded) < needed:
            padded = np.vstack([padded, np.repeat(padded[-1:], needed - len(padded), axis=0)])
        return np.stack([padded[i * n:i * n + m].reshape(-1) for i in range(count)])


class OnnxSenseVoice:
    def __init__(self, session: Any, frontend: Frontend, tokenizer: Any) -> None:
        self._session = session
        self._frontend = frontend
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, model_dir: Path, settings: FunASRSettings) -> OnnxSenseVoice:
        import onnxruntime
        import sentencepiece

        path = onnx_file(model_dir, quantize=settings.quantize)
        if not path.is_file():
            if not can_export():
                raise ProviderUnavailable(f"no ONNX model in {model_dir} ({path.name} is missing): "
                                          f"{EXPORT_HINT}", provider="funasr")
            export(settings, model_dir)
        files = model_files(model_dir)
        frontend = Frontend(files["frontend_conf"], files["cmvn_file"])
        try:
            tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(files["bpemodel"]))
        except (OSError, RuntimeError) as e:
            raise bad_file(files["bpemodel"], "is not a sentencepiece model", e) from e
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = settings.ncpu
        providers = ["CPUExecutionProvider"]
        if settings.device.startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        try:
            session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # onnxruntime's own errors: a truncated or foreign file
            raise bad_file(path, "does not load in onnxruntime", e) from e
        names = {i.name for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        if not names >= INPUTS or not set(OUTPUTS) <= outputs:
            raise ProviderUnavailable(
                f"{path} is not a SenseVoice export: it takes {sorted(names)} and gives {sorted(outputs)}, "
                f"not {sorted(INPUTS)} -> {list(OUTPUTS)}", provider="funasr")
        return cls(session, frontend, tokenizer)

    def features(self, batch: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Each clip's features, zero-padded into one batch, and their lengths."""
        feats = [self._frontend(samples) for samples in batch]
        lengths = np.array([len(f) for f in feats], dtype=np.int32)
        padded = np.zeros((len(feats), int(lengths.max(initial=0)), feats[0].shape[1]), dtype=np.float32)
        for i, f in enumerate(feats):
            padded[i, :len(f)] = f
        return padded, lengths

    def token_ids(self, batch: list[np.ndarray], options: Options) -> list[list[int]]:
        """The tokens greedy CTC decoding reads from the model, per clip (tags included)."""
        return [ids for ids, _ in self.decoded(batch, options)]

    def decoded(self, batch: list[np.ndarray], options: Options) -> list[tuple[list[int], float]]:
        """Per clip, the tokens greedy CTC decoding reads and its confidence (``ctc_confidence``)."""
        feats, lengths = self.features(batch)
        size = len(batch)
        logits, out_lengths = self._session.run(
            list(OUTPUTS),
            {
                "speech": feats,
                "speech_lengths": lengths,
                "language": np.full(size, _LANGUAGE_IDS.get(options.language, 0), dtype=np.int32),
                "textnorm": np.full(size, _WITH_ITN if options.use_itn else _WITHOUT_ITN, dtype=np.int32),
            },
        )
        decoded = []
        for row, n in zip(logits, out_lengths, strict=True):
            frames = row[: int(n)]
            best = frames.argmax(-1)
            keep = np.concatenate(([True], best[1:] != best[:-1])) & (best != _BLANK)  # CTC collapse
            decoded.append((best[keep].tolist(), ctc_confidence(frames, best, keep)))
        return decoded

    def __call__(self, batch: list[np.ndarray], options: Options) -> list[dict[str, Any]]:
        return [{"text": self._tokenizer.decode(ids), "confidence": confidence}
                for ids, confidence in self.decoded(batch, options)]


def ctc_confidence(frames: np.ndarray, best: np.ndarray, keep: np.ndarray) -> float:
    """How sure the model is of what it read: the mean posterior of each token it emitted (at the
    frame it first appears; the four tag frames count as tokens), or, when it read only tags, the
    mean posterior of silence (blank) over the speech frames."""
    shifted = frames - frames.max(-1, keepdims=True)
    posteriors = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
    chosen = posteriors[np.arange(len(best)), best]
    if keep[_TAG_FRAMES:].any():
        return float(chosen[keep].mean())
    speech = posteriors[_TAG_FRAMES:, _BLANK]
    return float(speech.mean()) if speech.size else 0.0


def model_files(model_dir: Path) -> dict[str, Any]:
    """The front end's settings and the CMVN and tokenizer files of a SenseVoice directory, read as
    funasr reads them (config.yaml, with configuration.json naming the files), without funasr."""
    import yaml

    config_path = model_dir / "config.yaml"
    if not config_path.is_file():
        raise ProviderUnavailable(f"{config_path} is missing: not a SenseVoice model directory",
                                  provider="funasr")
    try:
        config = yaml.safe_load(config_path.read_text()) or {}
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise bad_file(config_path, "cannot be read", e) from e
    metas, configuration = {}, model_dir / "configuration.json"
    if configuration.is_file():
        try:
            metas = json.loads(configuration.read_text()).get("file_path_metas", {})
        except (OSError, ValueError, AttributeError) as e:  # AttributeError: JSON that is no object
            raise bad_file(configuration, "cannot be read", e) from e
    frontend_conf = dict(config.get("frontend_conf") or {})
    cmvn = (metas.get("frontend_conf") or {}).get("cmvn_file") or frontend_conf.get("cmvn_file") or "am.mvn"
    bpe = (metas.get("tokenizer_conf") or {}).get("bpemodel") or (config.get("tokenizer_conf") or {}).get(
        "bpemodel") or next((p.name for p in model_dir.glob("*.bpe.model")), "tokenizer (*.bpe.model)")
    for what, path in (("CMVN statistics", model_dir / cmvn), ("tokenizer", model_dir / bpe)):
        if not path.is_file():
            raise ProviderUnavailable(f"the model's {what} {path} is missing", provider="funasr")
    return {"frontend_conf": frontend_conf, "cmvn_file": model_dir / cmvn, "bpemodel": model_dir / bpe}


def _read_cmvn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``am.mvn`` (Kaldi nnet text): the <AddShift> and <Rescale> vectors."""
    vectors: dict[str, np.ndarray] = {}
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines[:-1]):
        kind = line.split()[:1]
        following = lines[i + 1].split()
        if kind and kind[0] in ("<AddShift>", "<Rescale>") and following[:1] == ["<LearnRateCoef>"]:
            vectors[kind[0]] = np.array(following[3:-1], dtype=np.float32)
    if set(vectors) != {"<AddShift>", "<Rescale>"}:
        raise ProviderUnavailable(f"{path} holds no <AddShift> and <Rescale> vectors: not CMVN statistics",
                                  provider="funasr")
    return vectors["<AddShift>"], vectors["<Rescale>"]
