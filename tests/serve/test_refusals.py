"""``stt-core serve`` when engines cannot serve: it will not start on a chain none of whose engines
ever can, a fault that waiting will not clear is answered so that the openai SDK does not retry it
(no Retry-After, ``x-should-retry: false``), one that may clear keeps its Retry-After, and a
language is judged only by engines that are installed.

The server is the real app on uvicorn (the real command for the start-up refusal), the client the
official openai SDK with its own retries on, as a user has it, counted at its transport."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from fakes.groq_api import KEY, FakeGroq
from serving import free_port, running
from speech import FIXTURES
from stt_core import Capabilities, Chain, Registry, load_config
from stt_core.testing import FakeProvider
from stt_core_groq._provider import GroqProvider

CLIP = FIXTURES / "fox.wav"


@pytest.fixture
async def groq(serve) -> FakeGroq:  # type: ignore[no-untyped-def]
    fake = FakeGroq()
    fake.url = await serve(fake.app())
    return fake


class Counted:
    """The openai SDK as a user has it (two retries of its own), with its POSTs counted."""

    def __init__(self, url: str) -> None:
        self.posts = 0

        async def count(request: httpx.Request) -> None:
            self.posts += request.method == "POST"

        self.client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", http_client=httpx.AsyncClient(
            event_hooks={"request": [count]}))

    async def transcribe(self, language: str | None = None, model: str = "m") -> openai.APIStatusError:
        with pytest.raises(openai.APIStatusError) as failed:
            await self.client.audio.transcriptions.create(file=CLIP.open("rb"), model=model,
                                                          **({"language": language} if language else {}))
        return failed.value


def test_serve_refuses_to_start_when_no_engine_of_its_chain_can_ever_serve(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STT_") and k != "GROQ_API_KEY"}
    command = [sys.executable, "-m", "stt_core.cli", "serve", "--chain", "groq", "--port", str(free_port())]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: stt-core serve: no engine of the chain (groq) can serve (groq: no API key; set GROQ_API_KEY "
        "(or [groq] api_key))"]


def test_serve_on_a_port_another_server_holds_says_so_in_one_line_before_loading(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        command = [sys.executable, "-m", "stt_core.cli", "serve", "--chain", "whisper", "--port", str(port)]
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr  # was: uvicorn's log after the models loaded, exit 3
    assert done.stderr.splitlines() == [
        f"error: stt-core serve: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_a_bad_port_is_said_to_come_from_where_it_was_set(tmp_path: Path) -> None:
    # It was said to come from "the environment" when --port gave it.
    command = [sys.executable, "-m", "stt_core.cli", "serve", "--chain", "whisper", "--port", "70000"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "bad [serve] settings on the command line: port:" in done.stderr, done.stderr
    (tmp_path / "stt.toml").write_text("[serve]\nport = 70000\n")
    done = subprocess.run(command[:-2], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "bad [serve] settings in stt.toml: port:" in done.stderr, done.stderr


async def test_a_refused_key_is_503_without_retry_after_and_the_sdk_asks_once(groq: FakeGroq) -> None:
    chain = Chain([GroqProvider(api_key="gsk_revoked_0123456789", base_url=groq.url, timeout=5)])
    async with running(chain) as url:
        sdk = Counted(url)
        refused = await sdk.transcribe()
    assert refused.status_code == 503 and "retry-after" not in refused.response.headers
    assert refused.response.headers["x-should-retry"] == "false"
    assert "groq rejected the API key (HTTP 401)" in refused.message
    assert sdk.posts == 1 and groq.attempts == 1  # the SDK retried a 503 with Retry-After: 5 twice


async def test_a_model_naming_an_engine_that_can_never_serve_is_not_retried(
    groq: FakeGroq, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The served chain can serve (fake answers), the engine the request names cannot (groq has no
    # key): judged by the engines it named, not by the served chain (was: Retry-After: 5, and the
    # SDK asked three times in 10 s).
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    chain = Chain([GroqProvider(base_url=groq.url, timeout=5), FakeProvider(text="the quick brown fox")])
    async with running(chain) as url:
        sdk = Counted(url)
        refused = await sdk.transcribe(model="groq")
    assert refused.status_code == 503 and "retry-after" not in refused.response.headers
    assert refused.response.headers["x-should-retry"] == "false" and "no API key" in refused.message
    assert sdk.posts == 1


async def test_engines_that_may_recover_keep_their_retry_after(groq: FakeGroq) -> None:
    groq.down = True  # an outage: calls and health checks fail, so its breaker stays open
    chain = Chain([GroqProvider(api_key=KEY, base_url=groq.url, timeout=5)])
    async with running(chain) as url, httpx.AsyncClient(base_url=url) as http:
        form = {"files": {"file": ("f.wav", CLIP.read_bytes())}, "data": {"model": "m"}}
        failed = await http.post("/v1/audio/transcriptions", **form)  # type: ignore[arg-type]
        skipped = await http.post("/v1/audio/transcriptions", **form)  # type: ignore[arg-type]
    assert failed.status_code == 502
    assert skipped.status_code == 503 and int(skipped.headers["retry-after"]) >= 1
    assert "circuit breaker open" in skipped.json()["error"]["message"]
    assert "x-should-retry" not in skipped.headers


async def test_a_language_is_not_refused_for_an_engine_that_is_only_missing() -> None:
    """funasr (zh) not installed, an English engine behind it: Chinese is not "send another
    language" (400) but the truth, funasr missing and how to install it (503, not retried)."""
    plugins = Registry()
    plugins.add(FakeProvider)
    english = FakeProvider(capabilities=Capabilities(languages=frozenset({"en"})), text="the quick brown fox")
    chain = load_config().build_chain(plugins=plugins, names=["funasr", "fake"],
                                      adapt=lambda engine: engine if engine.name == "funasr" else english)
    async with running(chain) as url:
        sdk = Counted(url)
        chinese = await sdk.transcribe("zh")
        heard = await sdk.client.audio.transcriptions.create(file=CLIP.open("rb"), model="m", language="en")
    assert chinese.status_code == 503 and chinese.response.headers["x-should-retry"] == "false"
    assert "funasr: provider 'funasr' is not installed" in chinese.message
    assert "pip install" in chinese.message
    assert "send another language" not in chinese.message
    assert sdk.posts == 2 and heard.text == "the quick brown fox"
