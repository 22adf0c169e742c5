"""The chain's failover rules, each over real sockets: the real groq SDK against the fake Groq API.

Fall over at once when another engine can answer; retry only the last; a 429's Retry-After holds the
engine for every request; hedging cancels the slower call cleanly; a down engine with a health check
is probed in the background and used again within seconds, never with a user's request; a low
answer is re-asked of the next engine, and of a second cloud engine only while max_reasks allows.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from fakes.groq_api import KEY, FakeGroq
from stt_core import Attempt, BreakerPolicy, Chain, RetryPolicy
from stt_core.testing import FakeProvider
from stt_core_groq._provider import GroqProvider

FOX = Path(__file__).parents[2] / "fixtures" / "audio" / "fox.wav"


@pytest.fixture
async def groq(serve):  # type: ignore[no-untyped-def]
    fake = FakeGroq()
    fake.url = await serve(fake.app())
    return fake


def groq_engine(fake: FakeGroq) -> GroqProvider:
    return GroqProvider(api_key=KEY, base_url=fake.url, timeout=10.0)


def outcomes(attempts: tuple[Attempt, ...]) -> list[tuple[str, str]]:
    return [(a.provider, a.outcome) for a in attempts]


async def test_an_immediate_500_falls_over_at_once_and_counts_toward_the_breaker(groq: FakeGroq) -> None:
    groq.faults.extend(["500"] * 3)
    async with Chain([groq_engine(groq), FakeProvider(name="local")]) as chain:
        result = await chain.transcribe(FOX)
        assert result.provider == "local"
        assert outcomes(result.attempts) == [("groq", "error"), ("local", "ok")]  # no retry, no backoff
        assert groq.attempts == 1
        assert chain.breakers[0].state == "open"  # one failed call: the default threshold
        again = await chain.transcribe(FOX)  # the next request does not pay for the failing engine
        assert outcomes(again.attempts) == [("groq", "skipped"), ("local", "ok")] and groq.attempts == 1


async def test_a_429_holds_the_engine_for_every_request_then_it_is_used_again_without_a_probe(
    groq: FakeGroq,
) -> None:
    groq.faults.append("429")
    groq.retry_after = "1"
    async with Chain([groq_engine(groq), FakeProvider(name="local")]) as chain:
        first = await chain.transcribe(FOX)
        assert first.provider == "local" and groq.attempts == 1
        others = await asyncio.gather(*(chain.transcribe(FOX) for _ in range(5)))
        assert {r.provider for r in others} == {"local"} and groq.attempts == 1  # nobody called it
        assert "Retry-After" in (others[0].attempts[0].error or "")
        await asyncio.sleep(1.1)
        back = await chain.transcribe(FOX)
        assert back.provider == "groq" and groq.attempts == 2
        assert groq.health_checks == 0  # used again as soon as the wait was over, without a probe


async def test_the_last_engine_that_can_answer_waits_out_retry_after_and_is_retried(groq: FakeGroq) -> None:
    groq.faults.append("429")
    groq.retry_after = "1"
    async with Chain([groq_engine(groq)]) as chain:
        started = time.monotonic()
        result = await chain.transcribe(FOX)
        assert time.monotonic() - started >= 1.0
        assert result.provider == "groq" and outcomes(result.attempts) == [("groq", "error"), ("groq", "ok")]


async def test_a_patient_chain_retries_its_first_engine_before_falling_over(groq: FakeGroq) -> None:
    groq.faults.extend(["500", "500"])
    patient = RetryPolicy(initial_backoff=0.01, retry_before_fallover=True)
    async with Chain([groq_engine(groq), FakeProvider(name="local")], retry=patient) as chain:
        result = await chain.transcribe(FOX)
    assert result.provider == "groq" and groq.attempts == 3


async def test_hedging_starts_the_next_engine_and_cancels_the_slow_call_cleanly(serve_in_thread) -> None:  # type: ignore[no-untyped-def]
    fake = FakeGroq(slow_seconds=30)
    fake.url = serve_in_thread(fake.app())  # its own loop: this loop's tasks are the client's alone
    fake.faults.append("slow")
    before = asyncio.all_tasks()
    async with Chain([groq_engine(fake), FakeProvider(name="local", delay=0.05)], hedge_after=0.3) as chain:
        started = time.monotonic()
        result = await chain.transcribe(FOX)
        assert time.monotonic() - started < 5  # not the 30 s the slow engine would take
        assert result.provider == "local"
        assert sorted(outcomes(result.attempts)) == [("groq", "cancelled"), ("local", "ok")]
        for _ in range(50):  # the cancelled request's socket is closed, not left to time out
            if fake.slow_transports and fake.slow_transports[0].is_closing():
                break
            await asyncio.sleep(0.02)
        assert fake.slow_transports and fake.slow_transports[0].is_closing()
    await asyncio.sleep(0.05)
    assert asyncio.all_tasks() - before == set()  # no task left behind


async def test_hedging_off_by_default_waits_for_the_first_engine(groq: FakeGroq) -> None:
    groq.faults.append("slow")
    groq.slow_seconds = 0.5
    async with Chain([groq_engine(groq), FakeProvider(name="local")]) as chain:
        result = await chain.transcribe(FOX)
    assert result.provider == "groq" and outcomes(result.attempts) == [("groq", "ok")]


async def test_a_down_engine_is_probed_in_the_background_and_back_within_seconds(groq: FakeGroq) -> None:
    groq.down = True
    async with Chain([groq_engine(groq), FakeProvider(name="local")],
                     breaker=BreakerPolicy(failures=3, cooldown=600)) as chain:
        for _ in range(3):
            assert (await chain.transcribe(FOX)).provider == "local"
        assert chain.breakers[0].state == "open" and groq.attempts == 3
        for _ in range(10):  # while it is down: users are served, none of them as a probe
            assert (await chain.transcribe(FOX)).provider == "local"
            await asyncio.sleep(0.15)
        assert groq.attempts == 3 and groq.health_checks >= 1
        groq.down = False
        recovered = time.monotonic()
        while (await chain.transcribe(FOX)).provider != "groq":
            assert time.monotonic() - recovered < 3, "not back within the probe interval"
            await asyncio.sleep(0.05)
        assert groq.attempts == 4  # the only transcription it was sent after the outage is a real one
    assert all(link.prober.done() for link in chain.links if link.prober)  # aclose() stopped the prober


async def test_an_engine_whose_health_passes_while_it_fails_is_probed_less_and_less(groq: FakeGroq) -> None:
    groq.faults.extend(["500"] * 100)  # a partial outage: transcriptions fail, the model list answers
    async with Chain([groq_engine(groq), FakeProvider(name="local")],
                     breaker=BreakerPolicy(probe_interval=0.2)) as chain:
        for _ in range(30):
            assert (await chain.transcribe(FOX)).provider == "local"
            await asyncio.sleep(0.02)
        assert chain.breakers[0].relapses >= 1
    # The first failure, then one call after each passing probe, the probes doubling their wait
    # (0.2 s, 0.4 s, 0.8 s): not every other request, as a health check taken at its word would give.
    assert groq.attempts <= 4
    assert groq.health_checks >= 2


# -- a low answer (quality-aware routing, #35) ---------------------------------------------------


async def test_a_low_groq_answer_is_reasked_of_the_next_engine_and_a_second_cloud_one_is_not(
    groq: FakeGroq,
) -> None:
    groq.avg_logprob = -1.5
    after = FakeProvider(name="whisper", text="the local answer", confidence=0.9)
    chain = Chain([groq_engine(groq), after])
    result = await chain.transcribe(FOX)
    assert (result.provider, result.text) == ("whisper", "the local answer")
    assert [(a.provider, a.outcome) for a in result.attempts] == [("groq", "low_confidence"),
                                                                   ("whisper", "ok")]
    assert len(groq.requests) == 1  # asked once
    local_first = Chain([FakeProvider(name="whisper", text="local", confidence=0.1),
                         groq_engine(groq), GroqProvider(api_key=KEY, base_url=groq.url).named("groq2")])
    result = await local_first.transcribe(FOX)
    assert [a.outcome for a in result.attempts] == ["low_confidence", "low_confidence", "skipped"]
    assert result.provider == "groq" and len(groq.requests) == 2  # max_reasks = 1: one paid re-ask
