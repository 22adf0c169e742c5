"""Load: a few hundred concurrent requests through a chain whose first engine (the real groq SDK
against the fake Groq API) fails half of the time: HTTP 500s, and 200s that are not transcripts
(an HTML error page, ``{}``). Every request gets the right transcript (none lost, none wrong), and
afterwards no task, thread, socket or file handle is left and memory is back where it was."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import tracemalloc
from collections import deque

import pytest

from fakes.groq_api import KEY, FakeGroq
from stt_core import Audio, BreakerPolicy, Chain, RetryPolicy
from stt_core.testing import FakeProvider, level_chunks
from stt_core_groq._provider import GroqProvider

REQUESTS = 300
FAULTS = ["500", "ok", "html", "ok", "empty_object", "ok"]  # half fail, two thirds of those as "answers"


def fault_mix() -> deque[str]:
    return deque(FAULTS[i % len(FAULTS)] for i in range(REQUESTS * 3))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads() -> int:
    """Threads other than asyncio's default executor pool (bounded and reused by design: the
    SDKs resolve host names there)."""
    return sum(not t.name.startswith("asyncio_") for t in threading.enumerate())


@pytest.mark.slow
async def test_three_hundred_concurrent_requests_lose_nothing_and_leak_nothing(serve) -> None:  # type: ignore[no-untyped-def]
    fake = FakeGroq(text="from groq")
    fake.faults = fault_mix()
    fake.url = await serve(fake.app())
    audio = [Audio.concat(level_chunks([n % 50 + 1] * 5)) for n in range(REQUESTS)]

    def make_chain(fallback: FakeProvider) -> Chain:
        return Chain(
            # The fake shares this loop with 300 clients: on a busy machine it can take seconds to
            # answer. A timeout would fall over correctly, but this test is about 500s.
            [GroqProvider(api_key=KEY, base_url=fake.url, timeout=60.0), fallback],
            retry=RetryPolicy(attempts=1),  # a failure falls over at once: the fallback must catch it
            # Kept closed, so every request tries groq first: 500s come back faster than answers,
            # and in a burst of them an ordinary breaker would (rightly) open.
            breaker=BreakerPolicy(failures=REQUESTS * 3),
        )

    # First use imports the SDK and warms its caches: a one-off cost, not a leak.
    async with make_chain(FakeProvider(name="fallback")) as warm:
        await asyncio.gather(*(warm.transcribe(a) for a in audio[:10]))
    fake.faults = fault_mix()
    fake.attempts, fake.requests = 0, []
    gc.collect()
    tracemalloc.start()
    before = (asyncio.all_tasks(), threads(), open_fds(), tracemalloc.get_traced_memory()[0])
    fallback = FakeProvider(name="fallback", text="from the fallback")
    chain = make_chain(fallback)
    async with chain:
        results = await asyncio.gather(*(chain.transcribe(a) for a in audio), return_exceptions=True)

    lost = [r for r in results if isinstance(r, BaseException)]
    assert lost == []
    expected = {"groq": "from groq", "fallback": "from the fallback"}
    wrong = [r for r in results if r.text != expected.get(r.provider)]  # type: ignore[union-attr]
    assert wrong == [], f"{len(wrong)} wrong answers, e.g. {wrong[0].text!r}"  # type: ignore[union-attr]
    by = {name: sum(r.provider == name for r in results) for name in expected}  # type: ignore[union-attr]
    assert by["groq"] + by["fallback"] == REQUESTS
    assert by["fallback"] >= REQUESTS // 3  # about half of groq's answers were faults
    assert all(r.attempts[0].provider == "groq" for r in results)  # type: ignore[union-attr]
    assert fake.attempts <= REQUESTS  # no retries at all: attempts=1

    # Nothing left behind once the chain is closed.
    for _ in range(50):  # the server side closes its half of each connection a moment later
        await asyncio.sleep(0.02)
        if open_fds() <= before[2]:
            break
    # The test doubles' own records of what they were sent are not the library's memory.
    fallback.calls.clear()
    fake.requests.clear()
    del results, audio, chain
    gc.collect()
    after = (asyncio.all_tasks(), threads(), open_fds(), tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    assert after[0] - before[0] == set(), "tasks left running"
    assert after[1] <= before[1], "threads left running"
    assert after[2] <= before[2], "file handles or sockets left open"
    assert after[3] - before[3] < 2 * 2**20, f"memory grew by {(after[3] - before[3]) / 2**20:.1f} MB"
