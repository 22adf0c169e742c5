"""Secrets: a recognisable key is set, everything the library says is captured (CLI output with
--debug tracebacks, DEBUG logs, exception messages, reprs, config show), and the key is in none."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import stt_core
from fakes.deepgram_api import FakeDeepgram
from fakes.groq_api import FakeGroq
from stt_core import AllProvidersFailed

GROQ_KEY = "gsk_CANARY_groq_7f3a9c1e5b"  # not the fakes' key: every request is refused with 401
DEEPGRAM_KEY = "dg_CANARY_deepgram_2d8e4f6a0c"
FIXTURE = Path(__file__).parents[1] / "fixtures" / "audio" / "fox.wav"


@pytest.fixture
def servers(serve_in_thread) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"groq": serve_in_thread(FakeGroq().app()), "deepgram": serve_in_thread(FakeDeepgram().app())}


def env(servers: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "GROQ", "DEEPGRAM"))}
    return {**clean, "GROQ_API_KEY": GROQ_KEY, "DEEPGRAM_API_KEY": DEEPGRAM_KEY,
            "STT_GROQ__BASE_URL": servers["groq"], "STT_DEEPGRAM__BASE_URL": servers["deepgram"],
            "STT_CHAIN": "groq,deepgram"}


def test_the_cli_never_prints_a_key(servers: dict[str, str], tmp_path: Path) -> None:
    said = []
    commands = (["--debug", "transcribe", str(FIXTURE)],
                ["--debug", "transcribe", "--format", "json", str(FIXTURE)],
                ["config", "show"], ["providers"])
    for args in commands:
        done = subprocess.run([sys.executable, "-m", "stt_core.cli", *args], capture_output=True, text=True,
                              env=env(servers), cwd=tmp_path, timeout=120, check=False)
        said.append(done.stdout + done.stderr)
    everything = "\n".join(said)
    assert "rejected the API key (HTTP 401)" in everything  # the failures were really reached
    assert "Traceback" in everything  # --debug showed the tracebacks too
    assert GROQ_KEY not in everything and DEEPGRAM_KEY not in everything
    assert GROQ_KEY[-6:] not in everything and DEEPGRAM_KEY[-6:] not in everything  # not even a tail


async def test_logs_errors_and_reprs_never_hold_a_key(
    servers: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for key, value in env(servers).items():
        monkeypatch.setenv(key, value)
    caplog.set_level(logging.DEBUG)  # every library's DEBUG log: httpx, websockets, the SDKs, ours
    config = stt_core.load_config(None)
    chain = config.build_chain()
    with pytest.raises(AllProvidersFailed) as failed:
        await chain.transcribe(FIXTURE)
    stream_error: BaseException | None = None
    try:
        async for _ in chain.providers[1].stream(_chunks()):
            pass
    except stt_core.STTError as e:
        stream_error = e
    captured = "\n".join([
        caplog.text, str(failed.value), repr(failed.value), str(stream_error),
        *(f"{e!s} {e!r} {e.__cause__!s}" for _, e in failed.value.errors),
        repr(chain), *(repr(p) for p in chain.providers), *(str(p.settings) for p in chain.providers),
        str(config.redacted()), repr(config),
    ])
    assert "401" in captured
    assert GROQ_KEY not in captured and DEEPGRAM_KEY not in captured


async def _chunks():  # type: ignore[no-untyped-def]
    yield stt_core.Audio.from_file(FIXTURE)
