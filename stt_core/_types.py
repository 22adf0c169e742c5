"""Plain values that flow out of providers: transcripts, segments, words, stream events."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ConfigDict

# Every settings table (an engine's, [retry], [breaker], [realtime], [serve]): an unknown key is an
# error, values do not change once validated, and no number is inf or NaN. Every bound is one a
# sane deployment stays far inside: past it is a typo or an attack, refused with the key's name.
SETTINGS_MODEL = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

AttemptOutcome = Literal["ok", "error", "timeout", "unavailable", "skipped", "cancelled", "low_confidence"]
"""``low_confidence``: the engine answered, and the chain doubted the answer and asked the next
engine (``Attempt.error`` says why: its confidence, or a language it does not transcribe)."""


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do; the chain routes requests by it.

    ``languages`` is ``None`` when the engine takes any language.
    """

    streaming: bool = False
    languages: frozenset[str] | None = None
    word_timestamps: bool = False
    offline: bool = False

    def supports_language(self, language: str | None) -> bool:
        """Whether it takes ``language`` ('en-US' counts as 'en'; ``None`` and 'auto': detect)."""
        return language_in(language, self.languages)


def language_in(language: str | None, languages: frozenset[str] | None) -> bool:
    """Whether ``language`` is one of ``languages`` (``None``: any): 'en-US' and 'en_US' count as
    'en'; no language, or 'auto', is to be detected, so any set takes it. The one rule for a
    request's language (may this engine take it?) and an answer's (does its engine transcribe it?)."""
    if not language or language == "auto" or languages is None:
        return True
    return language.lower() in languages or primary_language(language) in languages


def primary_language(language: str) -> str:
    """A language code's primary subtag, lower case: 'en-US' and 'en_US' are 'en'."""
    return language.lower().replace("_", "-").split("-")[0]


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    confidence: float | None = None


@dataclass(frozen=True)
class Segment:
    text: str
    start: float
    end: float
    confidence: float | None = None
    words: tuple[Word, ...] = ()

    def shifted(self, offset: float) -> Segment:
        """The same segment with its times (and its words' times) moved by ``offset`` seconds."""
        words = tuple(Word(w.text, w.start + offset, w.end + offset, w.confidence) for w in self.words)
        return Segment(self.text, self.start + offset, self.end + offset, self.confidence, words)


@dataclass(frozen=True)
class Attempt:
    """One thing the chain did for a request: a call to a provider, or a skip and why."""

    provider: str
    outcome: AttemptOutcome
    latency: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None = None
    confidence: float | None = None
    """The engine's confidence in the whole answer, 0 to 1, from its own signals (each provider
    documents how); ``None`` when it gives none. The chain re-asks below ``min_confidence``."""
    segments: tuple[Segment, ...] = ()
    duration: float | None = None
    provider: str = ""
    model: str | None = None
    latency: float = 0.0
    attempts: tuple[Attempt, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(word for segment in self.segments for word in segment.words)

    def replace(self, **changes: Any) -> Transcript:
        return dataclasses.replace(self, **changes)

    @classmethod
    def joined(cls, pieces: Sequence[tuple[float, Transcript]], duration: float) -> Transcript:
        """One transcript of a recording sent in consecutive pieces, each given with the second
        it starts at: texts joined, segment times shifted, latencies and attempts added up."""
        last = pieces[-1][1]
        return cls(
            text=joined_text([t.text for _, t in pieces]),
            language=next((t.language for _, t in pieces if t.language), None),
            confidence=_weighted_confidence([t for _, t in pieces]),
            segments=tuple(s.shifted(offset) for offset, t in pieces for s in t.segments),
            duration=duration,
            provider=last.provider,
            model=last.model,
            latency=sum(t.latency for _, t in pieces),
            attempts=tuple(a for _, t in pieces for a in t.attempts),
            metadata={"pieces": len(pieces)},
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transcript:
        """The inverse of ``to_dict``: a transcript that crossed a process or a network."""
        segments = tuple(
            Segment(s["text"], s["start"], s["end"], s.get("confidence"),
                    tuple(Word(**w) for w in s.get("words") or ()))
            for s in data.get("segments") or ()
        )
        return cls(
            text=data["text"], language=data.get("language"), confidence=data.get("confidence"),
            segments=segments,
            duration=data.get("duration"), provider=data.get("provider", ""), model=data.get("model"),
            latency=data.get("latency", 0.0),
            attempts=tuple(Attempt(**a) for a in data.get("attempts") or ()),
            metadata=dict(data.get("metadata") or {}),
        )

    def to_srt(self) -> str:
        """SubRip subtitles, one cue per segment (the whole text as one cue if there are none)."""
        cues = [
            f"{i}\n{_cue_time(s.start, ',')} --> {_cue_time(s.end, ',')}\n{s.text.strip()}\n"
            for i, s in enumerate(self._cue_segments(), start=1)
        ]
        return "\n".join(cues)

    def to_vtt(self) -> str:
        """WebVTT subtitles (what browsers' <track> reads), one cue per segment."""
        cues = [f"{_cue_time(s.start, '.')} --> {_cue_time(s.end, '.')}\n{s.text.strip()}\n"
                for s in self._cue_segments()]
        return "\n".join(["WEBVTT\n", *cues])

    def _cue_segments(self) -> tuple[Segment, ...]:
        return self.segments or (Segment(self.text, 0.0, self.duration or 0.0),)


@dataclass(frozen=True)
class StreamEvent:
    """A result from a live stream. Times are seconds from the start of the stream's audio.

    ``end`` is ``None`` when the engine does not say where its result ends; the chain then
    keeps (and on failover replays) all audio it has, rather than risk dropping some.
    """

    type: Literal["interim", "preflight", "final", "speech_start", "speech_end", "failed"]
    """``interim``: a guess that will change; ``final``: what was said, for good. A real-time stream
    over a local engine (``stt_core.realtime``) also gives ``preflight`` (the utterance recognised
    ahead when the speaker pauses; the final usually repeats it), the speech's bounds,
    ``speech_start`` and ``speech_end``, with no text, and ``failed`` in place of the final of an
    utterance that no engine could transcribe (``error`` says why); the stream goes on."""
    text: str
    start: float | None = None
    end: float | None = None
    language: str | None = None
    confidence: float | None = None
    words: tuple[Word, ...] = ()
    provider: str = ""
    error: Exception | None = None
    """For ``failed``: why the utterance got no final (``AllProvidersFailed`` for a chain)."""

    @property
    def is_final(self) -> bool:
        return self.type == "final"

    def shifted(self, offset: float) -> StreamEvent:
        """The same event with its times moved by ``offset`` seconds."""
        if offset == 0:
            return self

        def move(t: float | None) -> float | None:
            return None if t is None else t + offset

        words = tuple(
            Word(w.text, w.start + offset, w.end + offset, w.confidence) for w in self.words
        )
        return dataclasses.replace(
            self, start=move(self.start), end=move(self.end), words=words
        )


_ABBREVIATIONS = {"etc", "vs", "mr", "mrs", "ms", "dr", "st", "jr", "sr", "inc", "ltd", "co", "no", "approx"}


WIDE = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
"""Chinese, Japanese and Korean characters: each one a word, and no space between them."""
WIDE_CHAR = re.compile(f"[{WIDE}]")


def squeeze(text: str) -> str:
    """``text`` with its spacing made single (engines differ in spaces, never in words)."""
    return " ".join(text.split())


def glue(left: str, right: str) -> str:
    """Two texts one after the other: a space between words, none beside a CJK character."""
    if not left or not right:
        return left + right
    wide = WIDE_CHAR.match(left[-1]) or WIDE_CHAR.match(right[0])
    return left + ("" if wide else " ") + right


_UNSPACED_CHAR = re.compile("[\u2e80-\u9fff\uf900-\ufaff]")
"""Chinese characters and Japanese kana: written without spaces, so each is a word (as faster-whisper
splits them); Korean is written with spaces between words."""


def words_of(text: str) -> list[str]:
    """``text``'s words, lower case: runs of letters, digits and apostrophes (typed or typeset), and
    each Chinese character or kana alone (unspaced Chinese is not one word a sentence long)."""
    return re.findall(r"[\w'\u2019]+", _UNSPACED_CHAR.sub(r" \g<0> ", text.lower()))


def has_words(text: str) -> bool:
    """Whether ``text`` holds a word (a letter or digit), not only punctuation."""
    return re.search(r"\w", text) is not None


def joined_text(texts: Sequence[str]) -> str:
    """Consecutive pieces' texts as one, spacing made single. A recogniser closes each piece it
    hears as a sentence ("Please open the door."); where the next piece goes on in lower case ("and
    turn on the lights."), that full stop was the cut's, not the speaker's, and goes (not an
    abbreviation's: "U.S. and", "etc. and")."""
    joined = ""
    for text in map(squeeze, texts):
        if not text:
            continue
        last = joined.rsplit(" ", 1)[-1]
        if last.endswith(".") and last[:-1].isalpha() and last[:-1].lower() not in _ABBREVIATIONS \
                and text[:1].islower():
            joined = joined[:-1]
        joined = glue(joined, text)
    return joined


def _weighted_confidence(pieces: Sequence[Transcript]) -> float | None:
    """The pieces' confidences, weighted by their durations (None when no piece has one)."""
    known = [(t.confidence, t.duration or 1.0) for t in pieces if t.confidence is not None]
    if not known:
        return None
    return sum(c * d for c, d in known) / sum(d for _, d in known)


def _cue_time(seconds: float, decimal: str) -> str:
    """A subtitle timestamp: 00:01:02,345 for SRT, 00:01:02.345 for WebVTT."""
    millis = round(max(seconds, 0.0) * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02}:{minutes:02}:{secs:02}{decimal}{millis:03}"
