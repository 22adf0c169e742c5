"""How an adapter hears a chain (stt_core.Hearing): the one rule LiveKit, Pipecat and serve share."""

from __future__ import annotations

import asyncio

import pytest

from speech import conversation, live
from stt_core import Audio, Capabilities, Chain, Hearing, ProviderError, RetryPolicy, queued_audio
from stt_core._registry import UnusableEngine
from stt_core.testing import FakeProvider

LOCAL = Capabilities(offline=True)
CLOUD = Capabilities()
STREAMING = Capabilities(streaming=True)


@pytest.mark.parametrize(("first", "realtime", "mode"), [
    (STREAMING, None, "stream"),  # Deepgram: its own stream, with the chain's failover and replay
    (STREAMING, False, "stream"),
    (LOCAL, None, "realtime"),  # FunASR, whisper: real time (a Silero model is installed here)
    (LOCAL, False, "segmented"),
    (CLOUD, None, "segmented"),  # a batch cloud engine: the framework's VAD cuts
])
def test_how_a_chain_is_heard_follows_its_first_engine(first: Capabilities, realtime: bool | None,
                                                       mode: str) -> None:
    hearing = Hearing(FakeProvider(name="first", capabilities=first), realtime=realtime)
    assert hearing.mode == mode and hearing.continuous == (mode != "segmented")
    assert isinstance(hearing.chain, Chain) and hearing.first is not None and hearing.first.name == "first"


class Keyless(FakeProvider):
    def why_unavailable(self) -> str | None:
        return "no API key"


def test_engines_that_cannot_serve_here_do_not_decide_how_a_chain_is_heard() -> None:
    """funasr missing and groq with no key before whisper (examples/stt.toml on the wheels' install):
    whisper answers, so real time; it was segmented, and Pipecat's cut lost the first words."""
    missing = UnusableEngine("funasr", "provider 'funasr' is not installed")
    keyless = Keyless(name="groq", capabilities=CLOUD)
    hearing = Hearing(Chain([missing, keyless, FakeProvider(name="whisper", capabilities=LOCAL)]))
    assert hearing.mode == "realtime" and hearing.first is not None and hearing.first.name == "whisper"
    assert Hearing(Chain([missing, keyless])).first is keyless  # none can serve: the first installed
    assert Hearing(Chain([missing])).first is missing


async def test_a_native_streams_utterances_are_bounded_as_real_times_are() -> None:
    engine = FakeProvider(name="deep", capabilities=STREAMING, final_every=2)
    audio, _ = conversation(("fox",), gap=0.0, lead=0.0)
    kinds = [e.type async for e in Hearing(engine).events(live(audio, chunk=1.0))]
    assert kinds[0] == "speech_start" and kinds[-1] == "speech_end"
    assert kinds.count("speech_start") == kinds.count("final") == kinds.count("speech_end") == 2


async def test_an_utterance_the_framework_cut_is_asked_even_of_an_open_breaker_when_it_is_the_last() -> None:
    engine = FakeProvider(name="only", capabilities=CLOUD,
                          script=[ProviderError("blip", retryable=True), "the quick brown fox"])
    hearing = Hearing(Chain([engine], retry=RetryPolicy(attempts=1)))
    with pytest.raises(Exception, match="blip"):
        await hearing.utterance(Audio.silence(0.5))  # its breaker opens (failures = 1)
    assert hearing.chain.breakers[0].state == "open"
    assert (await hearing.utterance(Audio.silence(0.5))).text == "the quick brown fox"


async def test_queued_frames_go_on_joined() -> None:
    queue: asyncio.Queue[Audio | None] = asyncio.Queue()
    for _ in range(100):
        queue.put_nowait(Audio.silence(0.001))  # 16 samples each
    queue.put_nowait(None)
    chunks = [chunk async for chunk in queued_audio(queue)]
    assert len(chunks) == 1 and chunks[0].num_frames == 1600
