"""Faults, one test each: an engine that hangs, crashes, answers garbage or fails to load its
model. Every time the next engine answers and the chain records what happened. (Wire-level
faults, 429/500/timeouts/resets/bad JSON/bad keys, are in tests/groq and tests/deepgram; streams
dying mid-utterance in tests/deepgram and tests/livekit; the breaker's open/probe/close cycle
in tests/core/chain/test_chain.py.)"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from fakes.groq_api import KEY, FakeGroq
from speech import TINY_SENSEVOICE
from stt_core import Chain, RetryPolicy, Transcript
from stt_core.testing import FakeProvider
from stt_core_funasr._provider import FunASRProvider
from stt_core_groq._provider import GroqProvider

AUDIO = Path(__file__).parents[1] / "fixtures" / "audio"
ONCE = RetryPolicy(attempts=1)


async def test_a_hanging_engine_is_cut_off_by_the_attempt_timeout() -> None:
    async def hang(audio: object) -> Transcript:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    backup = FakeProvider(name="backup", text="answered")
    chain = Chain([FakeProvider(name="hangs", script=[hang]), backup], retry=ONCE, attempt_timeout=0.2)
    started = time.monotonic()
    result = await chain.transcribe(AUDIO / "fox.wav")
    assert time.monotonic() - started < 2
    assert (result.provider, [a.outcome for a in result.attempts]) == ("backup", ["timeout", "ok"])


async def test_an_engine_that_crashes_falls_over_with_its_reason() -> None:
    chain = Chain([FakeProvider(name="crashes", script=[RuntimeError("segfault in the engine")]),
                   FakeProvider(name="backup", text="answered")], retry=ONCE)
    result = await chain.transcribe(AUDIO / "fox.wav")
    assert result.provider == "backup"
    assert "RuntimeError: segfault in the engine" in (result.attempts[0].error or "")


async def test_garbage_from_a_cloud_engine_falls_over(serve) -> None:  # type: ignore[no-untyped-def]
    fake = FakeGroq()
    fake.url = await serve(fake.app())
    fake.faults.extend(["bad_json", "drop"])
    groq = GroqProvider(api_key=KEY, base_url=fake.url, timeout=2.0)
    chain = Chain([groq, FakeProvider(name="backup", text="answered")],
                  retry=RetryPolicy(attempts=2, initial_backoff=0, retry_before_fallover=True))
    result = await chain.transcribe(AUDIO / "fox.wav")
    assert result.provider == "backup" and fake.attempts == 2  # both tries answered garbage
    assert [a.outcome for a in result.attempts] == ["error", "error", "ok"]


async def test_a_local_model_that_fails_to_load_hands_over_to_the_next_engine(tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    shutil.copytree(TINY_SENSEVOICE, broken)
    (broken / "model.pt").write_bytes(b"\x00" * 128)  # a download cut short
    (broken / "model_quant.onnx").write_bytes(b"\x00" * 128)
    backup = FakeProvider(name="backup", text="answered")
    for backend, said in (("onnx", "model_quant.onnx does not load in onnxruntime"),
                          ("torch", "cannot load funasr model")):
        chain = Chain([FunASRProvider(model=str(broken), backend=backend), backup], retry=ONCE)
        result = await chain.transcribe(AUDIO / "zh_hello.wav")
        assert result.provider == "backup"
        assert result.attempts[0].outcome == "unavailable"
        assert said in (result.attempts[0].error or "")


@pytest.mark.parametrize("engines", [1, 3])
async def test_when_everything_fails_the_caller_hears_every_reason(engines: int) -> None:
    from stt_core import AllProvidersFailed

    chain = Chain([FakeProvider(name=f"e{i}", script=[RuntimeError(f"fault {i}")]) for i in range(engines)],
                  retry=ONCE)
    with pytest.raises(AllProvidersFailed) as failed:
        await chain.transcribe(AUDIO / "fox.wav")
    assert [name for name, _ in failed.value.errors] == [f"e{i}" for i in range(engines)]
    assert all(f"fault {i}" in str(failed.value) for i in range(engines))
