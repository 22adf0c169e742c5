"""Every chain rule, driven by FakeProvider."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from stt_core import (
    AllProvidersFailed,
    Attempt,
    Audio,
    BreakerPolicy,
    Capabilities,
    Chain,
    ConfigError,
    InvalidAudioError,
    Provider,
    ProviderError,
    ProviderUnavailable,
    RetryPolicy,
    StreamEvent,
)
from stt_core.testing import FakeProvider, level_chunks

FAST = RetryPolicy(attempts=3, initial_backoff=0.0, max_backoff=0.0, jitter=0.0)
AUDIO = Audio.silence(0.5)


def retryable(status: int = 503, retry_after: float | None = None) -> ProviderError:
    return ProviderError("busy", retryable=True, status_code=status, retry_after=retry_after)


async def test_first_provider_answers_and_attempts_are_reported() -> None:
    seen: list[Attempt] = []
    a, b = FakeProvider(name="a", text="from a"), FakeProvider(name="b")
    result = await Chain([a, b], on_attempt=seen.append).transcribe(AUDIO)
    assert (result.text, result.provider) == ("from a", "a")
    assert [(x.provider, x.outcome) for x in result.attempts] == [("a", "ok")]
    assert seen == list(result.attempts)
    assert b.calls == []


async def test_retryable_error_is_retried_then_succeeds() -> None:
    a = FakeProvider(name="a", script=[retryable(), retryable(), "third time"])
    result = await Chain([a], retry=FAST).transcribe(AUDIO)
    assert result.text == "third time"
    assert [x.outcome for x in result.attempts] == ["error", "error", "ok"]


async def test_retryable_error_falls_over_at_once_when_another_engine_can_answer() -> None:
    a = FakeProvider(name="a", script=[retryable()] * 3)
    b = FakeProvider(name="b", text="from b")
    chain = Chain([a, b], retry=RetryPolicy(initial_backoff=1.0))
    started = time.perf_counter()
    result = await chain.transcribe(AUDIO)
    assert result.provider == "b" and len(a.calls) == 1
    assert time.perf_counter() - started < 0.5  # no backoff spent on a
    assert chain.breakers[0]._failures == 1  # the failure still counts toward a's breaker


async def test_retry_before_fallover_retries_the_first_engine_then_falls_over() -> None:
    a = FakeProvider(name="a", script=[retryable()] * 3)
    b = FakeProvider(name="b", text="from b")
    patient = RetryPolicy(attempts=3, initial_backoff=0.0, max_backoff=0.0, jitter=0.0,
                          retry_before_fallover=True)
    result = await Chain([a, b], retry=patient).transcribe(AUDIO)
    assert result.provider == "b" and len(a.calls) == 3


async def test_the_last_engine_that_can_answer_is_retried() -> None:
    # b cannot take French: a is the last engine for this request, so a is retried.
    a = FakeProvider(name="a", script=[retryable(), "second time"])
    b = FakeProvider(name="b", capabilities=Capabilities(languages=frozenset({"en"})))
    result = await Chain([a, b], retry=FAST).transcribe(AUDIO, language="fr")
    assert result.text == "second time" and len(a.calls) == 2


async def test_non_retryable_error_falls_over_without_retry() -> None:
    a = FakeProvider(name="a", script=[ProviderError("bad request", retryable=False)])
    b = FakeProvider(name="b")
    result = await Chain([a, b], retry=FAST).transcribe(AUDIO)
    assert result.provider == "b" and len(a.calls) == 1


@pytest.mark.parametrize("error", [ProviderUnavailable("no key"), ConfigError("bad setting")])
async def test_unavailable_and_config_errors_move_on_at_once(error: Exception) -> None:
    a = FakeProvider(name="a", script=[error])
    result = await Chain([a, FakeProvider(name="b")], retry=FAST).transcribe(AUDIO)
    assert result.provider == "b" and len(a.calls) == 1
    assert result.attempts[0].outcome == "unavailable"


async def test_invalid_audio_goes_to_caller_without_retry_or_fallover() -> None:
    a = FakeProvider(name="a", script=[InvalidAudioError("garbled")])
    b = FakeProvider(name="b")
    with pytest.raises(InvalidAudioError, match="garbled"):
        await Chain([a, b], retry=FAST).transcribe(AUDIO)
    assert len(a.calls) == 1 and b.calls == []


async def test_retry_after_is_honoured() -> None:
    a = FakeProvider(name="a", script=[retryable(429, retry_after=0.3), "ok"])
    chain = Chain([a], retry=RetryPolicy(attempts=2, initial_backoff=0.0, max_backoff=0.0, jitter=0.0))
    started = time.perf_counter()
    result = await chain.transcribe(AUDIO)
    assert result.text == "ok"
    assert time.perf_counter() - started >= 0.3  # waited what the engine asked, not the 0 s backoff


async def test_retry_after_beyond_the_cap_falls_over_instead_of_waiting() -> None:
    a = FakeProvider(name="a", script=[retryable(429, retry_after=3600)])
    patient = RetryPolicy(max_retry_after=5, retry_before_fallover=True)
    chain = Chain([a, FakeProvider(name="b")], retry=patient)
    result = await asyncio.wait_for(chain.transcribe(AUDIO), timeout=5)
    assert result.provider == "b" and len(a.calls) == 1


async def test_backoff_grows_exponentially_without_retry_after() -> None:
    a = FakeProvider(name="a", script=[retryable(), retryable(), "ok"])
    policy = RetryPolicy(attempts=3, initial_backoff=0.1, max_backoff=1.0, jitter=0.0)
    started = time.perf_counter()
    await Chain([a], retry=policy).transcribe(AUDIO)
    assert time.perf_counter() - started >= 0.1 + 0.2  # 0.1 then 0.2 s


async def test_attempt_timeout_is_retryable_then_falls_over() -> None:
    slow = FakeProvider(name="slow", delay=10)
    patient = RetryPolicy(attempts=3, initial_backoff=0.0, max_backoff=0.0, jitter=0.0,
                          retry_before_fallover=True)
    chain = Chain([slow, FakeProvider(name="b")], retry=patient, attempt_timeout=0.05)
    result = await chain.transcribe(AUDIO)
    assert result.provider == "b"
    assert [x.outcome for x in result.attempts] == ["timeout", "timeout", "timeout", "ok"]


async def test_all_failed_lists_every_cause_in_order() -> None:
    a = FakeProvider(name="a", script=[ProviderUnavailable("no model")])
    b = FakeProvider(name="b", script=[ProviderError("boom")])
    with pytest.raises(AllProvidersFailed) as info:
        await Chain([a, b], retry=FAST).transcribe(AUDIO)
    assert [name for name, _ in info.value.errors] == ["a", "b"]
    assert "a: no model" in str(info.value) and "b: boom" in str(info.value)
    assert [x.provider for x in info.value.attempts] == ["a", "b"]


async def test_unexpected_exception_in_an_engine_becomes_provider_error_and_falls_over() -> None:
    a = FakeProvider(name="a", script=[KeyError("internal bug")])
    result = await Chain([a, FakeProvider(name="b")], retry=FAST).transcribe(AUDIO)
    assert result.provider == "b"
    assert "KeyError" in (result.attempts[0].error or "")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_breaker_opens_skips_then_one_request_probes_an_engine_without_health() -> None:
    clock = Clock()
    a = FakeProvider(name="a", script=[ProviderError("down")] * 2)  # health() says None: it has none
    b = FakeProvider(name="b")
    chain = Chain([a, b], retry=FAST, breaker=BreakerPolicy(failures=2, cooldown=10), clock=clock)
    for _ in range(2):
        await chain.transcribe(AUDIO)
    assert chain.breakers[0].state == "open"
    await asyncio.sleep(0.05)  # the background prober learns that a has no health check
    result = await chain.transcribe(AUDIO)  # open: a is not called at all
    assert len(a.calls) == 2
    skipped = Attempt("a", "skipped", 0.0, "circuit breaker open: it failed and has not recovered yet")
    assert result.attempts[0] == skipped
    clock.now = 11  # cool-down over: the next request is the probe, with one short attempt
    a.delay = 5.0
    result = await chain.transcribe(AUDIO)
    assert result.provider == "b" and result.attempts[0].outcome == "timeout"
    assert result.attempts[0].latency < BreakerPolicy().probe_timeout + 0.5
    assert len(a.calls) == 3 and chain.breakers[0].state == "open"
    clock.now = 22
    a.delay = 0.0
    result = await chain.transcribe(AUDIO)
    assert result.provider == "a" and chain.breakers[0].state == "closed"


async def test_failed_probe_reopens_the_breaker() -> None:
    clock = Clock()
    a = FakeProvider(name="a", script=[ProviderError("down")] * 3)
    chain = Chain(
        [a, FakeProvider(name="b")], retry=FAST, breaker=BreakerPolicy(failures=2, cooldown=10), clock=clock
    )
    for _ in range(2):
        await chain.transcribe(AUDIO)
    await asyncio.sleep(0.05)
    clock.now = 11
    await chain.transcribe(AUDIO)  # the probe fails
    assert chain.breakers[0].state == "open" and len(a.calls) == 3
    clock.now = 15  # still cooling down from the failed probe
    await chain.transcribe(AUDIO)
    assert len(a.calls) == 3


async def test_a_speculation_teaches_no_breaker_whether_it_fails_or_answers() -> None:
    # Real time's recognitions ahead of need are not requests: only requests' failures in a row open
    # an engine's breaker, so one that answers only speculations still opens on its failing requests.
    down = ProviderError("down")
    a = FakeProvider(name="a", script=[down, "ok", down, down])
    chain = Chain([a, FakeProvider(name="b")], retry=FAST, breaker=BreakerPolicy(failures=2, cooldown=10))
    await chain.transcribe(AUDIO)
    assert (await chain.transcribe(AUDIO, purpose="speculation")).provider == "a"
    await chain.transcribe(AUDIO)
    assert chain.breakers[0].state == "open"  # two failed requests in a row, the speculation between
    assert (await chain.transcribe(AUDIO, purpose="speculation")).provider == "b"  # and none probes it


async def test_an_engine_with_health_is_probed_in_the_background_not_with_user_requests() -> None:
    a = FakeProvider(name="a", script=[ProviderError("down")] * 2, healthy=False)
    b = FakeProvider(name="b")
    policy = BreakerPolicy(failures=2, cooldown=600, probe_interval=0.02)
    async with Chain([a, b], retry=FAST, breaker=policy) as chain:
        for _ in range(2):
            await chain.transcribe(AUDIO)
        for _ in range(5):
            await asyncio.sleep(0.02)
            assert (await chain.transcribe(AUDIO)).provider == "b"
        assert a.health_checks >= 3 and len(a.calls) == 2  # probed, never sent a user's audio
        a.healthy = True
        for _ in range(100):
            if chain.breakers[0].state == "closed":
                break
            await asyncio.sleep(0.01)
        assert chain.breakers[0].state == "closed"  # long before the 600 s cool-down
        assert (await chain.transcribe(AUDIO)).provider == "a"
        probers = [link.prober for link in chain.links if link.prober is not None]
        assert probers  # one prober ran ...
    assert all(task.done() for task in probers)  # ... none left


async def test_routing_skips_providers_that_do_not_declare_the_language() -> None:
    asian = FakeProvider(name="sensevoice", capabilities=Capabilities(languages=frozenset({"zh", "ja"})))
    anything = FakeProvider(name="whisper")
    chain = Chain([asian, anything])
    assert (await chain.transcribe(AUDIO, language="zh")).provider == "sensevoice"
    result = await chain.transcribe(AUDIO, language="fr")
    assert result.provider == "whisper" and len(asian.calls) == 1
    assert result.attempts[0].outcome == "skipped"
    assert "language 'fr'" in (result.attempts[0].error or "")
    assert (await chain.transcribe(AUDIO)).provider == "sensevoice"  # no language: anyone


async def test_routing_skips_providers_without_word_timestamps_when_asked() -> None:
    plain = FakeProvider(name="plain", capabilities=Capabilities(word_timestamps=False))
    timed = FakeProvider(name="timed")
    result = await Chain([plain, timed]).transcribe(AUDIO, word_timestamps=True)
    assert result.provider == "timed" and plain.calls == []


async def test_chain_capabilities_are_the_union_of_its_members() -> None:
    a = FakeProvider(name="a", capabilities=Capabilities(languages=frozenset({"zh"})))
    b = FakeProvider(name="b", capabilities=Capabilities(languages=frozenset({"en"}), streaming=True))
    caps = Chain([a, b]).capabilities
    assert caps.languages == {"zh", "en"} and caps.streaming
    assert Chain([a, FakeProvider(name="c")]).capabilities.languages is None


async def test_chain_closes_members_once() -> None:
    a, b = FakeProvider(name="a"), FakeProvider(name="b")
    async with Chain([a, b]) as chain:
        await chain.transcribe(AUDIO)
    await chain.aclose()
    assert (a.closed_count, b.closed_count) == (1, 1)


async def test_concurrent_requests_share_one_chain() -> None:
    a = FakeProvider(name="a", delay=0.01, echo=True)
    chain = Chain([a])
    results = await asyncio.gather(*(chain.transcribe(c) for c in level_chunks(range(1, 21))))
    assert [r.text for r in results] == [str(n) for n in range(1, 21)]


async def test_hedging_when_both_sides_fail_tries_each_engine_once() -> None:
    slow = FakeProvider(name="slow", delay=0.2, script=[ProviderError("late failure")])
    fast = FakeProvider(name="fast", script=[ProviderError("quick failure")])
    chain = Chain([slow, fast], retry=FAST, hedge_after=0.05)
    with pytest.raises(AllProvidersFailed):
        await chain.transcribe(AUDIO)
    assert (len(slow.calls), len(fast.calls)) == (1, 1)


async def test_hedging_answers_from_the_rest_and_cancels_the_slow_engine() -> None:
    slow, fast = FakeProvider(name="slow", delay=5.0), FakeProvider(name="fast", text="quick")
    result = await Chain([slow, fast], hedge_after=0.05).transcribe(AUDIO)
    assert result.text == "quick"
    assert sorted((a.provider, a.outcome) for a in result.attempts) == [("fast", "ok"), ("slow", "cancelled")]


# -- streaming -----------------------------------------------------------------------------


async def frames(levels: range, pace: float = 0.0) -> AsyncIterator[Audio]:
    for chunk in level_chunks(levels):
        if pace:
            await asyncio.sleep(pace)
        yield chunk


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


async def test_stream_passes_interim_and_final_events_in_order() -> None:
    a = FakeProvider(name="a", echo=True, final_every=2)
    events = await collect(Chain([a]).stream(frames(range(1, 5))))
    assert [(e.type, e.text) for e in events] == [
        ("interim", "1"),
        ("interim", "1 2"),
        ("final", "1 2"),
        ("interim", "3"),
        ("interim", "3 4"),
        ("final", "3 4"),
    ]
    assert events[-1].start == pytest.approx(0.2) and events[-1].end == pytest.approx(0.4)


async def test_stream_failover_replays_audio_since_last_final() -> None:
    # a finalises every 3 chunks and drops the socket after taking 7: chunks 7 (pulled, not
    # transcribed) and 8 must not be lost, and 1-6 must not be transcribed twice.
    a = FakeProvider(name="a", echo=True, final_every=3, fail_stream_after=7)
    b = FakeProvider(name="b", echo=True, final_every=3)
    events = await collect(Chain([a, b]).stream(frames(range(1, 13), pace=0.001)))
    finals = [e for e in events if e.is_final]
    assert " ".join(e.text for e in finals) == " ".join(str(n) for n in range(1, 13))
    assert [e.provider for e in finals] == ["a", "a", "b", "b"]
    assert [round(b.duration * 10) for b in b.streams[0][:1]] == [1]
    assert finals[2].start == pytest.approx(0.6)  # b's times are on the stream's clock


async def test_stream_failover_to_a_batch_engine_transcribes_the_rest() -> None:
    a = FakeProvider(name="a", echo=True, final_every=2, fail_stream_after=5)
    batch = FakeProvider(name="batch", echo=True, capabilities=Capabilities(streaming=False))
    events = await collect(Chain([a, batch]).stream(frames(range(1, 11))))
    finals = [e for e in events if e.is_final]
    assert " ".join(e.text for e in finals) == " ".join(str(n) for n in range(1, 11))
    assert finals[-1].provider == "batch" and finals[-1].start == pytest.approx(0.4)


class ReadsInATask(Provider):
    """Reads its input in a background task, as socket engines do, and fails while a read of the
    (slow) source is still pending: it cancels that read as it goes."""

    name = "reader"
    capabilities = Capabilities(streaming=True)

    async def _transcribe(self, audio, *, language, prompt, word_timestamps):  # type: ignore[no-untyped-def]
        raise AssertionError("not used")

    async def _stream(self, audio, *, language):  # type: ignore[no-untyped-def]
        three_read = asyncio.Event()

        async def read() -> None:
            count = 0
            async for _chunk in audio:
                count += 1
                if count == 3:
                    three_read.set()

        reader = asyncio.create_task(read())
        await three_read.wait()
        reader.cancel()  # mid-read: the source is sleeping before its fourth chunk
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        raise ProviderError("socket dropped", retryable=True)
        yield  # an async generator


async def test_an_engine_cancelling_its_read_does_not_cancel_the_callers_source() -> None:
    batch = FakeProvider(name="batch", echo=True, capabilities=Capabilities(streaming=False))
    events = await collect(Chain([ReadsInATask(), batch]).stream(frames(range(1, 9), pace=0.02)))
    assert [e.text for e in events if e.is_final] == [" ".join(str(n) for n in range(1, 9))]


async def test_stream_event_without_end_time_keeps_everything_for_replay() -> None:
    class NoTimes(FakeProvider):
        def _event(self, kind, pieces, start, end):  # type: ignore[no-untyped-def]
            event = super()._event(kind, pieces, start, end)
            return StreamEvent(event.type, event.text, provider=self.name)

    a = NoTimes(name="a", echo=True, final_every=2, fail_stream_after=3)
    b = FakeProvider(name="b", echo=True, final_every=100)
    events = await collect(Chain([a, b]).stream(frames(range(1, 5))))
    # Duplicates rather than loss: b hears everything again.
    assert [e.text for e in events if e.is_final] == ["1 2", "1 2 3 4"]


async def test_stream_all_engines_fail_raises_all_providers_failed() -> None:
    a = FakeProvider(name="a", fail_stream_after=1)
    b = FakeProvider(name="b", fail_stream_after=0)
    with pytest.raises(AllProvidersFailed) as info:
        await collect(Chain([a, b], retry=FAST).stream(frames(range(1, 5))))
    assert [name for name, _ in info.value.errors] == ["a", "b"]
    # a fell over at once (b could answer); b, the last engine, was retried.
    assert [x.provider for x in info.value.attempts] == ["a", "b", "b", "b"]


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    import email.utils

    from stt_core import parse_retry_after

    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert parse_retry_after(in_ten) == pytest.approx(10, abs=1.5)
    assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0
