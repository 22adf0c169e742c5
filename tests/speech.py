"""The committed speech fixtures and their references, and the text normalisation WER checks use."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import jiwer

ROOT = Path(__file__).parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "audio"
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
