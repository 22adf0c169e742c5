"""How the chain judges an answer, as decisions without I/O (``policy``'s rules are about failures;
these are about answers that came back).

Each engine computes ``Transcript.confidence`` (0 to 1, or ``None``) from its own signals, on a
common scale: at or above ``DEFAULT_MIN_CONFIDENCE`` it believes its own answer (the benchmark in
docs/benchmarks.md calibrates the bundled engines to that line). Per answer, ``judge``::

    judging off (min_confidence 0) ─► Accept
    its language is one the engine does not transcribe ─► Reask
    the engine gives no confidence ─► Accept (nothing to judge by)
    no words (no speech heard; "." alone is none either):
        an engine before it, doubted, heard words ─► Reask   (the words win over silence)
        confidence >= min_confidence, or an engine before it heard nothing too ─► Accept
        otherwise ─► Reask                     (so silence costs at most two calls)
    confidence < min_confidence ─► Reask
    otherwise ─► Accept

Before an engine is asked after a doubted answer, ``may_reask``: a cloud engine (one that is not
``offline``: each call is paid) only while the request's re-asks of cloud engines are under
``max_reasks``. An engine whose answer is doubted is not retried: no engine is asked twice.

When no answer is accepted, ``best`` picks the one to give: the most confident of those in a
language their engine transcribes (words before none), else the most confident of all.

``whisper_speech`` is that scale for a Whisper model's own signals, per 30 s window (faster-whisper's
segments, and ``verbose_json``'s from OpenAI, Groq or any server of Whisper): which windows hold
speech (not silence, not a phantom), and how sure the model is of them.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field

from .._types import SETTINGS_MODEL, Transcript, has_words, language_in, words_of

DEFAULT_MIN_CONFIDENCE = 0.5
"""The line every engine's confidence is calibrated to (docs/benchmarks.md, "Quality")."""


def _not_a_switch(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic reads true as 1.0: every answer would be re-asked
        raise ValueError("should be a number from 0 to 1, not true or false (0 turns judging off)")
    return value


Confidence = Annotated[float, BeforeValidator(_not_a_switch), Field(ge=0, le=1)]
"""A ``min_confidence`` value: a number on the confidence scale."""


class QualityPolicy(BaseModel):
    """When the chain doubts an answer and asks the next engine. What ``min_confidence`` and
    ``max_reasks`` (top level of stt.toml) and each engine's ``min_confidence`` build."""

    model_config = SETTINGS_MODEL
    min_confidence: Confidence = DEFAULT_MIN_CONFIDENCE
    """An answer less confident than this is re-asked of the next engine; 0 turns judging off."""
    max_reasks: int = Field(1, ge=0, le=32)
    """Re-asks of cloud engines per request (each is a paid call); local engines are re-asked
    without this limit (each at most once per request)."""
    per_engine: dict[str, Confidence] = {}
    """``min_confidence`` for one engine, by its name in the chain (``[whisper] min_confidence``)."""

    @classmethod
    def from_tables(cls, min_confidence: float, max_reasks: int, tables: Mapping[str, Mapping[str, Any]],
                    engines: Sequence[str]) -> QualityPolicy:
        """The top keys, and the ``min_confidence`` of each engine of ``engines`` whose table has one."""
        per_engine = {name: tables[name]["min_confidence"] for name in engines
                      if "min_confidence" in tables.get(name, {})}
        return cls(min_confidence=min_confidence, max_reasks=max_reasks, per_engine=per_engine)

    def min_confidence_of(self, engine: str) -> float:
        return self.per_engine.get(engine, self.min_confidence)


@dataclass(frozen=True)
class Accept:
    pass


@dataclass(frozen=True)
class Reask:
    reason: str


def judge(
    answer: Transcript,
    *,
    min_confidence: float,
    languages: frozenset[str] | None,
    heard_nothing_before: bool,
    heard_words_before: bool = False,
) -> Accept | Reask:
    """Whether to give ``answer`` or ask the next engine. ``languages``: what its engine declares
    it transcribes (``None``: any); ``heard_nothing_before``: an earlier engine answered no text;
    ``heard_words_before``: an earlier one, doubted, heard words (silence is not sure then)."""
    if min_confidence <= 0:
        return Accept()
    if not language_in(answer.language, languages):
        return Reask(f"answered in {answer.language!r}, which it does not transcribe")
    confidence = answer.confidence
    if confidence is None:
        return Accept()
    if not has_words(answer.text):  # "." alone is no speech heard either
        if heard_words_before:  # one engine heard words, this one none: not silence for sure
            return Reask("heard no speech where an engine before it heard words")
        if confidence >= min_confidence or heard_nothing_before:
            return Accept()
        return Reask(f"heard no speech, with confidence {_below(confidence)} < {min_confidence:g}")
    if confidence < min_confidence:
        return Reask(f"confidence {_below(confidence)} < {min_confidence:g}")
    return Accept()


def _below(confidence: float) -> str:
    """Two decimals, rounded down: 0.497 under a line of 0.5 reads 0.49, not 0.50 < 0.5."""
    return f"{math.floor(confidence * 100 + 1e-9) / 100:.2f}"


def may_reask(*, offline: bool, cloud_reasks: int, max_reasks: int, speculation: bool = False) -> str | None:
    """Why an engine is not asked after a doubted answer, or ``None``: it may be. A speculation (a
    preflight of the utterance so far) never pays a cloud engine for a second opinion: the final
    will ask it, once, if the final is doubted too."""
    if offline:
        return None
    if speculation:
        return "not re-asked for a speculation: a cloud engine is re-asked for the final only"
    if cloud_reasks < max_reasks:
        return None
    return f"not re-asked: max_reasks ({max_reasks}) re-asks of cloud engines already made"


def best(answers: Sequence[tuple[Transcript, frozenset[str] | None]]) -> Transcript:
    """The answer to give when every one was doubted (each with its engine's languages): the most
    confident in a language its engine transcribes, words before none, else the most confident;
    the first on a tie."""
    def rank(item: tuple[int, tuple[Transcript, frozenset[str] | None]]) -> tuple[bool, bool, float, int]:
        index, (answer, languages) = item
        return (language_in(answer.language, languages), has_words(answer.text), answer.confidence or 0.0,
                -index)

    return max(enumerate(answers), key=rank)[1][0]


# -- Whisper's own signals, on this scale ---------------------------------------------------------

WORDS_LINE = 0.61
"""The mean word probability the bundled tiny.en gives at the line between clean English (0.62 and
up on the benchmark's clips when it was set, bar one misheard clip) and speech in another language
(0.60 and down): it maps to ``DEFAULT_MIN_CONFIDENCE``."""
LOGPROB_LINE = -0.7
"""Without word probabilities (``verbose_json`` has none), a window's average token log
probability maps instead: -0.7, between a clean answer's (above -0.5) and the -1.0 at which
Whisper itself decodes again, is the line."""
SHORT_ANSWER = 2
"""Words in an answer too short for the lines above: a sentence's later words lean on the ones before
them; one or two words have nothing to lean on, and the bundled tiny.en rates short replies said
clearly far lower than sentences ("Correct." 0.19, "Yes." 0.48 to 0.67)."""
SHORT_WORDS_LINE = 0.15
"""The line for a short answer's mean word probability: under the 0.19 of short English replies heard
right, over the 0.10 of Spanish "Gracias" heard as "Yes" (faster-whisper's word probabilities on the
quality benchmark's clips, benchmarks/quality.py). What marks a short answer as misheard is Whisper's
own doubt: a fallback to sampling (below)."""
SHORT_LOGPROB_LINE = -1.0  # the same without word probabilities: Whisper's own line for decoding again
FELL_BACK = 0.6  # a window decoded again with sampling (temperature > 0): the model was unsure
REPETITIVE = 2.4  # Whisper's own compression ratio line for text that loops
# What Whisper says over silence and noise, learnt from subtitled videos (lower case, no punctuation).
PHANTOMS = frozenset({
    "you", "thank you", "thanks", "thank you very much", "thank you so much", "bye", "bye bye", "so",
    "okay", "oh", "uh", "um", "hmm", "yeah", "i", "the", "thanks for watching", "thank you for watching",
    "thank you so much for watching", "please subscribe", "subscribe", "music", "applause",
})
_PHANTOM_OPENINGS = ("thanks for watching", "thank you for watching", "thank you so much for watching",
                     "please subscribe", "subtitles by", "see you in the next")


@dataclass(frozen=True)
class WhisperWindow:
    """What a Whisper model says of one window it decoded (a faster-whisper or verbose_json segment)."""

    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float = 0.0
    temperature: float = 0.0
    word_probabilities: tuple[float, ...] = ()
    tokens: int = 1

    @classmethod
    def from_segment(cls, segment: Mapping[str, Any]) -> WhisperWindow | None:
        """A ``verbose_json`` segment's signals (Whisper's own names), or ``None`` where it lacks
        them (not every server sends them)."""
        logprob, no_speech = finite(segment.get("avg_logprob")), finite(segment.get("no_speech_prob"))
        if logprob is None or no_speech is None:
            return None
        tokens = segment.get("tokens")
        return cls(str(segment.get("text", "")), logprob, no_speech,
                   compression_ratio=finite(segment.get("compression_ratio")) or 0.0,
                   temperature=finite(segment.get("temperature")) or 0.0,
                   tokens=len(tokens) if isinstance(tokens, list) else 1)


def finite(value: object) -> float | None:
    """A finite number from an upstream's answer, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def whisper_speech(
    windows: Sequence[WhisperWindow], *, no_speech_threshold: float = 0.8,
    heard_speech: Callable[[int], bool] = lambda index: False,
) -> tuple[list[int], float]:
    """Which ``windows`` hold speech (their indices), and the confidence of the answer they make.

    A window is no speech when the model rates it likelier than ``no_speech_threshold`` to be none, or
    when it says a known phantom ("Thank you.") or loops on the same words while rating it at least 0.3
    likely to be none (or below Whisper's own -1.0 log probability), unless ``heard_speech(i)`` (a VAD
    over window ``i``'s audio, asked only of phantoms) hears speech: "Yeah." and "Okay." are said too. A
    phantom is left out, not re-asked. Confidence of speech: the mean word probability (else the
    average log probability), times the share of its word pairs that do not repeat within their window,
    times 0.6 if a window fell back to sampling and 0.5 if it loops (compression ratio over 2.4),
    mapped so ``WORDS_LINE`` (or ``LOGPROB_LINE``) is ``DEFAULT_MIN_CONFIDENCE``; an answer of at most
    ``SHORT_ANSWER`` words (a Chinese character or kana is one) is mapped from ``SHORT_WORDS_LINE``
    (``SHORT_LOGPROB_LINE``) instead, unless it is a phantom ``heard_speech`` did not hear, and a
    fallback to sampling puts it under its line. With no speech, the confidence that there is none:
    the least no-speech probability of the windows left out, mapped so ``no_speech_threshold`` is
    ``DEFAULT_MIN_CONFIDENCE`` (a phantom rated 0.5 likely silence is not sure enough); with no windows
    at all (the engine skipped them as silence), the line.
    """
    heard = functools.cache(heard_speech)  # a VAD's run: once per window at most
    kept = [i for i, w in enumerate(windows)
            if not _no_speech(w, no_speech_threshold, functools.partial(heard, i))]
    if not kept:
        least = min((w.no_speech_prob for w in windows), default=no_speech_threshold)
        return [], _on_scale(least, no_speech_threshold)
    speech = [windows[i] for i in kept]
    words = [p for w in speech for p in w.word_probabilities]
    text = " ".join(w.text for w in speech)
    # The short line is for words said: a phantom ("Thank you.") no VAD heard keeps the longer line.
    short = (len(words or words_of(text)) <= SHORT_ANSWER
             and not (phantom(text) and not any(heard(i) for i in kept)))
    if words:
        score, line = sum(words) / len(words), SHORT_WORDS_LINE if short else WORDS_LINE
    else:
        tokens = sum(max(1, w.tokens) for w in speech)
        score = math.exp(sum(w.avg_logprob * max(1, w.tokens) for w in speech) / tokens)
        line = math.exp(SHORT_LOGPROB_LINE if short else LOGPROB_LINE)
    # Within each window (a loop is the model's, in one window); a long file that repeats what was
    # said minutes before is speech, not a loop (a talk said four times read 0.10).
    sizes = [max(1, len(w.text.split())) for w in speech]
    score *= 1 - sum(repeated_pairs(w.text) * n for w, n in zip(speech, sizes, strict=True)) / sum(sizes)
    if any(w.temperature > 0 for w in speech):  # a short answer that fell back is doubted: under its line
        score *= (line * FELL_BACK) if short else FELL_BACK
    if any(w.compression_ratio > REPETITIVE for w in speech):
        score *= 0.5
    return kept, _on_scale(score, line)


def repeated_pairs(text: str) -> float:
    """The share of a text's word pairs that it has said before ("three, three, four" has none;
    "gen 1 gen 1 gen 1" has 3 of 5): speech seldom repeats itself within a few seconds."""
    words = re.findall(r"\w+", text.lower())  # a CJK run is one: its character pairs repeat in speech
    pairs = list(itertools.pairwise(words))
    return (len(pairs) - len(set(pairs))) / len(pairs) if pairs else 0.0


def phantom(text: str) -> bool:
    """Whether ``text`` is what Whisper says over silence: a known phrase, or words on a loop."""
    plain = " ".join(re.findall(r"[\w']+", text.lower()))
    return (not plain or plain in PHANTOMS or plain.startswith(_PHANTOM_OPENINGS)
            or repeated_pairs(plain) >= 0.5)


def _no_speech(window: WhisperWindow, threshold: float, heard_speech: Callable[[], bool]) -> bool:
    if window.no_speech_prob > threshold or not has_words(window.text):
        return True
    unsure = window.no_speech_prob >= 0.3 or window.avg_logprob < -1.0
    return unsure and phantom(window.text) and not heard_speech()


def _on_scale(score: float, line: float) -> float:
    """``score`` mapped onto [0, 1] so that ``line`` lands on ``DEFAULT_MIN_CONFIDENCE``, keeping
    the order (a power of the score: 0 stays 0, 1 stays 1)."""
    if score <= 0:
        return 0.0
    if score >= 1:
        return 1.0
    return float(DEFAULT_MIN_CONFIDENCE ** (math.log(score) / math.log(line)))
