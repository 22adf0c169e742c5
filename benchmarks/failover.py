"""Failover: the time a failing first engine adds on top of the second engine's own time, and how
often a breaker lets a failing engine be called."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from common import AUDIO, Compared, bars, interleaved, publish_alone, run

import fakes
from fakes.groq_api import KEY, FakeGroq
from stt_core import Audio, BreakerPolicy, Chain, ProviderError, ProviderUnavailable, RetryPolicy, Transcript
from stt_core.testing import FakeProvider
from stt_core_groq._provider import GroqProvider

TITLE = "failover"
PLOT = "benchmarks-failover-added.png"


class Hangs(FakeProvider):
    async def _transcribe(self, audio: Audio, **kw: Any) -> Transcript:
        await asyncio.sleep(3600)
        raise AssertionError


class Unavailable(FakeProvider):
    async def _transcribe(self, audio: Audio, **kw: Any) -> Transcript:
        raise ProviderUnavailable("no model", provider=self.name)


def measure(repeats: int) -> tuple[list[Compared], dict[str, int]]:
    """Time added by a failing first engine over the second engine alone; breaker call counts."""
    fake = FakeGroq()
    runner, fake.url = run(fakes.start(fake.app()))
    fake.faults.extend(["500"] * 10_000)

    clip = Audio.from_file(AUDIO / "fox.wav")
    second = FakeProvider(name="second", text="answered")
    once = RetryPolicy(attempts=1)
    no_breaker = BreakerPolicy(failures=10**9)  # every request meets the failure itself
    http_500 = "first gets HTTP 500 (real groq SDK, loopback)"
    chains = {
        "second engine alone": Chain([second], retry=once),
        "first unavailable (no model)": Chain(
            [Unavailable(name="first"), second], retry=once, breaker=no_breaker),
        http_500: Chain(
            [GroqProvider(api_key=KEY, base_url=fake.url), second], retry=once, breaker=no_breaker),
        "first times out (attempt_timeout 0.1 s)": Chain(
            [Hangs(name="first"), second], retry=once, breaker=no_breaker, attempt_timeout=0.1),
    }
    failing = GroqProvider(api_key=KEY, base_url=fake.url)

    def failing_call_alone() -> None:
        with contextlib.suppress(ProviderError):
            run(failing.transcribe(clip))

    sides = {name: (lambda c=c: run(c.transcribe(clip))) for name, c in chains.items()}
    t = interleaved({**sides, "failing call alone": failing_call_alone}, repeats)
    base, alone = t.pop("second engine alone"), t.pop("failing call alone")
    added = [Compared.of(name, base, seconds) for name, seconds in t.items()]
    # How much of the 500 case is the chain's, not the failing HTTP call's own (FLAC, SDK, socket).
    added.append(Compared.of("HTTP 500: the chain's own part (less the failing call alone)",
                             [b + a for b, a in zip(base, alone, strict=True)], t[http_500]))

    groq = GroqProvider(api_key=KEY, base_url=fake.url)
    breaker_chain = Chain([groq, second], retry=once, breaker=BreakerPolicy(failures=3, cooldown=600))
    before = fake.attempts
    for _ in range(20):
        run(breaker_chain.transcribe(clip))
    counts = {"requests": 20, "calls to the failing engine": fake.attempts - before}
    run(runner.cleanup())
    return added, counts


def markdown(added: list[Compared], counts: dict[str, int]) -> list[str]:
    return [
        "## Failover: time added on top of the second engine (target: under 5 ms when the first fails fast)",
        "",
        "| first engine | rounds | baseline ms | with the failing first ms | added ms |",
        "|---|---:|---:|---:|---:|",
        *(f"| {c.name} | {c.rounds} | {c.base * 1000:.2f} | {c.side * 1000:.2f} | {c.added * 1000:.2f} |"
          for c in added),
        "",
        "Baseline: the second engine alone (a fake that answers at once, so the figures are the failover "
        "itself); in the last row, the second engine alone plus the failing groq call made on its own, "
        "so what is left is the chain's part of a failover that involves a real HTTP error.",
        "",
        f"Breaker open: {counts['requests']} requests, {counts['calls to the failing engine']} calls to the "
        "failing engine (it opens after 3 failed calls here; the engine's health check passes while its "
        "transcriptions fail, so each passing probe lets one call through, at doubling intervals).",
        "",
        f"Plot: [{PLOT}]({PLOT}).",
        "",
    ]


def section(repeats: int) -> list[str]:
    added, counts = measure(repeats)
    bars(PLOT, added, [max(c.added * 1000, 0.0) for c in added], title="Failover: ms added over the baseline",
         target=5, target_label="5 ms", color="tab:orange", xscale="symlog")
    return markdown(added, counts)


if __name__ == "__main__":
    publish_alone(__file__, section(15))
