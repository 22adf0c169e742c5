"""The committed speech fixtures and their references, and the text normalisation WER checks use."""

from __future__ import annotations

import asyncio
import csv
import re
from collections.abc import AsyncIterator
from pathlib import Path

import jiwer
import numpy as np

import stt_core
from stt_core import Audio, RealtimeSettings

ROOT = Path(__file__).parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "audio"
# A real SenseVoiceSmall, small enough to commit, built with funasr's own classes
# (tests/fixtures/funasr/build_tiny_sensevoice.py): FunASR's real code with no download.
TINY_SENSEVOICE = ROOT / "tests" / "fixtures" / "funasr" / "tiny-sensevoice"
REFERENCES = {
    row["name"]: row["text"]
    for row in csv.DictReader((FIXTURES / "references.tsv").open(), delimiter="\t")
}

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    rest = n % 100
    return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))


def normalize(text: str) -> str:
    """Case, punctuation and numbers (digits become words) do not count as errors."""
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} ", text.lower())
    text = re.sub(r"[^a-z' ]+", " ", text)
    return " ".join(text.split())


MAX_WER = 0.25
"""What a test allows whisper tiny.en on one clip: 2 words of fox.wav's 9. Its words on a clip can
change with the CPU's kernels (int8 under MKL on Intel, DNNL on AMD: "the quick round fox jump"),
so tests bound the error against the reference instead of expecting one machine's exact output."""


def wer(reference: str, heard: str) -> float:
    """Word error rate of ``heard`` against ``reference``: a fixture's name, or the words said."""
    return float(jiwer.wer(normalize(REFERENCES.get(reference, reference)), normalize(heard)))


Spans = list[tuple[float, float]]


def conversation(clips: tuple[str, ...], gap: float = 1.2, lead: float = 0.6,
                 trim: bool = False) -> tuple[Audio, Spans]:
    """The fixtures one after another (16 kHz mono float32) with ``gap`` seconds of silence between
    them and ``lead`` before, and where each one's audio lies. ``trim``: each clip without the
    silence espeak-ng leaves around it (0.4 s at its end), so ``gap`` is the whole pause."""
    pieces, spans, at = [Audio.silence(lead)], [], lead
    for name in clips:
        clip = Audio.from_file(FIXTURES / f"{name}.wav").to(16_000, 1, "float32")
        if trim:
            loud = np.flatnonzero(np.abs(clip.mono_float32()) > 0.01)
            clip = clip.slice(max(0.0, loud[0] / 16_000 - 0.02), loud[-1] / 16_000 + 0.05)
        pieces += [clip, Audio.silence(gap)] if gap else [clip]
        spans.append((at, at + clip.duration))
        at += clip.duration + gap
    return Audio.concat(pieces), spans


async def live(audio: Audio, chunk: float = 0.02, pace: float = 0.0) -> AsyncIterator[Audio]:
    """``audio`` as a live source: ``chunk``-second pieces, ``pace`` seconds apart (0: at once)."""
    step = round(chunk * audio.sample_rate)
    for i in range(0, audio.num_frames, step):
        yield audio.slice(i / audio.sample_rate, (i + step) / audio.sample_rate)
        await asyncio.sleep(pace)


# Real time's bounds for a test of what a real model heard, not of how fast it heard it: on CI's two
# busy cores (two test workers, one of them installing wheels or running a Ray cluster) whisper
# tiny.en has taken past the default 10 s attempt_timeout for a 2.7 s clip, and the utterance failed.
PATIENT = RealtimeSettings(attempt_timeout=120, drain_timeout=120)


def warm_whisper() -> stt_core.Provider:
    """The bundled whisper tiny.en, loaded (a test's first utterance does not wait for the model)
    and on one thread (two test workers share two cores)."""
    whisper = stt_core.registry().create("whisper", {"model": "bundled", "cpu_threads": 1})
    asyncio.run(whisper.warmup())
    return whisper
