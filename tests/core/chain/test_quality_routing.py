"""The chain acting on how it judges answers (quality-aware routing), with scripted engines:
a doubted answer is re-asked of the next engine, the best doubted answer wins when all are, cloud
re-asks are bounded, silence costs at most two calls, and stream finals are judged too."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stt_core import AllProvidersFailed, Audio, Capabilities, Chain, QualityPolicy, Transcript
from stt_core.testing import FakeProvider

AUDIO = Audio.silence(1.0)
EN = frozenset({"en"})
LOCAL, CLOUD = Capabilities(offline=True), Capabilities(offline=False)


def engine(name: str, confidence: float | None, text: str = "", **kw: object) -> FakeProvider:
    return FakeProvider(name=name, text=text or f"{name} heard", confidence=confidence, **kw)  # type: ignore[arg-type]


def outcomes(result: Transcript) -> list[tuple[str, str]]:
    return [(a.provider, a.outcome) for a in result.attempts]


async def test_a_confident_answer_is_given_and_nobody_else_asked() -> None:
    first, second = engine("whisper", 0.8), engine("funasr", 0.9)
    result = await Chain([first, second]).transcribe(AUDIO)
    assert (result.provider, result.confidence, outcomes(result)) == ("whisper", 0.8, [("whisper", "ok")])
    assert not second.calls


async def test_a_low_answer_is_reasked_of_the_next_engine() -> None:
    first, second = engine("whisper", 0.3), engine("funasr", 0.9)
    result = await Chain([first, second]).transcribe(AUDIO)
    assert (result.provider, result.text) == ("funasr", "funasr heard")
    assert outcomes(result) == [("whisper", "low_confidence"), ("funasr", "ok")]
    assert result.attempts[0].error == "confidence 0.30 < 0.5"
    assert len(first.calls) == len(second.calls) == 1  # a low answer is not retried


async def test_an_answer_in_a_language_its_engine_does_not_transcribe_is_reasked() -> None:
    english_only = FakeProvider(name="whisper", capabilities=Capabilities(languages=EN, offline=True),
                                script=[Transcript("Hallo", language="de", confidence=0.95)])
    other = engine("funasr", None)
    result = await Chain([english_only, other]).transcribe(AUDIO)
    assert result.provider == "funasr"
    assert result.attempts[0].error == "answered in 'de', which it does not transcribe"


async def test_when_every_answer_is_low_the_most_confident_wins() -> None:
    chain = Chain([engine("a", 0.2), engine("b", 0.4), engine("c", 0.3)])
    result = await chain.transcribe(AUDIO)
    assert (result.provider, result.text, result.confidence) == ("b", "b heard", 0.4)
    assert [outcome for _, outcome in outcomes(result)] == ["low_confidence"] * 3


async def test_a_low_answer_beats_the_failures_after_it() -> None:
    from stt_core import ProviderError

    chain = Chain([engine("a", 0.2), FakeProvider(name="b", script=[ProviderError("down", provider="b")])])
    result = await chain.transcribe(AUDIO)
    assert result.provider == "a" and [a.outcome for a in result.attempts] == ["low_confidence", "error"]


async def test_min_confidence_zero_turns_judging_off() -> None:
    second = engine("b", 0.9)
    off = QualityPolicy(min_confidence=0)
    result = await Chain([engine("a", 0.01), second], quality=off).transcribe(AUDIO)
    assert result.provider == "a" and not second.calls


async def test_an_engines_own_line_wins_over_the_chains() -> None:
    chain = Chain([engine("a", 0.3), engine("b", 0.9)], quality=QualityPolicy(per_engine={"a": 0.2}))
    assert (await chain.transcribe(AUDIO)).provider == "a"
    with pytest.raises(ValueError, match="min_confidence is set for nope, not in the chain"):
        Chain([engine("a", 0.3)], quality=QualityPolicy(per_engine={"nope": 0.2}))


async def test_cloud_engines_are_reasked_only_while_max_reasks_allows() -> None:
    local = engine("local", 0.2, capabilities=LOCAL)
    cloud1, cloud2 = engine("cloud1", 0.3, capabilities=CLOUD), engine("cloud2", 0.9, capabilities=CLOUD)
    result = await Chain([local, cloud1, cloud2]).transcribe(AUDIO)  # max_reasks = 1
    assert [outcome for _, outcome in outcomes(result)] == ["low_confidence", "low_confidence", "skipped"]
    assert "max_reasks (1)" in (result.attempts[2].error or "")
    assert result.provider == "cloud1" and not cloud2.calls
    more = await Chain([engine("local", 0.2, capabilities=LOCAL), engine("cloud1", 0.3, capabilities=CLOUD),
                        engine("cloud2", 0.9, capabilities=CLOUD)],
                       quality=QualityPolicy(max_reasks=2)).transcribe(AUDIO)
    assert more.provider == "cloud2"
    first_fails = await Chain([engine("cloud0", 0.2, capabilities=CLOUD, script=[ConnectionError("x")]),
                               engine("cloud1", 0.9, capabilities=CLOUD)],
                              quality=QualityPolicy(max_reasks=0)).transcribe(AUDIO)
    assert first_fails.provider == "cloud1"  # failing over is no re-ask: max_reasks does not count it


async def test_silence_costs_at_most_two_calls() -> None:
    unsure, sure, third = engine("a", 0.2, text=" "), engine("b", 0.1, text=" "), engine("c", 0.9)
    for e in (unsure, sure):
        e.settings = e.Settings(text="")
    result = await Chain([unsure, sure, third]).transcribe(AUDIO)
    assert result.text == "" and outcomes(result) == [("a", "low_confidence"), ("b", "ok")]
    assert not third.calls
    confident = engine("a", 0.9)
    confident.settings = confident.Settings(text="")
    assert outcomes(await Chain([confident, engine("b", 0.9)]).transcribe(AUDIO)) == [("a", "ok")]


async def test_an_answer_of_punctuation_alone_is_no_text_and_words_win_over_it() -> None:
    # SenseVoice's "." on a tone was given as the transcript, and beat whisper's doubted "Yes.".
    dot = engine("sensevoice", 0.95)
    dot.settings = dot.Settings(text=".")
    assert (await dot.transcribe(AUDIO)).text == ""  # any engine: "." is no word heard
    yes = engine("whisper", 0.4)
    yes.settings = yes.Settings(text="Yes.")
    result = await Chain([yes, dot]).transcribe(AUDIO)
    assert result.text == "Yes."  # silence after words another engine heard is doubted: the words win
    assert outcomes(result) == [("whisper", "low_confidence"), ("sensevoice", "low_confidence")]


async def test_a_hedged_request_reasks_too() -> None:
    slow_low = engine("a", 0.2, delay=0.2)
    result = await Chain([slow_low, engine("b", 0.9)], hedge_after=0.05).transcribe(AUDIO)
    assert result.provider == "b" and result.confidence == 0.9 and len(slow_low.calls) == 1
    fast_low = engine("a", 0.2)
    result = await Chain([fast_low, engine("b", 0.9)], hedge_after=5).transcribe(AUDIO)
    assert result.provider == "b" and outcomes(result) == [("a", "low_confidence"), ("b", "ok")]


async def chunks(n: int) -> AsyncIterator[Audio]:
    for i in range(n):
        yield Audio(__import__("numpy").full(1600, 0.01 * (i + 1), dtype="float32"), 16_000)


async def test_a_low_stream_final_is_reasked_with_its_audio() -> None:
    streaming = FakeProvider(name="deepgram", confidence=0.2, final_every=2, text="low words")
    batch = FakeProvider(name="whisper", confidence=0.9, echo=True,
                         capabilities=Capabilities(offline=True))
    chain = Chain([streaming, batch])
    events = [e async for e in chain.stream(chunks(4))]
    finals = [e for e in events if e.is_final]
    interims = [e for e in events if e.type == "interim"]
    assert [f.provider for f in finals] == ["whisper", "whisper"]
    assert all(i.provider == "deepgram" for i in interims)  # interims are not judged
    assert [round(c.duration, 2) for c in batch.calls] == [0.2, 0.2]  # each final's own audio
    assert [f.confidence for f in finals] == [0.9, 0.9] and finals[1].start == pytest.approx(0.2)
    assert len(streaming.streams) == 1  # the stream itself stayed on its engine


async def test_a_confident_stream_final_stands_and_silence_is_not_reasked() -> None:
    batch = FakeProvider(name="whisper", confidence=0.9)
    sure = FakeProvider(name="deepgram", confidence=0.95, final_every=2)
    finals = [e async for e in Chain([sure, batch]).stream(chunks(4)) if e.is_final]
    assert [f.provider for f in finals] == ["deepgram", "deepgram"] and not batch.calls
    quiet = FakeProvider(name="deepgram", confidence=0.0, final_every=2, text="")
    finals = [e async for e in Chain([quiet, batch]).stream(chunks(4)) if e.is_final]
    assert [f.text for f in finals] == ["", ""] and not batch.calls


async def test_a_speculation_gives_a_doubted_answer_unless_it_left_a_cloud_engine_to_the_final() -> None:
    # Real time keeps what a preflight heard as the utterance's: a doubted answer may stand only
    # where the final would ask no one else (else the cloud engine behind was never asked).
    alone = Chain([engine("local", 0.2, capabilities=LOCAL)])
    assert (await alone.transcribe(AUDIO, purpose="speculation")).text == "local heard"
    local, cloud = engine("local", 0.2, capabilities=LOCAL), engine("cloud", 0.9, capabilities=CLOUD)
    with pytest.raises(AllProvidersFailed):
        await Chain([local, cloud]).transcribe(AUDIO, purpose="speculation")
    assert not cloud.calls
    assert (await Chain([local, cloud]).transcribe(AUDIO, purpose="utterance")).text == "cloud heard"
