"""The append-only rule for ``/v1/realtime`` deltas (stt_core/_serve/deltas.py), as a table: the
guesses an item got, its final, and what was sent (a word goes once three guesses agree on it).
Whatever the guesses, the deltas joined are a prefix of the transcript, and the transcript is the
final wherever the final agrees with them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stt_core._serve.deltas import Deltas, join
from stt_core._types import joined_text

CASES = [
    # guesses, final, deltas sent (the final's last), transcript
    pytest.param([], "Hello there.", ["Hello there."], "Hello there.", id="no guess: all at the final"),
    pytest.param(["The quick"], "The quick brown fox.", ["The quick brown fox."], "The quick brown fox.",
                 id="one guess agrees with nothing yet"),
    pytest.param(["The quick", "The quick brown fo", "The quick brown fox jum"],
                 "The quick brown fox jumped.", ["The quick", " brown fox jumped."],
                 "The quick brown fox jumped.", id="words three guesses agree on, never the last"),
    pytest.param(["the", "the", "they came"], "They came.", ["They came."], "They came.",
                 id="a word whole in one guess only is not agreed"),
    pytest.param(["Let need", "Let need 25"], "We need 25 chairs.", ["We need 25 chairs."],
                 "We need 25 chairs.", id="two early guesses that agree are not enough"),
    pytest.param(["we need 2", "we need 25", "we need 25 chairs"], "We need 25 chairs for the party.",
                 ["we need", " 25 chairs for the party."], "we need 25 chairs for the party.",
                 id="the final changed the case of sent words: they stand"),
    pytest.param(["the quick round", "the quick round f", "the quick round fox jump"],
                 "The quick brown fox jumps over.",
                 ["the quick round", " fox jumps over."], "the quick round fox jumps over.",
                 id="a changed word already sent stands, the final goes on after it"),
    pytest.param(["a b c d", "a b c d e", "a b c d e f"], "x y", ["a b c d"], "a b c d",
                 id="a final shorter than what was sent"),
    pytest.param(["one two three", "one two three four", "one two three four five"], "", ["one two three"],
                 "one two three",
                 id="an empty final keeps the sent words"),
    pytest.param(["A B C", "A B C D", "A B C D E", "X Y Z", "X Y Z W", "X Y Z W V"], "X Y Z W.",
                 ["A B C", " W."], "A B C W.",
                 id="guesses that turn away send nothing more; the sent words stand for the final's"),
    pytest.param(["Good morning everyone and", "Good morning everyone and welcome",
                  "Good morning everyone and welcome to", "Good morning, everyone, and welcome to the",
                  "Good morning, everyone, and welcome to the weekly",
                  "Good morning, everyone, and welcome to the weekly planning"],
                 "Good morning, everyone, and welcome to the weekly planning meeting.",
                 ["Good morning everyone and", " welcome to the", " weekly planning meeting."],
                 "Good morning everyone and welcome to the weekly planning meeting.",
                 id="commas added to sent words: the words after them go on out (they stalled to the final)"),
    pytest.param(["我们 需要", "我们需要", "我们需要二十"], "我们需要二十五把椅子",
                 ["我们", "需要二十五把椅子"],
                 "我们需要二十五把椅子", id="Chinese: a character is a word"),
]


@pytest.mark.parametrize(("guesses", "final", "sent", "transcript"), CASES)
def test_the_rule(guesses: list[str], final: str, sent: list[str], transcript: str) -> None:
    deltas = Deltas()
    out = [d for g in guesses if (d := deltas.guess(g))]
    last, said = deltas.final(final)
    out.append(last)
    assert [d for d in out if d] == [d for d in sent if d]
    assert said == transcript
    assert "".join(out) == said  # the deltas joined are the transcript


@given(st.lists(st.lists(st.sampled_from(["a", "b", "c", "the", "cat", "sat", "Cat,", "mat."]), max_size=8),
                max_size=6),
       st.lists(st.sampled_from(["a", "b", "the", "cat", "sat", "on", "mat."]), max_size=8))
def test_the_deltas_joined_are_always_a_prefix_of_the_transcript(guesses: list[list[str]],
                                                                   final: list[str]) -> None:
    deltas = Deltas()
    sent = ""
    for guess in guesses:
        sent += deltas.guess(" ".join(guess))
        assert deltas.sent == sent
    last, transcript = deltas.final(" ".join(final))
    assert transcript.startswith(sent) and sent + last == transcript
    if " ".join(final).startswith(sent):
        assert transcript == " ".join(final)  # the final as the engine gave it, where it agrees


def test_join_spaces_words_not_cjk() -> None:
    assert join(["Hello  there.", "", "How are you?"]) == "Hello there. How are you?"
    assert join(["你好", "世界"]) == "你好世界"
    assert join(["Open the door.", "and the window."]) == "Open the door. and the window."  # sent: it stays
    # a file's pieces, joined once their texts are all known: the cut's full stop goes
    assert joined_text(["Hello  there.", "", "你好", "世界", "Open the door.", "and go."]) == \
        "Hello there.你好世界Open the door and go."
