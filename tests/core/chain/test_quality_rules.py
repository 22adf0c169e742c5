"""How the chain judges answers, as tables: stt_core._chain.quality decides without I/O (no loop,
no model). The drivers that act on it: tests/core/chain/test_quality_routing.py; on real engines:
tests/whisper/test_whisper_routing.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stt_core import QualityPolicy, Transcript, WhisperWindow, whisper_speech
from stt_core._chain.quality import Accept, Reask, best, judge, may_reask, phantom, repeated_pairs
from stt_core._types import words_of

EN, FIVE = frozenset({"en"}), frozenset({"zh", "en", "yue", "ja", "ko"})


def answer(text: str = "hello there", confidence: float | None = 0.9,
           language: str | None = "en") -> Transcript:
    return Transcript(text, language=language, confidence=confidence)


@pytest.mark.parametrize(("given", "min_confidence", "languages", "heard_nothing", "expected"), [
    (answer(confidence=0.9), 0.5, EN, False, Accept()),
    (answer(confidence=0.5), 0.5, EN, False, Accept()),  # the line itself passes
    (answer(confidence=0.49), 0.5, EN, False, Reask("confidence 0.49 < 0.5")),
    (answer(confidence=0.49), 0.4, EN, False, Accept()),  # an engine's own line
    (answer(confidence=0.497), 0.5, EN, False, Reask("confidence 0.49 < 0.5")),  # not "0.50 < 0.5"
    (answer(confidence=0.01), 0, EN, False, Accept()),  # 0: judging off
    (answer(language="zh"), 0, EN, False, Accept()),  # off means the language too
    (answer(language="zh"), 0.5, EN, False, Reask("answered in 'zh', which it does not transcribe")),
    (answer(language="en-US"), 0.5, EN, False, Accept()),
    (answer(language="en_US"), 0.5, EN, False, Accept()),  # as the request's language is read
    (answer(language="de"), 0.5, None, False, Accept()),  # an engine of any language
    (answer(language=None), 0.5, EN, False, Accept()),  # it did not say: nothing to hold against it
    (answer(confidence=None), 0.5, EN, False, Accept()),  # gives no confidence: nothing to judge by
    (answer(confidence=None, language="zh"), 0.5, EN, False,
     Reask("answered in 'zh', which it does not transcribe")),
    (answer("", confidence=0.85), 0.5, EN, False, Accept()),  # sure it heard no speech
    (answer(" ", confidence=0.2), 0.5, EN, False, Reask("heard no speech, with confidence 0.20 < 0.5")),
    (answer("", confidence=0.2), 0.5, EN, True, Accept()),  # two engines heard nothing: silence
    (answer(".", confidence=0.2), 0.5, EN, False, Reask("heard no speech, with confidence 0.20 < 0.5")),
    (answer("。", confidence=0.2), 0.5, FIVE, True, Accept()),  # punctuation alone is no speech too
    (answer("words", confidence=0.2), 0.5, EN, True, Reask("confidence 0.20 < 0.5")),
])
def test_judge(given: Transcript, min_confidence: float, languages: frozenset[str] | None,
               heard_nothing: bool, expected: Accept | Reask) -> None:
    assert judge(given, min_confidence=min_confidence, languages=languages,
                 heard_nothing_before=heard_nothing) == expected


def test_silence_after_words_another_engine_heard_is_doubted_too() -> None:
    sure_silence = answer("", confidence=0.95)
    assert judge(sure_silence, min_confidence=0.5, languages=EN, heard_nothing_before=False,
                 heard_words_before=True) == Reask("heard no speech where an engine before it heard words")


@pytest.mark.parametrize(("offline", "cloud_reasks", "max_reasks", "speculation", "expected"), [
    (True, 5, 0, False, None),  # a local engine: re-asked without a count
    (False, 0, 1, False, None),
    (False, 1, 1, False, "not re-asked: max_reasks (1) re-asks of cloud engines already made"),
    (False, 0, 0, False, "not re-asked: max_reasks (0) re-asks of cloud engines already made"),
    # a preflight at each pause re-asked the cloud engine: three paid calls for one utterance
    (False, 0, 1, True, "not re-asked for a speculation: a cloud engine is re-asked for the final only"),
    (True, 0, 1, True, None),
])
def test_may_reask(offline: bool, cloud_reasks: int, max_reasks: int, speculation: bool,
                   expected: str | None) -> None:
    assert may_reask(offline=offline, cloud_reasks=cloud_reasks, max_reasks=max_reasks,
                     speculation=speculation) == expected


@pytest.mark.parametrize(("answers", "expected"), [
    ([(answer("a", 0.3), EN), (answer("b", 0.4), FIVE)], "b"),  # the most confident
    ([(answer("a", 0.3), EN), (answer("b", 0.3), FIVE)], "a"),  # a tie: the first
    ([(answer("a", 0.9, "zh"), EN), (answer("b", 0.2), FIVE)], "b"),  # in its engine's language first
    ([(answer("a", None), EN), (answer("b", 0.1), EN)], "b"),  # none counts as 0
    ([(answer("Yes.", 0.4), EN), (answer(".", 0.99), FIVE)], "Yes."),  # words before punctuation alone
])
def test_best(answers: list[tuple[Transcript, frozenset[str] | None]], expected: str) -> None:
    assert best(answers).text == expected


def test_policy_bounds_and_per_engine_lines() -> None:
    policy = QualityPolicy(min_confidence=0.6, per_engine={"whisper": 0.3})
    assert (policy.min_confidence_of("whisper"), policy.min_confidence_of("groq")) == (0.3, 0.6)
    for bad in ({"min_confidence": 1.5}, {"max_reasks": -1}, {"per_engine": {"whisper": 2}}, {"nope": 1}):
        with pytest.raises(ValidationError):
            QualityPolicy(**bad)  # type: ignore[arg-type]


W = WhisperWindow
CLEAR = W(" Please open the door.", -0.3, 0.05, 0.9, 0.0, (0.9, 0.95, 0.9, 0.92))


@pytest.mark.parametrize(("windows", "kept", "low"), [
    ([CLEAR], [0], False),
    ([W(" Let us begin.", -0.7, 0.27, 0.8, 0.0, (0.7, 0.6, 0.75))], [0], False),  # 0.68: still English
    ([W(" and if we have three, three, four.", -0.93, 0.11, 0.97, 0.0, (0.5, 0.3, 0.4, 0.6))], [0], True),
    ([W(" nice words here", -0.6, 0.1, 0.9, 0.2, (0.8, 0.8, 0.8))], [0], True),  # fell back to sampling
    ([W(" gen 1 gen 1 gen 1 gen 1", -0.5, 0.1, 1.3, 0.0, (0.8,) * 8)], [0], True),  # on a loop
    ([W(" You", -0.97, 0.95, 0.3, 0.0, (0.03,))], [], False),  # silence, sure: accepted as none
    ([W(" Thank you so much for watching.", -1.1, 0.7, 0.9, 1.0, (0.3,) * 6)], [], True),  # a phantom, unsure
    ([W(" Thank you.", -0.2, 0.05, 0.5, 0.0, (0.95, 0.95))], [0], False),  # said, not a phantom
    ([W(" .", -0.9, 0.5, 0.9, 0.0, ())], [], True),  # no word at all
    ([CLEAR, W(" You", -0.97, 0.95, 0.3, 0.0, (0.03,))], [0], False),  # silence after speech is left out
    ([CLEAR, CLEAR], [0, 1], False),  # said again in the next window: speech, not a loop (it read low)
    ([W(" Please open the door.", -0.3, 0.05, 0.9)], [0], False),  # no word probabilities: log probability
    ([W(" mumble mumble stuff", -0.9, 0.05, 0.9)], [0], True),
    # one or two words: nothing before them to lean on, so their own lines
    ([W(" Correct.", -0.93, 0.15, 0.6, 0.0, (0.19,))], [0], False),  # said clearly, rated low
    ([W(" No thanks.", -0.85, 0.34, 0.6, 0.0, (0.66, 0.28))], [0], False),
    ([W(" Yes", -0.58, 0.19, 0.5, 0.0, (0.10,))], [0], True),  # Spanish "Gracias"
    ([W(" We.", -1.0, 0.2, 0.5, 1.0, (1.0,))], [0], True),  # fell back to sampling: doubted even if sure
    ([W(" Thank you.", -0.8, 0.25, 0.5, 0.0, (0.3, 0.4))], [0], True),  # a phantom unheard: no short line
    ([W(" 我们下午三点在会议室见面", -0.9, 0.1, 0.9)], [0], True),  # twelve words (characters), not one
    ([W(" Sure.", -0.9, 0.3, 0.5)], [0], False),  # no word probabilities: Whisper's own -1.0 line
    ([W(" Sure.", -0.4, 0.3, 0.5, 1.0)], [0], True),  # fell back: doubted though sure after (0.6x was not)
    ([W(" Sure.", -0.75, 0.2, 0.5, 0.0, (0.3,)), W(" you", -0.3, 0.1, 0.5, 0.0, (0.9,))], [0, 1], False),
])
def test_whisper_speech(windows: list[WhisperWindow], kept: list[int], low: bool) -> None:
    speech, confidence = whisper_speech(windows)
    assert speech == kept
    assert 0 <= confidence <= 1
    assert (confidence < 0.5) is low, confidence


def test_a_phantom_is_kept_as_words_where_the_audio_holds_speech() -> None:
    yeah = W(" Yeah.", -0.8, 0.53, 0.5, 0.0, (0.4,))  # said, and rated half likely to be silence
    assert whisper_speech([yeah])[0] == []  # no VAD's word: a phantom
    asked: list[int] = []
    assert whisper_speech([yeah], heard_speech=lambda i: asked.append(i) or True)[0] == [0]
    assert whisper_speech([CLEAR], heard_speech=lambda i: asked.append(i) or True)[0] == [0]
    assert asked == [0]  # asked only of a phantom, not of every window
    thanks_said = W(" Thank you.", -0.8, 0.25, 0.5, 0.0, (0.3, 0.4))  # not unsure enough to be left out
    assert whisper_speech([thanks_said], heard_speech=lambda i: True)[1] >= 0.5  # heard: a short reply
    too_sure = W(" You", -0.97, 0.95, 0.3, 0.0, (0.03,))  # over no_speech_threshold: the model's own say
    assert whisper_speech([too_sure], heard_speech=lambda i: True)[0] == []
    # a phantom over the silence after speech is judged by its own window, not the speech before it
    thanks = W(" Thank you.", -0.9, 0.6, 0.5, 0.0, (0.3, 0.3))
    assert whisper_speech([CLEAR, thanks], heard_speech=lambda i: i == 0)[0] == [0]


def test_whisper_speech_maps_its_lines_onto_the_default() -> None:
    on_words_line = whisper_speech([W(" a b c d", -0.5, 0.1, 0.9, 0.0, (0.61,) * 4)])[1]
    on_logprob_line = whisper_speech([W(" a b c d", -0.7, 0.1, 0.9)])[1]
    on_silence_line = whisper_speech([W(" You", -1.0, 0.8, 0.3)], no_speech_threshold=0.79)[1]
    assert on_words_line == pytest.approx(0.5) and on_logprob_line == pytest.approx(0.5)
    assert whisper_speech([W(" a b", -0.5, 0.1, 0.9, 0.0, (0.15, 0.15))])[1] == pytest.approx(0.5)
    assert whisper_speech([W(" a b", -1.0, 0.1, 0.9)])[1] == pytest.approx(0.5)
    assert on_silence_line == pytest.approx(0.5, abs=0.02)
    assert whisper_speech([])[1] == pytest.approx(0.5)  # every window skipped as silence: the line


@pytest.mark.parametrize(("text", "expected"), [
    ("Thank you.", True), ("you", True), ("Thanks for watching! See you", True), ("", True),
    ("go go go go go", True), ("Thank you for the report.", False), ("Please open the door.", False),
])
def test_phantom(text: str, expected: bool) -> None:
    assert phantom(text) is expected


def test_words_of() -> None:  # as faster-whisper splits words: Chinese and kana by character
    assert words_of("Don\u2019t go, V4!") == ["don\u2019t", "go", "v4"]  # a typeset apostrophe
    assert words_of("我们见面") == ["我", "们", "见", "面"]
    assert words_of("ありがとう") == ["あ", "り", "が", "と", "う"]
    assert words_of("감사합니다 친구") == ["감사합니다", "친구"]  # Korean is spaced
    assert words_of("\uff0c\u3002") == []  # full-width punctuation


def test_repeated_pairs() -> None:
    assert repeated_pairs("three, three, four") == 0
    assert repeated_pairs("gen 1 gen 1 gen 1") == pytest.approx(3 / 5)
    assert repeated_pairs("one") == 0


def test_a_verbose_json_segment_without_whisper_signals_gives_no_window() -> None:
    assert WhisperWindow.from_segment({"text": "hi", "avg_logprob": -0.2}) is None
    nan = {"text": "hi", "avg_logprob": float("nan"), "no_speech_prob": 0.1}
    assert WhisperWindow.from_segment(nan) is None
    window = WhisperWindow.from_segment({"text": "hi", "avg_logprob": -0.2, "no_speech_prob": 0.1,
                                         "temperature": 0.4, "tokens": [1, 2, 3]})
    assert window == WhisperWindow("hi", -0.2, 0.1, 0.0, 0.4, (), 3)
