"""The deepgram provider on the real deepgram-sdk, against a fake Deepgram API on 127.0.0.1:
pre-recorded over HTTP, live over the WebSocket protocol."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import psutil
import pytest

import stt_core
from fakes.deepgram_api import KEY, FakeDeepgram
from stt_core import (
    Audio,
    Chain,
    InvalidAudioError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RetryPolicy,
    StreamEvent,
)
from stt_core.testing.conformance import ProviderConformance
from stt_core_deepgram._provider import DeepgramProvider

AUDIO = Path(__file__).parents[1] / "fixtures" / "audio"
# What two_utterances.wav says, and when (good_morning, 1.5 s of silence, begin_meeting).
SCRIPT = [(0.0, 1.69, "Good morning everyone."), (3.19, 5.10, "Let us begin the meeting.")]


@pytest.fixture
async def deepgram(serve):  # type: ignore[no-untyped-def]
    fake = FakeDeepgram(utterances=list(SCRIPT))
    fake.url = await serve(fake.app())
    return fake


def provider(fake: FakeDeepgram, **settings: object) -> DeepgramProvider:
    return DeepgramProvider(api_key=KEY, base_url=fake.url, **{"timeout": 2.0, **settings})


async def frames(audio: Audio, *, frame: float = 0.1, pace: float = 0.01,
                 pause_at: float | None = None, pause: float = 0.0) -> AsyncIterator[Audio]:
    """``audio`` in real-time-sized frames, pushed faster than real time (``pace`` s apart)."""
    t = 0.0
    while t < audio.duration:
        yield audio.slice(t, t + frame)
        t += frame
        if pause_at is not None and abs(t - pause_at) < frame / 2:
            await asyncio.sleep(pause)
        await asyncio.sleep(pace)


# -- pre-recorded ----------------------------------------------------------------------------------


async def test_transcribe_through_the_prerecorded_api(deepgram: FakeDeepgram) -> None:
    clip = Audio.from_file(AUDIO / "two_utterances.wav").to(sample_rate=48_000, channels=2)
    result = await provider(deepgram, language="en").transcribe(clip)
    assert result.text == "Good morning everyone. Let us begin the meeting."
    assert result.language == "en" and result.provider == "deepgram" and result.model == "nova-3"
    assert [w.text for w in result.words][:2] == ["Good", "morning"]
    query, sent = deepgram.batch_requests[0]
    assert query["model"] == "nova-3" and query["language"] == "en"
    assert query["smart_format"] == "true" and query["punctuate"] == "true"
    assert (sent.sample_rate, sent.channels) == (16_000, 1)
    expected = clip.to(sample_rate=16_000, channels=1).float32()[:, 0]
    assert abs(sent.float32()[:, 0] - expected).max() < 1e-3


async def test_closing_the_provider_closes_its_connections_to_deepgram(deepgram: FakeDeepgram) -> None:
    port = int(deepgram.url.rsplit(":", 1)[1])

    def connections() -> int:
        return sum(1 for c in psutil.Process().net_connections("tcp")
                   if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)

    engine = provider(deepgram, language="en")
    await engine.transcribe(AUDIO / "fox.wav")
    assert connections() == 1  # kept alive for the next request
    await engine.aclose()
    assert connections() == 0  # was: the SDK's HTTP client was never closed


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("429", ProviderError, "rate limiting (HTTP 429, retry after 1 s)"),
        ("500", ProviderError, "HTTP 500"),
        ("401", ProviderUnavailable, "rejected the API key (HTTP 401)"),
        ("slow", ProviderTimeout, "did not answer within the timeout"),
        ("bad_json", ProviderError, "unreadable answer"),
    ],
)
async def test_each_fault_maps_to_the_error_tree(
    deepgram: FakeDeepgram, fault: str, error: type[Exception], message: str
) -> None:
    deepgram.faults.append(fault)
    with pytest.raises(error, match=re.escape(message)) as info:
        await provider(deepgram, timeout=1.0).transcribe(AUDIO / "fox.wav")
    assert deepgram.attempts == 1  # the SDK's own retries are off
    if fault == "429":
        assert info.value.retry_after == 1.0  # type: ignore[attr-defined]
    assert KEY not in str(info.value)


async def test_audio_deepgram_cannot_decode_is_invalid_audio(deepgram: FakeDeepgram) -> None:
    from deepgram.core.api_error import ApiError

    from stt_core_deepgram._provider import _map_error

    error = _map_error(ApiError(status_code=400, body={"err_code": "Bad Request",
                                                         "err_msg": "failed to process audio: corrupt data"}))
    assert isinstance(error, InvalidAudioError)


async def test_no_key_is_unavailable_before_any_request(deepgram: FakeDeepgram) -> None:
    p = DeepgramProvider(base_url=deepgram.url)
    with pytest.raises(ProviderUnavailable, match="no API key; set DEEPGRAM_API_KEY"):
        await p.transcribe(AUDIO / "fox.wav")
    with pytest.raises(ProviderUnavailable):
        async for _ in p.stream(frames(Audio.from_file(AUDIO / "fox.wav"))):
            pass
    assert deepgram.attempts == 0


# -- live ------------------------------------------------------------------------------------------


async def test_live_stream_gets_interim_and_final_results_in_order(deepgram: FakeDeepgram) -> None:
    clip = Audio.from_file(AUDIO / "two_utterances.wav")
    p = provider(deepgram, keepalive_interval=0.2)
    events = [e async for e in p.stream(frames(clip, pause_at=2.5, pause=0.5), language="en")]
    assert [(e.type, e.text) for e in events] == [
        ("interim", "Good"), ("final", "Good morning everyone."),
        ("interim", "Let us"), ("final", "Let us begin the meeting."),
    ]
    assert events[1].start == 0.0 and events[1].end == pytest.approx(1.69)
    assert [w.text for w in events[1].words] == ["Good", "morning", "everyone."]
    params = deepgram.stream_params[0]
    assert (params["encoding"], params["sample_rate"], params["channels"]) == ("linear16", "16000", "1")
    assert (params["model"], params["language"], params["interim_results"]) == ("nova-3", "en", "true")
    # Every sample arrived, in order; a KeepAlive went out during the pause; then a clean end.
    expected = clip.to(sample_format="int16").samples[:, 0]
    assert np.array_equal(deepgram.streamed_audio(), expected)
    assert "KeepAlive" in deepgram.control
    assert deepgram.control[-2:] == ["Finalize", "CloseStream"]


async def test_finalize_flushes_an_utterance_cut_off_by_the_end_of_input(deepgram: FakeDeepgram) -> None:
    clip = Audio.from_file(AUDIO / "two_utterances.wav").slice(0, 4.5)  # ends inside utterance two
    events = [e async for e in provider(deepgram).stream(frames(clip))]
    assert [e.text for e in events if e.is_final] == ["Good morning everyone.", "Let us begin the meeting."]


async def test_a_bad_key_is_refused_at_the_handshake(deepgram: FakeDeepgram) -> None:
    p = DeepgramProvider(api_key="wrong", base_url=deepgram.url)
    with pytest.raises(ProviderUnavailable, match=r"rejected the API key \(HTTP 401\)") as info:
        async for _ in p.stream(frames(Audio.from_file(AUDIO / "fox.wav"))):
            pass
    assert "wrong" not in str(info.value)


async def test_a_dropped_socket_is_a_retryable_error(deepgram: FakeDeepgram) -> None:
    deepgram.drop_after = 2.5
    events: list[StreamEvent] = []
    with pytest.raises(ProviderError, match="dropped the stream") as info:
        async for event in provider(deepgram).stream(frames(Audio.from_file(AUDIO / "two_utterances.wav"))):
            events.append(event)
    assert info.value.retryable is True
    assert [e.text for e in events if e.is_final] == ["Good morning everyone."]


async def test_chain_fails_over_mid_stream_and_replays_since_the_last_final(deepgram: FakeDeepgram) -> None:
    """Deepgram dies inside the second utterance, after an interim result for it; the chain
    hands the next engine (the real whisper model) everything since the last final result."""
    deepgram.drop_after = 4.3
    clip = Audio.from_file(AUDIO / "two_utterances.wav")
    whisper = stt_core.registry().create("whisper")
    chain = Chain([provider(deepgram), whisper], retry=RetryPolicy(attempts=1))
    events = [e async for e in chain.stream(frames(clip))]
    finals = [e for e in events if e.is_final]
    assert [e.provider for e in finals] == ["deepgram", "whisper"]
    assert finals[0].text == "Good morning everyone."
    assert "let us begin the meeting" in finals[1].text.lower()
    assert finals[1].start == pytest.approx(1.69, abs=0.11)  # the replay began at the last final's end
    joined = re.sub(r"[^a-z ]", "", " ".join(e.text for e in finals).lower())
    assert joined.split() == ["good", "morning", "everyone", "let", "us", "begin", "the", "meeting"]


async def test_the_key_never_reaches_the_logs(
    deepgram: FakeDeepgram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    deepgram.faults.append("401")
    with pytest.raises(ProviderUnavailable):
        await provider(deepgram).transcribe(AUDIO / "fox.wav")
    events = [e async for e in provider(deepgram).stream(frames(Audio.from_file(AUDIO / "fox.wav")))]
    assert events is not None
    assert KEY not in caplog.text and KEY not in repr(provider(deepgram))


def test_registered_through_its_entry_point() -> None:
    assert stt_core.registry(reload=True).get("deepgram").provider_class is DeepgramProvider


class TestDeepgramConformance(ProviderConformance):
    @pytest.fixture
    def threaded_deepgram(self, serve_in_thread) -> FakeDeepgram:  # type: ignore[no-untyped-def]
        fake = FakeDeepgram(utterances=[(0.0, 1.0, "a tone")])
        fake.url = serve_in_thread(fake.app())
        return fake

    @pytest.fixture
    def provider(self, threaded_deepgram: FakeDeepgram) -> DeepgramProvider:
        return provider(threaded_deepgram)

    @pytest.fixture
    def failing_provider(self, fault_server) -> DeepgramProvider:  # type: ignore[no-untyped-def]
        return DeepgramProvider(api_key=KEY, base_url=fault_server.url, timeout=5.0)


@pytest.mark.live
@pytest.mark.skipif(not os.environ.get("DEEPGRAM_API_KEY"), reason="DEEPGRAM_API_KEY is not set")
async def test_the_real_deepgram_api() -> None:
    p = DeepgramProvider(api_key=os.environ["DEEPGRAM_API_KEY"])
    assert "fox" in (await p.transcribe(AUDIO / "fox.wav")).text.lower()
    clip = Audio.from_file(AUDIO / "fox.wav")
    finals = [e async for e in p.stream(frames(clip, pace=0.1)) if e.is_final]
    assert "fox" in " ".join(e.text for e in finals).lower()


# -- confidence (quality-aware routing, #35) ---------------------------------------------------------


async def test_confidence_and_the_detected_language_come_through_the_sdk(deepgram: FakeDeepgram) -> None:
    deepgram.confidence, deepgram.detected_language = 0.41, "de"
    clip = Audio.from_file(AUDIO / "two_utterances.wav")
    result = await provider(deepgram).transcribe(clip)  # no language: Deepgram is asked to detect it
    assert (result.confidence, result.language) == (0.41, "de")
    assert deepgram.batch_requests[0][0]["detect_language"] == "true"
    told = await provider(deepgram, language="en").transcribe(clip)
    assert told.language == "en" and "detect_language" not in deepgram.batch_requests[1][0]
    finals = [e async for e in provider(deepgram).stream(frames(clip)) if e.is_final]
    assert finals and all(e.confidence == 0.41 for e in finals)


def test_nova_models_declare_their_languages() -> None:
    nova3 = DeepgramProvider(api_key=KEY).capabilities
    assert all(nova3.supports_language(code) for code in ("de", "en-US", "multi"))
    assert not nova3.supports_language("yue") and not nova3.supports_language("cy")
    assert DeepgramProvider(api_key=KEY, model="whisper-large").capabilities.languages is None
