"""The groq provider on the real groq SDK, against a fake Groq API on 127.0.0.1."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import stt_core
from fakes.groq_api import KEY, FakeGroq
from speech import MAX_WER, wer
from stt_core import (
    Audio,
    BreakerPolicy,
    Chain,
    ConfigError,
    InvalidAudioError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RetryPolicy,
)
from stt_core.testing import FakeProvider
from stt_core.testing.conformance import ProviderConformance
from stt_core_groq._provider import GroqProvider

AUDIO = Path(__file__).parents[1] / "fixtures" / "audio"


@pytest.fixture
async def groq(serve):  # type: ignore[no-untyped-def]
    fake = FakeGroq()
    fake.url = await serve(fake.app())
    return fake


def provider(fake: FakeGroq, **settings: object) -> GroqProvider:
    return GroqProvider(api_key=KEY, base_url=fake.url, **{"timeout": 2.0, **settings})


async def test_transcribes_through_the_real_sdk_and_sends_what_the_api_expects(groq: FakeGroq) -> None:
    clip = Audio.from_file(AUDIO / "fox.wav").to(sample_rate=44_100, channels=2)
    async with provider(groq, language="en", prompt="animals") as p:
        result = await p.transcribe(clip, word_timestamps=True)
    assert result.text == "hello from groq"
    assert result.language == "en"  # "english" in verbose_json
    assert [w.text for w in result.words] == ["hello", "from", "groq"]
    assert result.provider == "groq" and result.model == "whisper-large-v3-turbo"
    assert result.metadata["request_id"] == "req_0001"
    sent = groq.requests[0]
    assert sent.fields["model"] == "whisper-large-v3-turbo"
    assert sent.fields["language"] == "en" and sent.fields["prompt"] == "animals"
    assert sent.fields["response_format"] == "verbose_json"
    assert sent.fields["timestamp_granularities"] == ["word", "segment"]
    assert sent.filename == "audio.flac"
    # The audio arrived decodable, as 16 kHz mono, and is the audio we gave (lossless FLAC).
    assert (sent.audio.sample_rate, sent.audio.channels) == (16_000, 1)
    expected = clip.to(sample_rate=16_000, channels=1).float32()[:, 0]
    assert sent.audio.num_frames == len(expected)
    assert abs(sent.audio.float32()[:, 0] - expected).max() < 1e-3


async def test_audio_over_the_upload_limit_is_cut_at_silences_and_joined_in_time(groq: FakeGroq) -> None:
    groq.text = "piece {n}"
    clip = Audio.from_file(AUDIO / "two_utterances.wav")  # 5.1 s, 1.5 s of silence in the middle
    limit_mb = len(clip.encode("FLAC")) * 0.75 / 1e6
    result = await provider(groq, max_upload_mb=limit_mb).transcribe(clip)
    assert len(groq.requests) == 2 and result.metadata["pieces"] == 2
    assert result.text == "piece 1 piece 2"
    first, second = (r.audio.duration for r in groq.requests)
    assert first + second == pytest.approx(clip.duration, abs=0.01)
    assert 1.7 < first < 3.2  # the cut fell in the silence between the two utterances
    assert result.segments[1].start == pytest.approx(first, abs=0.01)
    assert result.segments[1].end == pytest.approx(clip.duration, abs=0.01)


async def test_audio_that_compresses_unevenly_is_cut_until_every_upload_fits(groq: FakeGroq) -> None:
    # A minute of digital silence, then speech: FLAC makes the silence almost nothing, so pieces
    # sized by the whole file's average left the speech in one upload over the limit (a 413).
    speech = Audio.from_file(AUDIO / "two_utterances.wav")
    clip = Audio.concat([Audio.silence(60.0), speech, speech, speech])
    limit = int(len(clip.encode("FLAC")) * 0.8)
    groq.max_upload_bytes = limit
    result = await provider(groq, max_upload_mb=limit / 1e6).transcribe(clip)
    assert len(groq.requests) >= 2 and result.text.startswith("hello from groq")
    assert sum(r.audio.duration for r in groq.requests) == pytest.approx(clip.duration, abs=0.01)
    with pytest.raises(ConfigError, match=r"max_upload_mb = 0\.001 is less than a second of audio"):
        await provider(groq, max_upload_mb=0.001).transcribe(speech)  # cut for ever (RecursionError)


@pytest.mark.parametrize(
    ("fault", "error", "retryable", "message"),
    [
        ("429", ProviderError, True, "rate limiting (HTTP 429, retry after 1 s)"),
        ("500", ProviderError, True, "HTTP 500"),
        ("401", ProviderUnavailable, None, "rejected the API key (HTTP 401)"),
        ("slow", ProviderTimeout, True, "did not answer within the timeout"),
        ("drop", ProviderError, True, "groq"),
        ("bad_json", ProviderError, True, "unreadable answer"),
        ("bad_audio", InvalidAudioError, None, "refused the audio (HTTP 400)"),
    ],
)
async def test_each_fault_maps_to_the_error_tree(
    groq: FakeGroq, fault: str, error: type[Exception], retryable: bool | None, message: str
) -> None:
    groq.faults.append(fault)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        await provider(groq, timeout=1.0).transcribe(AUDIO / "fox.wav")
    if retryable is not None:
        assert info.value.retryable is retryable  # type: ignore[attr-defined]
    assert groq.attempts == 1  # the SDK's own retries are off
    assert KEY not in str(info.value) and KEY not in repr(info.value)


async def test_no_key_is_unavailable_before_any_request(groq: FakeGroq) -> None:
    p = GroqProvider(base_url=groq.url)
    assert p.why_unavailable() == "no API key; set GROQ_API_KEY (or [groq] api_key)"
    with pytest.raises(ProviderUnavailable, match="no API key"):
        await p.transcribe(AUDIO / "fox.wav")
    assert groq.attempts == 0


async def test_health_probe(groq: FakeGroq) -> None:
    assert await provider(groq).health() is True
    assert await GroqProvider(api_key="wrong", base_url=groq.url).health() is False


# -- through a chain: groq -> fallback ---------------------------------------------------------------


def chain(groq: FakeGroq, fallback: FakeProvider, **options: object) -> Chain:
    return Chain([provider(groq), fallback], retry=RetryPolicy(attempts=3, initial_backoff=0.01, jitter=0),
                 **options)  # type: ignore[arg-type]


async def test_a_401_falls_over_at_once_to_whisper_without_retrying(groq: FakeGroq) -> None:
    groq.faults.append("401")
    chain = Chain([provider(groq), stt_core.registry().create("whisper")], retry=RetryPolicy(attempts=3))
    result = await chain.transcribe(AUDIO / "fox.wav")
    assert result.provider == "whisper" and wer("fox", result.text) <= MAX_WER, result.text
    assert groq.attempts == 1
    assert [(a.provider, a.outcome) for a in result.attempts] == [("groq", "unavailable"), ("whisper", "ok")]


async def test_repeated_500s_open_the_breaker(groq: FakeGroq) -> None:
    groq.faults.extend(["500"] * 6)
    fallback = FakeProvider(name="fallback", text="from the fallback")
    c = chain(groq, fallback, breaker=BreakerPolicy(failures=2, cooldown=60))
    for _ in range(2):
        assert (await c.transcribe(AUDIO / "fox.wav")).provider == "fallback"
    assert groq.attempts == 2  # two requests, one call each: the fallback could answer
    third = await c.transcribe(AUDIO / "fox.wav")
    assert third.provider == "fallback" and groq.attempts == 2  # the open breaker skipped groq
    assert third.attempts[0].outcome == "skipped" and "breaker" in (third.attempts[0].error or "")


async def test_the_key_never_reaches_the_logs(groq: FakeGroq, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    groq.faults.extend(["401", "500", "429"])
    fallback = FakeProvider(name="fallback", text="ok")
    await chain(groq, fallback).transcribe(AUDIO / "fox.wav")
    p = provider(groq)
    assert KEY not in caplog.text and KEY not in repr(p) and KEY not in str(p.settings)


def test_registered_through_its_entry_point() -> None:
    assert stt_core.registry(reload=True).get("groq").provider_class is GroqProvider


class TestGroqConformance(ProviderConformance):
    @pytest.fixture
    def threaded_groq(self, serve_in_thread) -> FakeGroq:  # type: ignore[no-untyped-def]
        fake = FakeGroq()
        fake.url = serve_in_thread(fake.app())
        return fake

    @pytest.fixture
    def provider(self, threaded_groq: FakeGroq) -> GroqProvider:
        return provider(threaded_groq)

    @pytest.fixture
    def failing_provider(self, fault_server) -> GroqProvider:  # type: ignore[no-untyped-def]
        return GroqProvider(api_key=KEY, base_url=fault_server.url)


@pytest.mark.live
@pytest.mark.skipif(not os.environ.get("GROQ_API_KEY"), reason="GROQ_API_KEY is not set")
async def test_the_real_groq_api() -> None:
    result = await GroqProvider(api_key=os.environ["GROQ_API_KEY"]).transcribe(AUDIO / "fox.wav")
    assert "fox" in result.text.lower()


# -- confidence (quality-aware routing, #35) ---------------------------------------------------------


async def test_confidence_comes_from_verbose_json_whisper_signals(groq: FakeGroq) -> None:
    clip = Audio.from_file(AUDIO / "fox.wav")
    async with provider(groq) as p:
        sure = await p.transcribe(clip)
        groq.avg_logprob, groq.temperature = -0.95, 0.4  # unsure: and it fell back to sampling
        unsure = await p.transcribe(clip)
        groq.text, groq.avg_logprob, groq.no_speech_prob, groq.temperature = "Thank you.", -1.1, 0.6, 0.0
        phantom = await p.transcribe(clip)
    assert sure.confidence is not None and sure.confidence > 0.75  # avg_logprob -0.2
    assert unsure.confidence is not None and unsure.confidence < 0.3 and unsure.text == "hello from groq"
    assert phantom.text == "" and not phantom.segments and not phantom.words  # near-silence is no speech


def test_whisper_models_declare_whispers_languages_and_english_only_ones_english() -> None:
    from stt_core_openai._provider import OpenAIProvider

    assert GroqProvider(api_key=KEY).capabilities.languages == stt_core.WHISPER_LANGUAGES
    assert OpenAIProvider(api_key=KEY).capabilities.languages == stt_core.WHISPER_LANGUAGES  # whisper-1
    for model in ("distil-whisper-large-v3-en", "Systran/faster-distil-whisper-large-v3", "small.en"):
        assert GroqProvider(api_key=KEY, model=model).capabilities.languages == {"en"}, model
