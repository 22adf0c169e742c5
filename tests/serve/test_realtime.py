"""``/v1/realtime`` and ``stream=true`` on a real ``stt-core serve`` (whisper, the tiny SenseVoice
behind it, a key), through the official openai SDK: its GA realtime client and its beta one, the
server's VAD and the client's own commits, PCM and G.711, and its ``stream=True`` transcription;
then ``stt-core listen --url``, the same server's own client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import websockets

import stt_core
from fakes.groq_api import FakeOpenAI
from realtime_clients import (
    REALTIME_KEY,
    TWO,
    Heard,
    encoded,
    ga,
    ga_update,
    record,
    send_audio,
    speech,
)
from serving import WHISPER_TABLE, ServeProcess
from speech import FIXTURES, MAX_WER, REFERENCES, live, wer
from stt_core import Audio, Capabilities, StreamEvent
from stt_core.testing import FakeProvider

pytestmark = pytest.mark.slow
COMPLETED = "conversation.item.input_audio_transcription.completed"


def client(server: ServeProcess, key: str = REALTIME_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", websocket_base_url=f"ws://127.0.0.1:{server.port}/v1",
                              api_key=key, max_retries=0)


def check_items(heard: Heard) -> None:
    """Each item's events in order, its deltas joined the start of its transcript (append-only)."""
    for final in heard.finals:
        assert final.transcript.startswith(heard.deltas(final.item_id)), (final, heard.deltas(final.item_id))
        assert heard.deltas(final.item_id) == final.transcript  # the last delta completes it


async def test_the_ga_client_with_server_vad_gets_each_utterances_words(
    realtime_server: ServeProcess,
) -> None:
    data, per_second = encoded(speech("two_utterances"), "audio/pcm")
    heard = Heard()
    async with client(realtime_server) as c, ga(c) as conn:
        created = await conn.recv()
        assert created.type == "session.created" and created.session.type == "transcription"
        await conn.send(ga_update("whisper"))  # type: ignore[arg-type]
        sending = asyncio.create_task(send_audio(conn, data, per_second, speed=2))
        await record(conn, heard, until=lambda e: len(heard.finals) == 2 or e.type == "error")
        await sending
    assert heard.of("session.updated")[0].session.audio.input.turn_detection.type == "server_vad"
    assert not heard.of("error"), heard.of("error")
    for final, said in zip(heard.finals, TWO, strict=True):
        assert wer(said, final.transcript) <= MAX_WER, final.transcript
        assert final.engine == "whisper" and final.languages[0].code == "en"  # the engine that answered
        assert final.usage.type == "duration" and 1.0 < final.usage.seconds < 3.5
    started = heard.of("input_audio_buffer.speech_started")
    stopped = heard.of("input_audio_buffer.speech_stopped")
    committed = heard.of("input_audio_buffer.committed")
    assert [e.item_id for e in started] == [e.item_id for e in stopped] == [e.item_id for e in committed] \
        == [f.item_id for f in heard.finals]
    assert committed[1].previous_item_id == committed[0].item_id
    assert 2900 < started[1].audio_start_ms < 3500 and stopped[0].audio_end_ms < started[1].audio_start_ms
    check_items(heard)


async def test_the_readmes_openai_sdk_snippet_as_written(realtime_server: ServeProcess,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The README's realtime example, run as written (only the server's address and key differ), on
    a file that ends in speech: it prints each utterance's deltas and engine, and ends by itself."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    start = readme.index("```python\n", readme.index("The official openai SDK (the beta client")) + 10
    code = readme[start:readme.index("```", start)]
    code = code.replace("http://gpu-box:8000/v1", f"{realtime_server.url}/v1")
    namespace: dict[str, Any] = {}
    exec(code.replace('api_key="..."', f'api_key="{REALTIME_KEY}"'), namespace)
    pcm = Audio.from_file(FIXTURES / "two_utterances.wav").to(24_000, 1, "int16").pcm_bytes()
    await asyncio.wait_for(namespace["main"](pcm), timeout=120)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.endswith("  (whisper)") for line in lines), lines
    for line, said in zip(lines, TWO, strict=True):
        assert wer(said, line.removesuffix("  (whisper)")) <= MAX_WER, line


async def test_interims_come_while_the_user_speaks_and_only_ever_append(
    realtime_server: ServeProcess,
) -> None:
    # The tiny SenseVoice (fast enough for an interim every 0.3 s) knows its clips with the lead-in
    # it was trained on: one utterance per session.
    data, per_second = encoded(speech("chairs"), "audio/pcm")
    heard = Heard()
    async with client(realtime_server) as c, ga(c) as conn:
        await conn.send(ga_update("funasr"))  # type: ignore[arg-type]
        sending = asyncio.create_task(send_audio(conn, data, per_second, speed=1))  # real time
        await record(conn, heard, until=lambda e: len(heard.finals) == 1 or e.type == "error")
        await sending
    for final in heard.finals:
        assert wer("chairs", final.transcript) <= MAX_WER and final.engine == "funasr", final.transcript
        deltas = [t for t, e in heard.events if e.type.endswith(".delta") and e.item_id == final.item_id]
        stopped = next(t for t, e in heard.events
                       if e.type == "input_audio_buffer.speech_stopped" and e.item_id == final.item_id)
        assert deltas and deltas[0] < stopped, "no delta while the user spoke"
    check_items(heard)


async def test_the_beta_client_commits_its_own_turns_in_g711(realtime_server: ServeProcess) -> None:
    heard = Heard()
    async with client(realtime_server) as c, c.beta.realtime.connect(
            model="whisper-1", extra_query={"intent": "transcription"}) as conn:
        await conn.send({"type": "transcription_session.update", "session": {  # type: ignore[arg-type]
            "input_audio_format": "g711_ulaw", "turn_detection": None,
            "input_audio_transcription": {"model": "whisper", "language": "en"}}})
        for name in ("lights", "offline"):  # telephone audio: 8 kHz costs tiny.en a word here and there
            data, per_second = encoded(speech(name, gap=0.3), "audio/pcmu")
            await send_audio(conn, data, per_second, speed=0)
            await conn.send({"type": "input_audio_buffer.commit"})
        await record(conn, heard, until=lambda e: len(heard.finals) == 2 or e.type == "error")
    updated = heard.of("transcription_session.updated")[0].session
    assert (updated.input_audio_format, updated.turn_detection) == ("g711_ulaw", None)
    for final, name in zip(heard.finals, ("lights", "offline"), strict=True):
        assert wer(name, final.transcript) <= MAX_WER and final.engine == "whisper", final.transcript
    committed = heard.of("input_audio_buffer.committed")
    assert [e.item_id for e in committed] == [f.item_id for f in heard.finals]
    assert (committed[0].previous_item_id, committed[1].previous_item_id) == (None, committed[0].item_id)
    assert not heard.of("input_audio_buffer.speech_started")  # the client says when a turn ends
    check_items(heard)


async def test_pcma_and_the_engine_behind_whisper_for_chinese(realtime_server: ServeProcess) -> None:
    heard = Heard()
    async with client(realtime_server) as c:
        for name, fmt, language in (("lights", "audio/pcma", "en"), ("zh_hello", "audio/pcm", "zh")):
            data, per_second = encoded(speech(name), fmt)
            async with ga(c) as conn:
                await conn.send(ga_update("stt-core", fmt=fmt, language=language))  # type: ignore[arg-type]
                await send_audio(conn, data, per_second, speed=0)
                await record(conn, heard, until=lambda e: e.type in (COMPLETED, "error"))
    lights, hello = heard.finals
    assert wer("lights", lights.transcript) <= MAX_WER and lights.engine == "whisper", lights.transcript
    # whisper (tiny.en) takes no Chinese: the tiny SenseVoice behind it answers
    assert (hello.transcript, hello.engine, hello.languages[0].code) == ("你好世界。", "funasr", "zh")


async def test_stream_true_gives_a_long_files_words_piece_by_piece(realtime_server: ServeProcess,
                                                                   tmp_path: Path) -> None:
    names = ["fox", "meeting", "chairs", "lights", "weather"] * 2  # about 43 s: two pieces
    long = Audio.concat([speech(name, lead=0.3, gap=1.0) for name in names]).to(16_000, 1)
    (tmp_path / "long.wav").write_bytes(long.encode("WAV"))
    arrived: list[tuple[float, Any]] = []
    async with client(realtime_server) as c:
        stream = await c.audio.transcriptions.create(file=(tmp_path / "long.wav").open("rb"), model="whisper",
                                                     language="en", stream=True)
        async for event in stream:
            arrived.append((time.monotonic(), event))
    deltas = [(t, e) for t, e in arrived if e.type == "transcript.text.delta"]
    (done,) = [e for _, e in arrived if e.type == "transcript.text.done"]
    assert len(deltas) >= 2 and arrived[-1][1] is done  # a piece of about 30 s at a time
    assert deltas[-1][0] - deltas[0][0] > 0.2  # each as it was transcribed, not all at the end
    assert "".join(e.delta for _, e in deltas) == done.text
    assert wer(" ".join(REFERENCES[n] for n in names), done.text) <= MAX_WER, done.text
    assert done.usage.seconds == pytest.approx(long.duration, abs=0.01)


async def test_model_names_an_engine_or_engines_over_http_and_realtime(realtime_server: ServeProcess) -> None:
    async with client(realtime_server) as c:
        raw = await c.audio.transcriptions.with_raw_response.create(
            file=(FIXTURES / "chairs.wav").open("rb"), model="funasr", language="en")
        assert raw.headers["x-stt-provider"] == "funasr"
        assert raw.parse().text == "We need 25 chairs for the party."
        raw = await c.audio.transcriptions.with_raw_response.create(
            file=(FIXTURES / "chairs.wav").open("rb"), model="gpt-4o-transcribe", language="en")
        assert raw.headers["x-stt-provider"] == "whisper"  # a name that is no engine: the served chain
        with pytest.raises(openai.BadRequestError) as refused:
            await c.audio.transcriptions.create(file=(FIXTURES / "chairs.wav").open("rb"),
                                                model="whisper,nope")
        body: Any = refused.value.body
        assert body["param"] == "model" and "'nope'" in body["message"]
        heard = Heard()
        async with ga(c) as conn:
            await conn.send(ga_update("nope,whisper"))  # type: ignore[arg-type]
            await conn.send(ga_update("funasr,whisper"))  # type: ignore[arg-type]
            await record(conn, heard, until=lambda e: e.type == "session.updated")
    (error,) = heard.of("error")
    assert error.error.param == "session.audio.input.transcription.model" and "'nope'" in error.error.message
    assert heard.of("session.updated")[0].session.audio.input.transcription.model == "funasr,whisper"


async def test_the_key_as_a_header_or_as_a_browsers_subprotocol(realtime_server: ServeProcess) -> None:
    url = f"ws://127.0.0.1:{realtime_server.port}/v1/realtime?intent=transcription"
    offered = ["realtime", f"openai-insecure-api-key.{REALTIME_KEY}"]
    async with websockets.connect(url, subprotocols=offered) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "realtime"  # never the key
        assert json.loads(await ws.recv())["type"] == "session.created"
    async with websockets.connect(url, additional_headers={"Authorization": "Bearer wrong"}) as ws:
        error = json.loads(await ws.recv())
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert error["type"] == "error" and error["error"]["code"] == "invalid_api_key"
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "invalid or missing API key")
    guessed = "sk-guessed-key-9876543210"
    async with websockets.connect(url, subprotocols=["realtime", f"openai-insecure-api-key.{guessed}"]) as ws:
        assert json.loads(await ws.recv())["error"]["code"] == "invalid_api_key"
    said = realtime_server.log.read_text()
    assert REALTIME_KEY not in said and guessed not in said  # no key, right or wrong, in the log


def test_stt_core_listen_url_is_a_client_of_its_own_server(realtime_server: ServeProcess,
                                                           tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("STT_")}
    done = subprocess.run(  # in a folder with no stt.toml: only the key is configured, by its variable
        [sys.executable, "-m", "stt_core.cli", "listen", str(FIXTURES / "two_utterances.wav"),
         "--url", f"ws://127.0.0.1:{realtime_server.port}", "--speed", "0", "--format", "json"],
        capture_output=True, text=True, env={**env, "STT_SERVE__API_KEY": REALTIME_KEY}, cwd=tmp_path,
        timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    finals = [e for e in events if e["type"] == "final"]
    assert [e["provider"] for e in finals] == ["whisper", "whisper"]
    for final, said in zip(finals, TWO, strict=True):
        assert wer(said, final["text"]) <= MAX_WER, final
    assert [e["type"] for e in events].count("speech_start") == 2
    ends = [e["end"] for e in events if e["type"] == "speech_end"]
    assert [e["end"] for e in finals] == ends and ends[0] < finals[1]["start"]  # where the VAD said
    # Speech starts where in process it does: audio_start_ms counts the prefix padding before it, as
    # OpenAI's does, and the client adds it back (they were 0.3 s apart). Not for speech in the first
    # 0.3 s of a stream, where audio_start_ms is 0 (the first utterance here starts at once).
    local = asyncio.run(_events_in_process(FIXTURES / "two_utterances.wav"))
    in_process = [e.start for e in local if e.type == "speech_start"]
    remote = [e["start"] for e in events if e["type"] == "speech_start"]
    assert remote[1] == pytest.approx(in_process[1], abs=0.05), (remote, in_process)
    wrong = subprocess.run(
        [sys.executable, "-m", "stt_core.cli", "listen", str(FIXTURES / "fox.wav"),
         "--url", f"ws://127.0.0.1:{realtime_server.port}", "--speed", "0"],
        capture_output=True, text=True, env={**env, "STT_SERVE__API_KEY": "sk-wrong-key"}, cwd=tmp_path,
        timeout=60, check=False)
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr  # was 1
    assert "invalid or missing API key" in wrong.stderr and "STT_SERVE__API_KEY" in wrong.stderr


async def _events_in_process(path: Path) -> list[StreamEvent]:
    audio = Audio.from_file(path)
    engine = FakeProvider(name="local", text="words", capabilities=Capabilities(offline=True))
    return [event async for event in stt_core.realtime(engine, live(audio, chunk=0.02, pace=0.0))]


FAILED = "conversation.item.input_audio_transcription.failed"


async def test_an_engine_going_down_mid_stream_loses_no_word_and_fails_one_item_at_most(
    serve: Any, tmp_path: Path,
) -> None:
    """A cloud engine in front of whisper (the openai provider; its far end a fake on 127.0.0.1)
    goes down while an utterance is spoken. Through the chain, whisper gets that whole utterance
    and every word arrives. Named alone (``model="cloud"``), that utterance's item fails and the
    session goes on: the next one, once the engine is back, is transcribed."""
    fake = FakeOpenAI(text="Good morning everyone.", key=None)  # what the first utterance says
    fake.url = await serve(fake.app())
    config = f"""
chain = ["cloud", "whisper"]
[cloud]
provider = "openai"
base_url = "{fake.url}/v1"
timeout = 5
{WHISPER_TABLE}[retry]
attempts = 1
[realtime]
min_interim_interval = 10  # no interims: whisper's would answer for the cloud (they become pieces)
attempt_timeout = 120  # the cloud's own timeout (5 s) bounds it; whisper has time on CI's busy cores
drain_timeout = 120
"""
    server = await asyncio.to_thread(ServeProcess, tmp_path, config)
    through_the_chain, alone = Heard(), Heard()

    def switch(heard: Heard, *, down_at: int, up_at: int | None, items: int) -> Any:
        def until(event: Any) -> bool:
            if event.type == "input_audio_buffer.speech_started":
                started = len(heard.of(event.type))
                fake.down = started == down_at or (fake.down and started != up_at)
            return len(heard.finals) + len(heard.of(FAILED)) == items or event.type == "error"
        return until

    try:
        async with client(server, key="none") as c:
            async with ga(c) as conn:
                await conn.send(ga_update("stt-core"))  # type: ignore[arg-type]
                data, per_second = encoded(speech("two_utterances"), "audio/pcm")
                sending = asyncio.create_task(send_audio(conn, data, per_second, speed=2))
                await record(conn, through_the_chain, until=switch(through_the_chain, down_at=2, up_at=None,
                                                                   items=2))
                await sending
            fake.down, fake.text = False, "Hello from the cloud."
            asked_while_up = len(fake.requests)
            async with ga(c) as conn:
                await conn.send(ga_update("cloud"))  # type: ignore[arg-type]
                data, per_second = encoded(speech("fox", "lights", gap=3.0), "audio/pcm")
                sending = asyncio.create_task(send_audio(conn, data, per_second, speed=2))
                await record(conn, alone, until=switch(alone, down_at=2, up_at=99, items=2))
                fake.down = False  # back up for the third
                data, per_second = encoded(speech("meeting"), "audio/pcm")
                await sending
                await send_audio(conn, data, per_second, speed=2)
                await record(conn, alone, until=lambda e: len(alone.finals) == 2 or e.type == "error")
    finally:
        await asyncio.to_thread(server.stop)
    assert not through_the_chain.of(FAILED)
    assert [f.engine for f in through_the_chain.finals] == ["cloud", "whisper"]  # whisper had it all
    for final, said in zip(through_the_chain.finals, TWO, strict=True):
        assert wer(said, final.transcript) <= MAX_WER, final.transcript
    assert 0 < asked_while_up < fake.attempts, "the cloud engine was not asked both up and down"
    check_items(through_the_chain)
    first, third = alone.finals
    (failed,) = alone.of(FAILED)
    items = [e.item_id for e in alone.of("input_audio_buffer.committed")]
    assert items == [first.item_id, failed.item_id, third.item_id]  # in order, the session went on
    assert failed.error.code == "transcription_failed" and "cloud" in failed.error.message
    assert first.transcript == third.transcript == "Hello from the cloud." and third.engine == "cloud"
