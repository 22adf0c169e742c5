"""The chain's rules, as tables: stt_core._chain.policy decides without I/O, so none of these tests
has an event loop, a socket or a sleep. (The drivers that act on them: tests/core/chain/test_chain.py.)"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from stt_core import (
    BreakerPolicy,
    ConfigError,
    InvalidAudioError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RetryPolicy,
)
from stt_core._chain.breaker import CircuitBreaker, Gate
from stt_core._chain.policy import (
    FallOver,
    GiveUp,
    Hold,
    Percentile,
    Plan,
    Retry,
    Skip,
    admit,
    after_failure,
    breaker_effect,
    hedge_delay,
    hedge_setting,
    may_retry_into,
    never_takes,
    outcome,
)

RETRY = RetryPolicy(attempts=3, max_retry_after=20)
PATIENT = RetryPolicy(attempts=3, retry_before_fallover=True)
CALL, SKIP, PROBE = Gate("call"), Gate("skip", "circuit breaker open"), Gate("probe", closed=False)
HELD_3 = Gate("skip", "rate limited", held_for=3.0)
HELD_30 = Gate("skip", "rate limited", held_for=30.0)
OPEN_AND_HELD = Gate("skip", "circuit breaker open", held_for=3.0, closed=False)


@pytest.mark.parametrize(("refuses", "gate", "later", "may_hold", "retry", "timeout", "expected"), [
    # the request itself: an engine that cannot take it is skipped, whatever its breaker says
    ("does not give word timestamps", CALL, True, True, RETRY, 60.0, Skip("does not give word timestamps")),
    ("no language 'fr'", PROBE, False, True, RETRY, 60.0, Skip("no language 'fr'")),
    # the breaker
    (None, SKIP, True, True, RETRY, 60.0, Skip("circuit breaker open")),
    (None, SKIP, False, True, RETRY, 60.0, Skip("circuit breaker open")),
    (None, PROBE, True, True, RETRY, 60.0, Plan(1, 2.0, probe=True)),  # one short attempt
    (None, PROBE, False, True, RETRY, 1.0, Plan(1, 1.0, probe=True)),  # never longer than a call
    (None, PROBE, False, True, RETRY, None, Plan(1, 2.0, probe=True)),
    # Retry-After holds: waited out only at the last engine that can answer, once, within the cap
    (None, HELD_3, False, True, RETRY, 60.0, Hold(3.0)),
    (None, HELD_3, False, False, RETRY, 60.0, Skip("rate limited")),
    (None, HELD_3, True, True, RETRY, 60.0, Skip("rate limited")),
    (None, HELD_30, False, True, RETRY, 60.0, Skip("rate limited")),
    (None, OPEN_AND_HELD, False, True, RETRY, 60.0, Skip("circuit breaker open")),
    # retries: only at the last engine that can answer, unless retry_before_fallover
    (None, CALL, True, True, RETRY, 60.0, Plan(1, 60.0)),
    (None, CALL, False, True, RETRY, 60.0, Plan(3, 60.0)),
    (None, CALL, True, True, PATIENT, 60.0, Plan(3, 60.0)),
    (None, CALL, False, True, PATIENT, None, Plan(3, None)),
])
def test_admit(refuses, gate, later, may_hold, retry, timeout, expected) -> None:  # type: ignore[no-untyped-def]
    got = admit(refuses=refuses, gate=gate, later=later, may_hold=may_hold, retry=retry,
                attempt_timeout=timeout, probe_timeout=2.0)
    assert got == expected


HALF_OPEN = Gate("skip", "circuit breaker half-open: another request is probing it", closed=False)


@pytest.mark.parametrize(("purpose", "refuses", "gate", "later", "timeout", "expected"), [
    # a speculation (real time's preflight): each engine once, never a probe, never a wait
    ("speculation", None, CALL, False, 10.0, Plan(1, 10.0)),
    ("speculation", None, CALL, True, 10.0, Plan(1, 10.0)),
    ("speculation", None, PROBE, False, 10.0, Skip("a speculative recognition never probes an engine")),
    ("speculation", None, SKIP, False, 10.0, Skip("circuit breaker open")),
    ("speculation", None, HELD_3, False, 10.0, Skip("rate limited")),  # no Hold: nobody waits on it
    ("speculation", "no language 'fr'", CALL, False, 10.0, Skip("no language 'fr'")),
    # an utterance's final: a request, but its last hope is called even while its breaker skips it
    ("utterance", None, SKIP, False, 10.0, Plan(1, 10.0)),
    ("utterance", None, HALF_OPEN, False, 10.0, Plan(1, 10.0)),
    ("utterance", None, SKIP, True, 10.0, Skip("circuit breaker open")),  # a later engine can take it
    ("utterance", None, HELD_30, False, 10.0, Skip("rate limited")),  # a wait the engine asked for
    ("utterance", None, HELD_3, False, 10.0, Hold(3.0)),
    ("utterance", None, CALL, False, 10.0, Plan(3, 10.0)),  # the chain's whole policy
    ("utterance", None, PROBE, False, 10.0, Plan(1, 2.0, probe=True)),
    ("utterance", "no language 'fr'", SKIP, False, 10.0, Skip("no language 'fr'")),
])
def test_admit_by_purpose(purpose, refuses, gate, later, timeout, expected) -> None:  # type: ignore[no-untyped-def]
    got = admit(refuses=refuses, gate=gate, later=later, may_hold=True, retry=RETRY, attempt_timeout=timeout,
                probe_timeout=2.0, purpose=purpose)
    assert got == expected


@pytest.mark.parametrize(("purpose", "error", "effect"), [
    ("speculation", ProviderTimeout("slow"), "none"),  # a speculation that failed opens no breaker
    ("speculation", ProviderError("crashed", retryable=True), "none"),
    ("speculation", ProviderError("busy", retryable=True, status_code=429, retry_after=5.0), "hold"),
    ("utterance", ProviderTimeout("slow"), "count"),
    ("request", ProviderTimeout("slow"), "count"),
])
def test_what_a_failed_call_teaches_the_breaker_by_purpose(purpose, error, effect) -> None:  # type: ignore[no-untyped-def]
    assert breaker_effect(error, purpose) == effect


def busy(retry_after: float | None = None, *, retryable: bool = True, status: int = 503) -> ProviderError:
    return ProviderError("busy", retryable=retryable, status_code=status, retry_after=retry_after)


@pytest.mark.parametrize(("error", "attempt", "attempts", "may_retry", "expected"), [
    (busy(), 1, 3, True, Retry(None)),  # back off exponentially
    (busy(), 2, 3, True, Retry(None)),
    (busy(), 3, 3, True, FallOver()),  # attempts spent
    (busy(), 1, 1, True, FallOver()),  # this engine is not retried (a later one can answer)
    (busy(), 1, 3, False, FallOver()),  # another request opened its breaker meanwhile
    (busy(2.0, status=429), 1, 3, True, Retry(2.0)),  # Retry-After is the wait
    (busy(-1.0, status=429), 1, 3, True, Retry(0.0)),
    (busy(20.0, status=429), 1, 3, True, Retry(20.0)),
    (busy(20.5, status=429), 1, 3, True, FallOver()),  # longer than max_retry_after: move on
    (busy(retryable=False, status=400), 1, 3, True, FallOver()),
    (ProviderTimeout("slow", provider="a"), 1, 3, True, Retry(None)),
    (ProviderUnavailable("no key"), 1, 3, True, FallOver()),
    (ConfigError("bad setting"), 1, 3, True, FallOver()),
    (InvalidAudioError("empty"), 1, 3, True, GiveUp()),  # the caller's, never another engine's
    (asyncio.CancelledError(), 1, 3, True, GiveUp()),
    (GeneratorExit(), 1, 3, True, GiveUp()),
    (None, 1, 3, True, GiveUp()),
])
def test_after_failure(error, attempt, attempts, may_retry, expected) -> None:  # type: ignore[no-untyped-def]
    assert after_failure(error, attempt=attempt, call=Plan(attempts, 60.0), retry=RETRY,
                         may_retry=may_retry) == expected


@pytest.mark.parametrize(("closed", "opened_here", "expected"), [
    (True, False, True), (False, True, True), (False, False, False), (True, True, True),
])
def test_a_request_never_retries_into_a_breaker_another_request_opened(closed, opened_here, expected) -> None:  # type: ignore[no-untyped-def]
    assert may_retry_into(closed, opened_by_this_request=opened_here) is expected


@pytest.mark.parametrize(("error", "effect", "recorded"), [
    (busy(), "count", "error"),
    (busy(5.0, status=429), "hold", "error"),  # a rate limit with its own wait is no broken engine
    (busy(status=429), "count", "error"),  # a 429 that says nothing of when is
    (busy(0.0, status=429), "count", "error"),
    (busy(5.0, status=503), "count", "error"),
    (ProviderTimeout("slow"), "count", "timeout"),
    (ProviderUnavailable("out of memory"), "none", "unavailable"),
    (ConfigError("no key"), "none", "unavailable"),
    (InvalidAudioError("empty"), "none", "error"),
])
def test_what_a_failed_call_teaches_the_breaker(error, effect, recorded) -> None:  # type: ignore[no-untyped-def]
    assert breaker_effect(error) == effect
    assert outcome(error) == recorded


@pytest.mark.parametrize(("refuses", "unavailable", "cause", "expected"), [
    ("does not support language 'fr'", None, None, "does not support language 'fr'"),
    (None, "provider 'funasr' is not installed", None, "provider 'funasr' is not installed"),
    ("does not support language 'zh'", "provider 'x' is not installed", None,  # how to install it first
     "provider 'x' is not installed"),
    (None, "no API key", busy(), "no API key"),
    (None, None, ProviderUnavailable("groq rejected the API key (HTTP 401)", status_code=401),
     "groq rejected the API key (HTTP 401)"),
    (None, None, ProviderError("refused (HTTP 403)", status_code=403), "refused (HTTP 403)"),
    (None, None, ConfigError("bad model name"), "bad model name"),
    (None, None, None, None),  # nothing known against it
    (None, None, ProviderUnavailable("circuit breaker open"), None),  # it clears
    (None, None, busy(5.0, status=429), None),  # so does a rate limit
    (None, None, busy(status=503), None),
    (None, None, ProviderTimeout("slow"), None),
])
def test_what_will_not_clear_by_waiting(refuses, unavailable, cause, expected) -> None:  # type: ignore[no-untyped-def]
    assert never_takes(refuses=refuses, unavailable=unavailable, cause=cause) == expected


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(breaker: CircuitBreaker, clock: Clock, steps: str, *, background: bool) -> list[str]:
    """Drive a breaker through steps (f: a failed call, s: a success, p: a passing health check,
    t: five seconds pass, h: a 3 s hold, q: a request starts probing, r: that probe is released),
    and return what a request would do after each."""
    seen = []
    for step in steps:
        if step == "f":
            breaker.record_failure()
        elif step == "s":
            breaker.record_success()
        elif step == "p":
            breaker.probe_passed()
        elif step == "t":
            clock.now += 5.0
        elif step == "h":
            breaker.hold(3.0)
        elif step == "q":
            breaker.start_probe()
        elif step == "r":
            breaker.release()
        seen.append(f"{breaker.state}:{breaker.gate(probes_in_background=background).action}")
    return seen


@pytest.mark.parametrize(("failures", "background", "steps", "expected"), [
    (1, False, "f", ["open:skip"]),
    (2, False, "fsf", ["closed:call", "closed:call", "closed:call"]),  # consecutive failures only
    (2, False, "ff", ["closed:call", "open:skip"]),
    (1, False, "ft", ["open:skip", "open:probe"]),  # cooled down: one request probes
    (1, False, "ftq", ["open:skip", "open:probe", "half_open:skip"]),  # the others skip meanwhile
    (1, False, "ftqr", ["open:skip", "open:probe", "half_open:skip", "open:probe"]),  # released
    (1, False, "ftqf", ["open:skip", "open:probe", "half_open:skip", "open:skip"]),  # the probe failed
    (1, False, "ftqs", ["open:skip", "open:probe", "half_open:skip", "closed:call"]),
    (1, True, "ft", ["open:skip", "open:skip"]),  # with health(): never a user's request
    (1, True, "fp", ["open:skip", "closed:call"]),
    (3, True, "fffpf", ["closed:call", "closed:call", "open:skip", "closed:call", "open:skip"]),  # probation
    (1, False, "h", ["closed:skip"]),
    (1, False, "ht", ["closed:skip", "closed:call"]),  # a hold ends without a probe
])
def test_breaker_states(failures: int, background: bool, steps: str, expected: list[str]) -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(failures=failures, cooldown=5.0), clock)
    assert run(breaker, clock, steps, background=background) == expected


def test_a_relapsing_engine_is_probed_at_doubling_intervals_until_a_real_call_succeeds() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(probe_interval=1.0), clock)
    delays = []
    for _ in range(8):
        breaker.record_failure()
        delays.append(breaker.probe_delay())
        breaker.probe_passed()
    assert delays == [1, 2, 4, 8, 16, 32, 64, 64]
    breaker.record_success()
    assert breaker.probe_delay() == 1.0 and breaker.relapses == 0


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), (0.5, 0.5), ("0.25", 0.25), ("p95", 95), (" P50 ", 50), (0, 0.0),
])
def test_hedge_setting(value, expected) -> None:  # type: ignore[no-untyped-def]
    assert hedge_setting(value) == expected


@pytest.mark.parametrize(("value", "named"), [
    ("p0", "p1 to p99"), ("p100", "p1 to p99"), ("px", "p1 to p99"), ("soon", "give seconds"),
    (-1, "between 0 and 3600"), (1e9, "between 0 and 3600"), (float("nan"), "between 0 and 3600"),
])
def test_a_bad_hedge_setting_names_the_problem(value: object, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        hedge_setting(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("hedge_after", "latencies", "expected"), [
    (None, [0.1] * 20, None),
    (0.3, [], 0.3),
    (Percentile(50), [0.1] * 9, None),  # too few answers yet for a percentile
    (Percentile(50), [i / 100 for i in range(1, 102)], 0.51),
    (Percentile(95), [i / 100 for i in range(1, 102)], 0.96),
])
def test_hedge_delay(hedge_after, latencies, expected) -> None:  # type: ignore[no-untyped-def]
    got = hedge_delay(hedge_after, latencies)
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(("model", "values", "named"), [
    (RetryPolicy, {"attempts": -1}, "attempts"),
    (RetryPolicy, {"attempts": 0}, "attempts"),
    (RetryPolicy, {"max_retry_after": float("inf")}, "max_retry_after"),
    (RetryPolicy, {"atempts": 3}, "atempts"),
    (BreakerPolicy, {"failures": 0}, "failures"),
    (BreakerPolicy, {"cooldown": float("inf")}, "cooldown"),
    (BreakerPolicy, {"probe_interval": 0.001}, "probe_interval"),
])
def test_policies_are_validated_where_they_are_made_in_code_as_in_config(model, values, named) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError, match=named):
        model(**values)
