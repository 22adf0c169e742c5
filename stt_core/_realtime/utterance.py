"""One utterance of a real-time stream, and what has been recognised of it.

An utterance is recognised in consecutive pieces cut where the speaker paused: a recognition
that ended at a pause, which speech then overtook, is kept as a piece when it is long enough
(``min_piece``), and the next recognition starts where it ended. So the final recognises only
what came after the last piece, and no second of audio is recognised over and over however
often the speaker pauses. Pieces are joined as a long file's are (``Transcript.joined``).
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .._audio.audio import Audio
from .._audio.vad import FRAME_SECONDS, RATE
from .._types import Transcript


@dataclass(eq=False)
class Utterance:
    """Its audio (from its pre-roll on), frame by frame, and its recognised pieces. Positions are
    frame indices into ``frames``."""

    start: float  # seconds of the stream where its first frame lies
    frames: list[np.ndarray] = field(default_factory=list)
    speech: float = 0.0  # seconds of the stream where the VAD says the speech starts
    speech_end: float | None = None
    ended_at: float | None = None  # the loop's time when the VAD ended it: its final's delay counts from here
    pieces: list[tuple[int, Transcript]] = field(default_factory=list)  # (first frame, what it said)
    cut: int = 0  # frames the pieces cover
    paused_at: int | None = None  # where the pause the speaker is in now began (None: speaking)
    heard: tuple[int, Transcript] | None = None  # [cut, end) recognised at this pause, none since

    def audio(self, first: int, end: int) -> Audio:
        return Audio(np.concatenate(self.frames[first:end]), RATE)

    def seconds(self, frames: int) -> float:
        """Seconds of the stream at frame ``frames`` of this utterance."""
        return self.start + frames * FRAME_SECONDS

    @property
    def end(self) -> float:
        """Where the speech ends (once the VAD said so), else where its audio ends so far."""
        return self.speech_end if self.speech_end is not None else self.seconds(len(self.frames))

    def keep(self, first: int, end: int, result: Transcript, *, min_piece: float) -> bool:
        """Keep ``result`` for ``[first, end)`` as a piece if it starts at the cut and is long enough
        to be recognised on its own; whether it was kept."""
        if first != self.cut or (end - first) * FRAME_SECONDS < min_piece:
            return False
        self.pieces.append((first, result))
        self.cut = end
        return True

    def resumed(self, *, min_piece: float) -> None:
        """Speech again after a pause: what was heard at the pause becomes a piece, if it can."""
        if self.heard is not None:
            self.keep(self.cut, self.heard[0], self.heard[1], min_piece=min_piece)
        self.paused_at, self.heard = None, None

    def heard_whole(self) -> bool:
        """Whether what was heard at the current pause covers all the speech (none came after)."""
        return self.heard is not None and self.paused_at is not None and self.heard[0] == self.paused_at

    def joined(self, extra: tuple[int, Transcript] | None = None) -> Transcript:
        """The pieces (and ``extra``, a recognition from the cut on) as one transcript."""
        pieces = [*self.pieces, *([extra] if extra else [])]
        if not pieces:
            return Transcript("", duration=len(self.frames) * FRAME_SECONDS)
        return Transcript.joined([(first * FRAME_SECONDS, t) for first, t in pieces],
                                 len(self.frames) * FRAME_SECONDS)


@dataclass(eq=False)
class Speculation:
    """The one recognition ahead of need a stream has in flight: an ``interim`` (mid-speech) or a
    ``preflight`` (at a pause), of ``[first, end)`` of ``utterance``."""

    utterance: Utterance
    kind: Literal["interim", "preflight"]
    first: int
    end: int
    task: asyncio.Task[None] | None = None


class Speed:
    """Seconds of recognition per second of audio, as last measured, and the least any recognition
    took (None until then). A rate alone would promise a short clip in a fraction of a long one's
    time, but whisper's encoder always runs a 30 s window: 0.4 s of speech costs it what 3 s do
    (more, when it falls back to sampling on a lone word), so an interim it cannot afford started
    at the first short pause of every utterance. One per engine, shared by its streams: a new
    stream knows its engine's speed, so its first interim is not a guess (one that cost whisper 4x
    a recognition, per stream)."""

    def __init__(self) -> None:
        self.per_second: float | None = None
        self.least: float | None = None

    @classmethod
    def of(cls, engine: object | None) -> Speed:
        """``engine``'s speed, as its streams have measured it (with no engine: a new one)."""
        return cls() if engine is None else _SPEEDS.setdefault(engine, cls())

    def learn(self, audio_seconds: float, took: float) -> None:
        self.per_second = took / max(audio_seconds, 0.1)
        self.least = took if self.least is None else min(self.least, took)

    def expected(self, audio_seconds: float) -> float | None:
        if self.per_second is None:
            return None
        return max(self.least or 0.0, self.per_second * audio_seconds)


_SPEEDS: weakref.WeakKeyDictionary[object, Speed] = weakref.WeakKeyDictionary()
