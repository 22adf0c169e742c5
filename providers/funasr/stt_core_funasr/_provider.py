"""The ``funasr`` provider: SenseVoiceSmall, local, free and offline.

By default it runs the model's int8 ONNX export on onnxruntime, with neither torch nor funasr in
the process (``_onnx``): the fastest CPU path, and the smallest install. ``backend = "torch"``
runs funasr's own ``AutoModel`` (word timestamps; GPUs through torch); funasr (11-19 s to import)
is then imported when the engine first loads, never when the plugin registers.

Confidence (``Transcript.confidence``, onnx backend): per piece, the mean CTC posterior of the
tokens the model read (its language, emotion and event tags included), or of silence where it
read none; pieces weighted by their length. The torch backend gives none (funasr's ``generate()``
does not return the posteriors). The language is SenseVoice's own tag, one of its five.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stt_core import (
    Audio,
    Capabilities,
    ConfigError,
    Provider,
    ProviderSettings,
    ProviderUnavailable,
    Segment,
    SileroVAD,
    Transcript,
    Word,
    find_vad_model,
    install_command,
    primary_language,
)

from ._engine import Engine, Piece, get_engine
from ._models import (
    AUTO_VAD,
    ENERGY_VAD,
    NO_VAD,
    ONNX_VAD,
    SILERO_VAD,
    can_export,
    download,
    download_published,
    find_model,
    find_serving_model,
    first_missing,
    is_path,
    missing_reason,
    published_onnx,
    serving_missing_reason,
    torch_missing,
)
from ._onnx import EXPORT_HINT, export, onnx_file
from ._settings import LANGUAGES, SAMPLE_RATE, FunASRSettings, Options

# What the ONNX backend imports to serve: no torch, no funasr.
ONNX_MODULES = ("onnxruntime", "kaldi_native_fbank", "sentencepiece", "yaml", "psutil")


class FunASRProvider(Provider):
    name = "funasr"
    Settings = FunASRSettings
    capabilities = Capabilities(languages=LANGUAGES, word_timestamps=True, offline=True)

    def __init__(self, settings: ProviderSettings | None = None, /, **fields: Any) -> None:
        super().__init__(settings, **fields)
        self.settings: FunASRSettings
        self._engine: Engine | None = None
        if self.settings.backend == "onnx":  # the ONNX export has no CTC alignment for word times
            self.capabilities = Capabilities(languages=LANGUAGES, offline=True)

    # -- availability, without loading --------------------------------------------------------

    @classmethod
    def unavailable_reason(cls, settings: ProviderSettings) -> str | None:
        assert isinstance(settings, FunASRSettings)
        onnx = settings.backend == "onnx"
        if onnx and (module := first_missing(ONNX_MODULES)):
            return f"{module} is not installed: {install_command('funasr')}"
        if not onnx and (missing := torch_missing()):
            return f"backend 'torch': {missing}"
        model, hub = settings.model, settings.hub
        if missing := serving_missing_reason(model, hub, quantize=settings.quantize) if onnx else \
                missing_reason("model", model, hub):
            return missing
        if onnx and not can_export():  # else a missing export is made on first load
            found = find_serving_model(model, hub, quantize=settings.quantize)
            if found and not onnx_file(found, quantize=settings.quantize).is_file():
                return f"no ONNX model in {found}: {EXPORT_HINT}"
        vad = settings.vad
        if vad == ONNX_VAD and find_vad_model() is None:
            return f"vad 'silero-onnx' needs Silero's ONNX model: {SileroVAD.INSTALL_HINT}"
        if vad in (AUTO_VAD, ENERGY_VAD, NO_VAD, ONNX_VAD):
            return None
        if missing := torch_missing(silero=vad == SILERO_VAD):
            return f"vad {vad!r} runs through funasr and torch, or set vad = 'energy': {missing}"
        if vad != SILERO_VAD and (reason := missing_reason("VAD model", vad, settings.hub)):
            return reason
        return None

    @classmethod
    def model_status(cls, settings: ProviderSettings) -> str | None:
        assert isinstance(settings, FunASRSettings)
        found = find_model(settings.model, settings.hub) if settings.backend == "torch" else \
            find_serving_model(settings.model, settings.hub, quantize=settings.quantize)
        if found is None:
            return "missing"
        if settings.backend == "onnx":
            exported = onnx_file(found, quantize=settings.quantize)
            if not exported.is_file():
                when = "on first load" if can_export() else "by `stt-core models export funasr`"
                return f"present: {found} (ONNX exported {when})"
            return f"present: {exported}"
        return f"present: {found}"

    @classmethod
    def export_model(cls, settings: ProviderSettings, *, model: str | None = None) -> list[Path]:
        """The ONNX export (fp32 and int8) of the configured model, or of ``model`` (a directory
        or hub id), into its own directory. Needs torch and funasr; serving then needs neither."""
        assert isinstance(settings, FunASRSettings)
        name = model or settings.model
        found = find_model(name, settings.hub)
        if found is None:
            raise ConfigError(f"funasr model {name!r} not found: download it first "
                              "(stt-core models download funasr) or give a model directory")
        made = [export(settings.model_copy(update={"quantize": q}), found) for q in (False, True)]
        return made

    @classmethod
    def download_model(cls, settings: ProviderSettings, *, model: str | None = None,
                       target: Path | None = None) -> Path:
        assert isinstance(settings, FunASRSettings)
        name = model or settings.model
        if is_path(name):
            raise ConfigError(f"funasr model {name!r} is a local directory; there is nothing to download")
        if name in (SILERO_VAD, ONNX_VAD, NO_VAD):
            raise ConfigError(f"{name!r} needs no download (silero-vad ships inside its wheel)")
        serving = settings.backend == "onnx" and not can_export()  # and a model, not a VAD, is asked for
        if serving and (name == settings.model or published_onnx(name, settings.hub) is not None):
            return _download_for_serving(name, settings, target)
        path = download(name, hub=settings.hub, target=target)
        if name == settings.model and settings.backend == "onnx" and can_export():
            export(settings, path)  # the serving path's file, made once, now, while torch is here
        return path

    def why_unavailable(self) -> str | None:
        return None if self._engine is not None else super().why_unavailable()

    @property
    def model(self) -> str:
        if self.settings.backend == "torch":
            return self.settings.model
        return self.settings.model + (" (onnx int8)" if self.settings.quantize else " (onnx)")

    # -- serving ------------------------------------------------------------------------------

    async def warmup(self) -> None:
        await asyncio.to_thread(self._loaded)

    async def _transcribe(
        self, audio: Audio, *, language: str | None, prompt: str | None, word_timestamps: bool
    ) -> Transcript:
        language = _language(language or self.settings.language)
        engine = self._engine if self._engine is not None else await asyncio.to_thread(self._loaded)
        options = Options(language, self.settings.use_itn,
                          timestamps=word_timestamps and self.capabilities.word_timestamps)
        samples = audio.mono_float32(SAMPLE_RATE)
        pieces = await asyncio.wrap_future(engine.submit(samples, options))
        return _transcript(pieces, samples.size / SAMPLE_RATE)

    def _loaded(self) -> Engine:
        if self._engine is None:
            self._check_ready()
            self._engine = get_engine(self.settings)
        return self._engine


def _download_for_serving(name: str, settings: FunASRSettings, target: Path | None) -> Path:
    """On an install that cannot export (no torch): the ONNX export its authors publish, which
    runs as it comes, instead of a model that would need torch once to run at all."""
    published = published_onnx(name, settings.hub)
    if published is None:
        raise ConfigError(f"funasr model {name!r} has no published ONNX export, and this install cannot "
                          f"export one: download and {EXPORT_HINT}")
    path = download_published(name, published, target=target)
    if not (served := onnx_file(path, quantize=settings.quantize)).is_file():
        raise ProviderUnavailable(f"{published} has no {served.name}: set [funasr] quantize = true (its "
                                  "int8 model), or export the model where torch is installed",
                                  provider="funasr")
    return path


def _language(language: str) -> str:
    code = primary_language(language)  # en-US and en_US are en, as the chain reads them
    if code != "auto" and code not in LANGUAGES:
        raise ConfigError(f"funasr (SenseVoice) does not recognise language {language!r}; "
                          f"it knows {', '.join(sorted(LANGUAGES))} or auto")
    return code


def _transcript(pieces: list[Piece], duration: float) -> Transcript:
    spoken = [p for p in pieces if p.text]
    segments = tuple(
        Segment(p.text, p.start, p.end, words=tuple(Word(w, s, e) for w, s, e in p.words)) for p in spoken
    )
    # The language, emotion and event that cover most of the speech.
    def dominant(attr: str) -> str | None:
        weights: dict[str, float] = {}
        for p in spoken:
            if value := getattr(p, attr):
                weights[value] = weights.get(value, 0.0) + p.end - p.start
        return max(weights, key=weights.__getitem__) if weights else None

    return Transcript(
        text=_join([p.text for p in spoken]),
        language=dominant("language"),
        confidence=_confidence(pieces),
        segments=segments,
        duration=duration,
        metadata={
            "emotion": dominant("emotion"),
            "event": dominant("event"),
            "segments": [
                {"start": p.start, "end": p.end, "language": p.language, "emotion": p.emotion,
                 "event": p.event} for p in spoken
            ],
        },
    )


def _confidence(pieces: list[Piece]) -> float | None:
    """The pieces' confidences weighted by their length: of what was said, or, if nothing was,
    that nothing was."""
    spoken = [p for p in pieces if p.text] or pieces
    known = [(p.confidence, max(p.end - p.start, 1e-3)) for p in spoken if p.confidence is not None]
    if not known:
        return None
    return sum(c * d for c, d in known) / sum(d for _, d in known)


def _join(texts: list[str]) -> str:
    """Segments joined with a space, except between two CJK characters (no spaces in Chinese)."""
    out = ""
    for text in texts:
        if out and not (_cjk(out[-1]) and _cjk(text[0])):
            out += " "
        out += text
    return out


def _cjk(char: str) -> bool:
    return "\u3000" <= char <= "\u9fff" or "\uac00" <= char <= "\ud7af" or "\uff00" <= char <= "\uffef"
