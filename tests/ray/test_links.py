"""The ingress's side of stt-core-ray without a cluster: the ``[ray]`` table's rules, and what the
chain sees of an engine's deployment (``RayEngine``) when a replica dies, the engine fails in its
replica, or no replica is healthy. The deployment's handle is played by ``Handle``, the far end;
the links, the chain and the settings are the real ones. tests/ray/test_ray.py runs them on a cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from ray.exceptions import ActorDiedError, RayTaskError

from stt_core import Audio, Chain, ConfigError, InvalidAudioError, ProviderError, Transcript
from stt_core.testing import FakeProvider
from stt_core_ray import RaySettings
from stt_core_ray._remote import RayEngine, Replicas
from stt_core_ray._replica import EngineCall
from stt_core_ray._settings import as_options

SPEECH = Audio.silence(1.0)


class Handle:
    """A deployment handle whose calls answer from a script: a transcript, or an exception."""

    def __init__(self, script: Sequence[Transcript | BaseException]) -> None:
        self.script, self.calls = list(script), list[EngineCall]()
        self.transcribe = self  # handle.transcribe.remote(call)

    def remote(self, call: EngineCall) -> Any:
        self.calls.append(call)
        outcome = self.script.pop(0)

        async def answer() -> Transcript:
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        return _Response(answer())


class _Response:
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def __await__(self) -> Any:
        return self.answer.__await__()

    def cancel(self) -> None:
        pass


def engine(script: Sequence[Transcript | BaseException], *, reroutes: int = 2) -> tuple[RayEngine, Handle]:
    handle = Handle(script)
    local = FakeProvider(name="whisper")
    return RayEngine(local, handle, app="stt-core", reroutes=reroutes), handle


def replica_error(error: BaseException) -> RayTaskError:
    """What awaiting a handle raises when the replica's code raised ``error``."""
    return RayTaskError("transcribe", "Traceback: ...", error).as_instanceof_cause()


async def test_a_replica_that_dies_under_a_request_sends_it_to_another() -> None:
    ray_engine, handle = engine([ActorDiedError(), ActorDiedError(), Transcript("hello")])
    result = await ray_engine.transcribe(SPEECH, language="en")
    assert (result.text, result.provider, len(handle.calls)) == ("hello", "whisper", 3)
    call = handle.calls[0]  # converted here: 16 kHz mono int16, what the local engines take
    assert (call.audio.sample_rate, call.audio.channels, call.language) == (16_000, 1, "en")


async def test_past_its_reroutes_the_chain_sees_a_retryable_failure_and_falls_over() -> None:
    ray_engine, handle = engine([ActorDiedError()] * 2, reroutes=1)
    assert handle.script  # (both deaths are used below)
    async with Chain([ray_engine, FakeProvider(name="groq", script=["from the cloud"])]) as chain:
        result = await chain.transcribe(SPEECH)
    assert (result.text, result.provider) == ("from the cloud", "groq")
    first = result.attempts[0]
    assert (first.provider, first.outcome) == ("whisper", "error")
    assert "went away under this request 2 times (ActorDiedError)" in (first.error or "")
    assert handle.script == []


async def test_the_engines_own_error_comes_through_as_it_was_raised() -> None:
    bad_audio = InvalidAudioError("audio is garbled")
    ray_engine, _ = engine([replica_error(bad_audio)])
    with pytest.raises(InvalidAudioError, match="garbled"):
        await ray_engine.transcribe(SPEECH)
    ray_engine, _ = engine([replica_error(ProviderError("no memory", provider="whisper", retryable=False))])
    with pytest.raises(ProviderError) as caught:
        await ray_engine.transcribe(SPEECH)
    assert caught.value.retryable is False


async def test_another_failure_in_the_replica_is_a_retryable_engine_error() -> None:
    ray_engine, _ = engine([replica_error(RuntimeError("CUDA error"))])
    with pytest.raises(ProviderError, match="failed in its replica") as caught:
        await ray_engine.transcribe(SPEECH)
    assert caught.value.retryable


async def test_no_healthy_replica_is_an_engine_that_cannot_serve_passed_without_a_call() -> None:
    ray_engine, handle = engine([])
    ray_engine.replicas = Replicas({"STARTING": 1}, "UNHEALTHY")
    chain = Chain([ray_engine, FakeProvider(name="groq", script=["from the cloud"])])
    assert chain.ready() == ["groq"]  # what /ready reports
    result = await chain.transcribe(SPEECH)
    assert result.provider == "groq" and handle.calls == []
    assert result.attempts[0].outcome == "unavailable"
    assert "whisper has no healthy replica on Ray Serve (1 starting; deployment unhealthy)" in (
        result.attempts[0].error or "")
    assert chain.breakers[0].state == "closed"  # cannot serve now: no verdict on the engine
    ray_engine.replicas = Replicas({"RUNNING": 1, "STARTING": 1}, "UPDATING")
    assert chain.ready() == ["whisper", "groq"]


@pytest.mark.parametrize(("states", "status", "cold", "unavailable"), [
    ({"RUNNING": 2}, "HEALTHY", False, False),
    ({"RUNNING": 1, "STARTING": 1}, "UNHEALTHY", False, False),  # one still serves
    ({}, "HEALTHY", True, False),  # scaled to zero: the request wakes a replica
    ({}, "DEPLOY_FAILED", True, True),
    ({"STARTING": 2}, "UPDATING", False, True),
    ({}, "HEALTHY", False, True),
])
def test_when_a_deployment_can_take_a_request(
    states: dict[str, int], status: str, cold: bool, unavailable: bool
) -> None:
    assert bool(Replicas(states, status, cold).unavailable("funasr")) is unavailable


async def test_a_request_the_chain_gives_up_on_is_cancelled_in_its_replica() -> None:
    cancelled = asyncio.Event()

    class Slow(_Response):
        def cancel(self) -> None:
            cancelled.set()

    ray_engine, handle = engine([])
    handle.remote = lambda call: Slow(asyncio.sleep(10))  # type: ignore[method-assign]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await ray_engine.transcribe(SPEECH)
    assert cancelled.is_set()


def test_an_engines_own_table_wins_over_ray_and_its_way_of_counting_replaces_rays() -> None:
    settings = RaySettings(replicas=2, num_cpus=0.5, engines={
        "funasr": {"autoscaling": {"max_replicas": 3}, "num_gpus": 1, "threads": 4}})
    assert as_options(settings.engine("whisper"), 1) == {
        "num_replicas": 2, "max_ongoing_requests": 5,
        "ray_actor_options": {"num_cpus": 0.5, "num_gpus": 0.0,
                              "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "1"}}}}
    funasr = as_options(settings.engine("funasr"), 8)
    assert "num_replicas" not in funasr
    assert funasr["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 3,
                                            "target_ongoing_requests": 2.0}
    assert funasr["max_ongoing_requests"] == 16  # twice the batch, so the next one gathers while one runs
    assert funasr["ray_actor_options"]["num_gpus"] == 1
    assert funasr["ray_actor_options"]["runtime_env"] == {"env_vars": {"OMP_NUM_THREADS": "4"}}
    assert as_options(RaySettings(num_cpus=2.5).engine("x"), 1)["ray_actor_options"]["runtime_env"] == {
        "env_vars": {"OMP_NUM_THREADS": "3"}}


def test_max_ongoing_requests_below_the_batch_is_refused_not_warned() -> None:
    settings = RaySettings(max_ongoing_requests=4)
    with pytest.raises(ConfigError, match=r"max_ongoing_requests = 4 is below the engine's batch of 8"):
        as_options(settings.engine("funasr"), 8)
    assert as_options(settings.engine("whisper"), 1)["max_ongoing_requests"] == 4


def test_replicas_and_autoscaling_in_one_table_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="set replicas or an autoscaling table, not both"):
        RaySettings(replicas=2, autoscaling={"max_replicas": 4})
    with pytest.raises(ValueError, match=r"min_replicas \(5\) is above max_replicas \(4\)"):
        RaySettings(autoscaling={"min_replicas": 5, "max_replicas": 4})
