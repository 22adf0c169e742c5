"""Append-only transcript deltas for one item of a ``/v1/realtime`` session.

A delta cannot be taken back: clients join them (LiveKit shows the joined deltas as its interim,
Pipecat shows each one as it comes), so an item's deltas joined must always be a prefix of its
final transcript. Real time gives guesses that change (interims, the preflight) and then the
final, each recognised again from the whole utterance so far. The rule:

1. **Only what three guesses in a row agree on is sent** (whisper-streaming's "local agreement",
   with one guess more: a small or busy engine's first guesses, on a second of audio, can agree
   twice and still be wrong): the longest common start of this guess and the two before, cut
   back to a word that is whole in each, and never the guess's last word (it may be a word cut
   off mid-way). Where the agreed words start with the words sent, case and punctuation aside
   (the engine, hearing more, added a comma), the words after them go out; a guess that changes
   a word already sent sends nothing, and a later one may agree again.
2. **At the final**: if it starts with what was sent, the rest is the last delta and the final
   is the transcript as the engine gave it.
3. **If the final changed a word that was already sent** (the engine, hearing the whole
   utterance, revised its start), the sent words stand: the transcript is what was sent, then
   the final's words from where the sent text ends in it (found by aligning the words, case
   and punctuation aside). A client's display never changes under the user, and the transcript
   holds every word of the final after the sent part.

Words are runs of non-space characters; in Chinese, Japanese and Korean text each character is
one. No I/O: table-tested in tests/serve/test_deltas.py.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections import deque
from dataclasses import dataclass, field

from .._types import WIDE, WIDE_CHAR, glue, squeeze

_WORD = re.compile(rf"[{WIDE}]|[^\s{WIDE}]+")
AGREE = 3  # guesses in a row that must agree on a word before it is sent


def join(parts: list[str]) -> str:
    """An item's utterances as one text, spacing made single (``glue``: no space beside CJK). Unlike
    a file's pieces (``joined_text``), no full stop is dropped: the delta that carried it is out."""
    return functools.reduce(glue, (squeeze(part) for part in parts), "")


@dataclass
class Deltas:
    """What has been sent for one item, and the guess before the latest."""

    sent: str = ""
    _before: deque[str] = field(default_factory=lambda: deque(maxlen=AGREE - 1), repr=False)

    def guess(self, text: str) -> str:
        """An interim or preflight of the item: the delta to send now ("" for none)."""
        text = squeeze(text)
        stable = _agreed(list(self._before), text) if len(self._before) == AGREE - 1 else ""
        self._before.append(text)
        if stable.startswith(self.sent):
            delta = stable[len(self.sent):]
        else:  # sent words, their commas or case changed since: the words after them, if any
            said, words = _WORD.findall(self.sent), list(_WORD.finditer(stable))
            if [_plain(w) for w in said] != [_plain(w.group()) for w in words[:len(said)]]:
                return ""
            rest = stable[words[len(said)].start():] if len(words) > len(said) else ""
            delta = glue(self.sent, rest)[len(self.sent):]
        self.sent += delta
        return delta

    def final(self, text: str) -> tuple[str, str]:
        """The item's final: (the last delta, the transcript), the transcript starting with every
        delta sent."""
        text = squeeze(text)
        transcript = text if text.startswith(self.sent) else glue(self.sent, _after(self.sent, text))
        delta = transcript[len(self.sent):]
        self.sent = transcript
        return delta, transcript


def _agreed(before: list[str], now: str) -> str:
    """The start of ``now`` that every guess ``before`` agrees with, in whole words, without
    ``now``'s last word."""
    common = len(now)
    for guess in before:
        common = min(common, next((i for i, (a, b) in enumerate(zip(guess, now, strict=False)) if a != b),
                                  min(len(guess), len(now))))
    ends = [m.end() for m in _WORD.finditer(now)][:-1]  # the last word may be cut off mid-way
    whole = [end for end in ends if end <= common and all(_ends_word(guess, end) for guess in before)]
    return now[:whole[-1]] if whole else ""


def _ends_word(text: str, at: int) -> bool:
    """Whether a word of ``text`` ends at ``at`` (not "the" of "they")."""
    return at == len(text) or text[at].isspace() or bool(WIDE_CHAR.match(text[at - 1:at + 1]))


def _after(sent: str, final: str) -> str:
    """The part of ``final`` that follows what ``sent`` said, found by aligning their words."""
    said, words = _WORD.findall(sent), list(_WORD.finditer(final))
    matcher = difflib.SequenceMatcher(None, [_plain(w) for w in said], [_plain(w.group()) for w in words],
                                      autojunk=False)
    blocks = [b for b in matcher.get_matching_blocks() if b.size]
    if blocks:
        i, j, n = blocks[-1].a, blocks[-1].b, blocks[-1].size
        # the sent words after the last match stand for as many of the final's (they were changed)
        index = j + n + (len(said) - (i + n))
    else:
        index = len(said)
    return final[words[index].start():] if index < len(words) else ""


def _plain(word: str) -> str:
    return re.sub(r"[\W_]+", "", word.lower())
