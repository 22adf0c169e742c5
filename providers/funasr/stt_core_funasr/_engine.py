"""The loaded engine: SenseVoice (torch or ONNX) plus its VAD, one per process per settings.

Requests from every provider object and every event loop go into one queue per engine. A worker
thread takes what is waiting (up to ``max_batch`` requests), cuts long audio with the VAD, and
recognises all the pieces in as few ``generate()`` calls as ``batch_size_s`` allows: batching
raised throughput (see docs/benchmarks.md), and one thread per model keeps funasr's
not-thread-safe ``AutoModel`` to one caller.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import io
import logging
import queue
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stt_core import (
    Audio,
    ProviderUnavailable,
    SileroVAD,
    VADSettings,
    find_vad_model,
    speech_segments,
    telemetry,
)

from ._errors import inference_failed, load_failed
from ._models import (
    AUTO_VAD,
    ENERGY_VAD,
    FSMN_VAD,
    NO_VAD,
    ONNX_VAD,
    SILERO_VAD,
    find_model,
    find_serving_model,
    hub_id,
    is_path,
    torch_missing,
)
from ._settings import LANGUAGES, SAMPLE_RATE, FunASRSettings, Options
from ._torch import auto_model

log = logging.getLogger("stt_core.funasr")

FSMN_MAX_END_SILENCE_MS = 800  # funasr 1.4 ignores this in the VAD's config.yaml; pass it at run time
# Cutting long audio with Silero: a pause of 0.5 s separates pieces, each kept with 0.3 s either side
# (a recogniser loses a word's fading end when the cut is tight).
ONNX_CUTS = VADSettings(min_speech=0.1, min_silence=0.5, pad=0.3)
GIB = 1024**3

_TAG = re.compile(r"<\|([^|]*)\|>")
_EMOTIONS = {"HAPPY", "SAD", "ANGRY", "NEUTRAL", "FEARFUL", "DISGUSTED", "SURPRISED", "EMO_UNKNOWN"}
_EVENTS = {"Speech", "BGM", "Applause", "Laughter", "Cry", "Sneeze", "Breath", "Cough", "Sing",
           "Speech_Noise", "Event_UNK"}


@dataclass(frozen=True)
class Piece:
    """What the model said about one stretch of audio, its tags parsed into data."""

    start: float
    end: float
    text: str
    language: str | None
    emotion: str | None
    event: str | None
    words: tuple[tuple[str, float, float], ...] = ()
    confidence: float | None = None  # the CTC posteriors' (onnx backend); funasr's generate() gives none


@dataclass
class _Job:
    samples: np.ndarray
    options: Options
    future: concurrent.futures.Future[list[Piece]] = field(default_factory=concurrent.futures.Future)


def parse_tags(raw: str) -> tuple[str, str | None, str | None, str | None]:
    """``<|en|><|HAPPY|><|Speech|><|woitn|>Hello`` -> ("Hello", "en", "happy", "speech")."""
    language = emotion = event = None
    for tag in _TAG.findall(raw):
        if tag in LANGUAGES or tag == "nospeech":
            language = language or (None if tag == "nospeech" else tag)
        elif tag in _EMOTIONS:
            emotion = emotion or ("unknown" if tag == "EMO_UNKNOWN" else tag.lower())
        elif tag in _EVENTS:
            event = event or ("unknown" if tag == "Event_UNK" else tag.lower())
    return clean_text(_TAG.sub("", raw)), language, emotion, event


def clean_text(text: str) -> str:
    """What funasr's ``rich_transcription_postprocess`` does to a text without tags (given the
    tags it would add them back as emoji): trim, and drop the "The." SenseVoice says over noise.
    Here rather than imported, so the ONNX path needs no funasr (a test holds the two equal)."""
    return text.strip().replace("The.", " ").strip()


class Engine:
    def __init__(self, settings: FunASRSettings, model_dir: Path) -> None:
        self.settings = settings
        self.model_dir = model_dir
        self.model: Any = None  # funasr's AutoModel (torch) or our ONNX runner, set by the builder
        self._recognise = self._build_recogniser()
        # Loaded with the first audio that needs it: utterances shorter than vad_min_audio_s (a
        # voice agent's) never do, so serving them imports nothing the VAD needs (torch, funasr).
        self._vad: Callable[[np.ndarray], list[tuple[float, float]]] | None = None
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.generate_calls = 0  # how many recognition calls served the requests (tests, benchmarks)
        threading.Thread(target=self._serve, name=f"funasr:{model_dir.name}", daemon=True).start()

    def submit(self, samples: np.ndarray, options: Options) -> concurrent.futures.Future[list[Piece]]:
        job = _Job(samples, options)
        self._queue.put(job)
        telemetry.queue_changed("funasr", 1)
        return job.future

    # -- building -------------------------------------------------------------------------------

    def _build_recogniser(self) -> Callable[[list[np.ndarray], Options], list[dict[str, Any]]]:
        if self.settings.backend == "onnx":
            from ._onnx import OnnxSenseVoice

            self.model = OnnxSenseVoice.load(self.model_dir, self.settings)
            return self.model  # type: ignore[no-any-return]
        model = self.model = auto_model(self.settings, str(self.model_dir))
        keep_freed_memory()

        def recognise(batch: list[np.ndarray], options: Options) -> list[dict[str, Any]]:
            return model.generate(  # type: ignore[no-any-return]
                input=batch, batch_size=len(batch), language=options.language,
                use_itn=options.use_itn, output_timestamp=options.timestamps, disable_pbar=True,
            )

        return recognise

    def _build_vad(self) -> Callable[[np.ndarray], list[tuple[float, float]]]:
        vad = self.settings.vad
        longest = self.settings.max_single_segment_time / 1000
        if vad == AUTO_VAD:  # silero-vad runs through funasr and torch
            vad = (ONNX_VAD if find_vad_model() else
                   ENERGY_VAD if torch_missing(silero=True) else SILERO_VAD)
        if vad == ENERGY_VAD:

            def cuts(samples: np.ndarray) -> list[tuple[float, float]]:
                pieces = Audio(samples, SAMPLE_RATE).split_at_silences(longest)
                return [(start, start + piece.duration) for start, piece in pieces]

            return cuts
        if vad == ONNX_VAD:
            detector = SileroVAD()

            def speech(samples: np.ndarray) -> list[tuple[float, float]]:
                """Silero's speech segments, any longer than the model takes cut at their quietest."""
                audio = Audio(samples, SAMPLE_RATE)
                return [(start + at, start + at + piece.duration)
                        for start, end in speech_segments(detector.probabilities(samples), ONNX_CUTS)
                        for at, piece in audio.slice(start, end).split_at_silences(longest)]

            return speech
        source = vad if vad == SILERO_VAD else str(find_model(vad, self.settings.hub))
        model = auto_model(self.settings, source)
        run_options: dict[str, Any] = {"max_single_segment_time": self.settings.max_single_segment_time}
        if vad == FSMN_VAD or (is_path(vad) and "fsmn" in Path(vad).name.lower()):
            run_options["max_end_silence_time"] = FSMN_MAX_END_SILENCE_MS

        def segments(samples: np.ndarray) -> list[tuple[float, float]]:
            result = model.generate(input=samples, disable_pbar=True, **run_options)
            return [(start / 1000, end / 1000) for start, end in result[0]["value"]]

        return segments

    # -- serving --------------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            jobs = [self._queue.get()]
            while len(jobs) < self.settings.max_batch:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            telemetry.queue_changed("funasr", -len(jobs))
            telemetry.batch_formed("funasr", len(jobs))
            for options in dict.fromkeys(job.options for job in jobs):
                # A request whose caller gave up (cancelled) is dropped here, before any work.
                same = [job for job in jobs
                        if job.options == options and job.future.set_running_or_notify_cancel()]
                if same:
                    self._run(same, options)

    def _run(self, jobs: list[_Job], options: Options) -> None:
        try:
            pieces = self._pieces(jobs, options)
        except Exception as e:  # these requests fail; the worker lives on to serve the next ones
            for job in jobs:
                job.future.set_exception(inference_failed(e))
            return
        for job, job_pieces in zip(jobs, pieces, strict=True):
            job.future.set_result(job_pieces)

    def _pieces(self, jobs: list[_Job], options: Options) -> list[list[Piece]]:
        """Each job's audio cut where the VAD says, recognised in batches, as its pieces."""
        spans = [self._spans(job.samples) for job in jobs]
        flat = [(i, start, end) for i, job_spans in enumerate(spans) for start, end in job_spans]
        results = self._recognise_all(
            [jobs[i].samples[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)] for i, start, end in flat],
            options,
        )
        pieces: list[list[Piece]] = [[] for _ in jobs]
        for (i, start, end), result in zip(flat, results, strict=True):
            text, language, emotion, event = parse_tags(result["text"])
            words = tuple(
                (word, start + begin / 1000, start + finish / 1000)
                for word, (begin, finish) in zip(result.get("words", ()), result.get("timestamp", ()),
                                                 strict=False)
            )
            confidence = result.get("confidence")
            pieces[i].append(Piece(start, end, text, language, emotion, event, words, confidence))
        return pieces

    def _spans(self, samples: np.ndarray) -> list[tuple[float, float]]:
        """Where to cut: the VAD's speech segments for long audio, the whole of a short one."""
        duration = len(samples) / SAMPLE_RATE
        if self.settings.vad == NO_VAD or duration <= self.settings.vad_min_audio_s:
            return [(0.0, duration)]
        if self._vad is None:
            try:
                with _quiet_stdout():
                    self._vad = self._build_vad()
            except Exception as e:  # the audio goes to the next engine, whole
                raise load_failed(f"the VAD {self.settings.vad!r}", e) from e
        return self._vad(samples)

    def _recognise_all(self, pieces: list[np.ndarray], options: Options) -> list[dict[str, Any]]:
        """All pieces, in ``generate()`` calls of at most ``batch_size_s`` seconds of audio."""
        limit = self.settings.batch_size_s * SAMPLE_RATE
        return [result for batch in in_batches(pieces, limit) for result in self._generate(batch, options)]

    def _generate(self, batch: list[np.ndarray], options: Options) -> list[dict[str, Any]]:
        results = self._recognise(batch, options)
        self.generate_calls += 1
        return results


def in_batches(pieces: list[np.ndarray], limit: int) -> list[list[np.ndarray]]:
    """``pieces`` in order, in batches of at most ``limit`` samples (a longer piece is a batch of
    its own)."""
    batches: list[list[np.ndarray]] = []
    for piece in pieces:
        if not batches or sum(map(len, batches[-1])) + len(piece) > limit:
            batches.append([])
        batches[-1].append(piece)
    return batches


def keep_freed_memory() -> None:
    """Have glibc keep the memory torch frees, as it does for the main thread on its own.

    Our worker thread allocates from a malloc arena of its own, and glibc gives such an arena's
    freed memory back to the kernel at once, so torch faulted its working memory in again on
    every call: about 200,000 page faults and +10% on a 30 s clip with SenseVoiceSmall at one
    thread, against none for funasr's own call from the main thread, whose arena keeps it through
    glibc's dynamic thresholds (docs/benchmarks.md, the SenseVoice runtimes section). Fixed
    thresholds (those the main arena's grow to) keep it in every arena. Process-wide, on torch
    alone: onnxruntime keeps its own memory. Nothing to do where there is no glibc ``mallopt``.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a libc without mallopt (musl)
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
    mallopt(m_trim_threshold, 64 * 1024 * 1024)  # twice that, as glibc sets it when it grows


# -- the process-wide cache (the seed's singleton) ------------------------------------------------

_engines: dict[tuple[Any, ...], Engine] = {}
_engines_lock = threading.Lock()


def get_engine(settings: FunASRSettings) -> Engine:
    """The engine for ``settings``, loading it on first use; one per process per settings."""
    model_dir = find_model(settings.model, settings.hub) if settings.backend == "torch" else \
        find_serving_model(settings.model, settings.hub, quantize=settings.quantize)
    if model_dir is None:
        raise ProviderUnavailable(f"funasr model {settings.model!r} not found", provider="funasr")
    key = (model_dir.resolve(), hub_id(settings.vad, settings.hub), settings.device, settings.backend,
           settings.quantize, settings.ncpu, settings.max_batch, settings.batch_size_s,
           settings.vad_min_audio_s, settings.max_single_segment_time, settings.trust_remote_code)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            check_memory(settings.min_free_memory_gb)
            try:
                with _quiet_stdout():
                    engine = Engine(settings, model_dir)
            except Exception as e:  # corrupt or incomplete model directory, wrong config, memory
                raise load_failed(f"funasr model from {model_dir}", e) from e
            _engines[key] = engine
            log.info("loaded funasr model %s (%s backend)", model_dir, settings.backend)
        return engine


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """funasr prints notices (its version, ffmpeg) to stdout while importing and loading; a
    transcript printed to stdout must stay clean, so they go to the debug log instead."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        yield
    if captured.getvalue().strip():
        log.debug("funasr said: %s", captured.getvalue().strip())


def check_memory(min_free_gb: float) -> None:
    import psutil

    available = psutil.virtual_memory().available
    if available < min_free_gb * GIB:
        raise ProviderUnavailable(
            f"not enough memory to load the funasr model: {available / GIB:.1f} GiB available, "
            f"min_free_memory_gb is {min_free_gb:g}",
            provider="funasr",
        )
