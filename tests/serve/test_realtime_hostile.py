"""``/v1/realtime`` against careless and hostile clients, on a real ``stt-core serve`` with tight
limits (its own, so the limits bite fast): bad events, audio before the session is configured,
messages too big, sockets that say nothing, too many sessions, a client that never reads, one
faster than real time, and clients that hang up mid-utterance. Each gets a clear ``error`` or a
close that says why; the server's memory stays bounded and the other sessions are unaffected."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
import websockets

from realtime_clients import encoded, speech
from serving import FUNASR_TABLE, WHISPER_TABLE, ServeProcess

pytestmark = pytest.mark.slow
CHAIRS = "We need 25 chairs for the party."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    config = f"""
chain = ["funasr", "whisper"]
{FUNASR_TABLE}{WHISPER_TABLE}[serve]
head_timeout = 2
max_realtime_sessions = 3
max_message_mb = 0.25
max_buffer_seconds = 4
realtime_idle_timeout = 3
page = false
"""
    served = ServeProcess(tmp_path_factory.mktemp("realtime-hostile"), config)
    yield served
    served.stop()


def url(server: ServeProcess) -> str:
    return f"ws://127.0.0.1:{server.port}/v1/realtime?intent=transcription"


UPDATE = {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
    "format": {"type": "audio/pcm", "rate": 24_000}, "transcription": {"model": "funasr", "language": "en"},
    "turn_detection": {"type": "server_vad"}}}}}


def append(data: bytes) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()})


async def events(ws: Any, until: Any, within: float = 60) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while not got or not until(got[-1]):
            got.append(json.loads(await ws.recv()))
    return got


async def chairs(server: ServeProcess, *, speed: float = 0) -> str:
    """A well-behaved session's transcript of the chairs clip (the one the others must not spoil)."""
    data, per_second = encoded(speech("chairs"), "audio/pcm")
    async with websockets.connect(url(server)) as ws:
        await ws.send(json.dumps(UPDATE))
        step = per_second // 50 * 2 // 2
        for i in range(0, len(data), step):
            await ws.send(append(data[i:i + step]))
            if speed:
                await asyncio.sleep(0.02 / speed)
        got = await events(ws, lambda e: e["type"].endswith(("completed", "failed")) or e["type"] == "error")
    assert got[-1]["type"].endswith("completed"), got[-1]
    return str(got[-1]["transcript"])


async def closed(ws: Any, within: float = 30) -> tuple[int, str]:
    """The close code and reason the server sent, reading what comes before it."""
    with pytest.raises(websockets.ConnectionClosed) as close:
        async with asyncio.timeout(within):
            while True:
                await ws.recv()
    rcvd = close.value.rcvd
    return (rcvd.code, rcvd.reason) if rcvd is not None else (1006, "")


def rss(server: ServeProcess) -> float:
    return float(psutil.Process(server.process.pid).memory_info().rss) / 2**20


async def test_bad_events_are_answered_with_an_error_naming_them_and_the_session_goes_on(
    server: ServeProcess,
) -> None:
    bad = [
        ("{not json", "invalid_json", None),
        ("[1, 2]", "invalid_event", "type"),
        (json.dumps({"type": "response.create"}), "unsupported_event", "type"),
        (json.dumps({"type": "conversation.item.create", "item": {}}), "unsupported_event", "type"),
        (json.dumps({"type": "no.such.event", "event_id": "e1"}), "unknown_event", "type"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "***"}), "invalid_value", "audio"),
        (json.dumps({"type": "session.update", "session": {"type": "realtime"}}), "invalid_value",
         "session.type"),
        (json.dumps({**UPDATE, "session": {**UPDATE["session"], "audio": {"input": {  # type: ignore[dict-item]
            "turn_detection": {"type": "server_vad", "threshold": 7}}}}}), "invalid_value",
         "session.audio.input.turn_detection.threshold"),
        (json.dumps({**UPDATE, "session": {**UPDATE["session"], "audio": {"input": {  # type: ignore[dict-item]
            "format": {"type": "audio/opus"}}}}}), "invalid_value", "session.audio.input.format.type"),
        (json.dumps({**UPDATE, "session": {**UPDATE["session"], "audio": {"input": {  # type: ignore[dict-item]
            "transcription": {"languages": ["", "de"]}}}}}), "invalid_value",
         "session.audio.input.transcription.languages"),  # no engine of whisper, funasr takes German
        (json.dumps({**UPDATE, "session": {**UPDATE["session"], "audio": {"input": {  # type: ignore[dict-item]
            "transcription": {"language": "english please"}}}}}), "invalid_value",
         "session.audio.input.transcription.language"),
        (json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty", None),
    ]
    async with websockets.connect(url(server)) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        for message, _, _ in bad:
            await ws.send(message)
        await ws.send(b"\x00binary")
        errors = [await events(ws, lambda e: True) for _ in range(len(bad) + 1)]
    got = [(e[0]["error"]["code"], e[0]["error"]["param"]) for e in errors]
    assert got == [(code, param) for _, code, param in bad] + [("invalid_message", None)]
    unknown = errors[4][0]["error"]
    assert unknown["event_id"] == "e1" and "no.such.event" in unknown["message"]
    assert "threshold must be a number between 0 and 1" in errors[7][0]["error"]["message"]
    assert "language 'de' is not taken by any engine" in errors[9][0]["error"]["message"]
    assert "'english please' is not a language code" in errors[10][0]["error"]["message"]
    assert await chairs(server) == CHAIRS  # and the server serves on


async def test_audio_before_session_update_is_held_up_to_a_message_then_refused(server: ServeProcess) -> None:
    data, _ = encoded(speech("chairs"), "audio/pcm")
    async with websockets.connect(url(server)) as ws:
        half = len(data) // 4 * 2
        await ws.send(append(data[:half]))  # a client that sends its update a moment late loses nothing
        await ws.send(append(data[half:]))
        await ws.send(json.dumps(UPDATE))
        got = await events(ws, lambda e: e["type"].endswith(("completed", "failed")) or e["type"] == "error")
    assert got[-1].get("transcript") == CHAIRS, got[-1]
    async with websockets.connect(url(server)) as ws:
        for _ in range(3):  # 3 x 0.16 MB: more than one message's worth, and no update
            await ws.send(append(data[:120_000]))
        code, reason = await closed(ws)
    assert (code, reason) == (1008, "audio before session.update")


async def test_a_message_too_big_closes_the_session_saying_so(server: ServeProcess) -> None:
    async with websockets.connect(url(server)) as ws:
        await ws.send(json.dumps(UPDATE))
        await ws.send(append(bytes(400_000)))  # 0.53 MB of base64 (max_message_mb = 0.25)
        got = await events(ws, lambda e: e["type"] == "error")
        code, reason = await closed(ws)
    assert got[-1]["error"]["code"] == "message_too_big" and "max_message_mb" in got[-1]["error"]["message"]
    assert (code, reason) == (1009, "message too big")
    async with websockets.connect(url(server)) as ws:
        await ws.send(json.dumps(UPDATE))
        await ws.send(append(bytes(1_000_000)))  # far past it: the WebSocket layer itself refuses it
        code, reason = await closed(ws)
    assert code == 1009 and "exceeds limit" in reason


async def test_200_idle_sockets_cost_little_block_no_one_and_are_closed(server: ServeProcess) -> None:
    before = rss(server)
    sockets = [await websockets.connect(url(server)) for _ in range(200)]
    try:
        grown = rss(server) - before
        started = time.monotonic()
        assert await chairs(server) == CHAIRS  # idle sockets hold no place: a real session gets in
        closes = await asyncio.gather(*(closed(ws) for ws in sockets))
        took = time.monotonic() - started
    finally:
        for ws in sockets:
            await ws.close()
    assert set(closes) == {(1000, "no session.update")}
    assert took < 20  # head_timeout = 2 s after each opened
    assert grown < 60, f"200 idle sockets took {grown:.0f} MB"


async def test_sessions_past_the_limit_are_told_to_try_later_and_idle_ones_closed(
    server: ServeProcess,
) -> None:
    sockets = [await websockets.connect(url(server)) for _ in range(4)]
    for ws in sockets:
        await ws.send(json.dumps(UPDATE))
    answers = [(await events(ws, lambda e: e["type"] in ("session.updated", "error")))[-1] for ws in sockets]
    assert [a["type"] for a in answers] == ["session.updated"] * 3 + ["error"]
    assert answers[3]["error"]["code"] == "too_many_sessions"
    assert await closed(sockets[3]) == (1013, "too many realtime sessions")
    started = time.monotonic()
    idle = await asyncio.gather(*(closed(ws) for ws in sockets[:3]))  # they say nothing more
    assert set(idle) == {(1000, "idle for 3 s")} and time.monotonic() - started < 8
    assert await chairs(server) == CHAIRS  # their places are free again


async def test_a_client_that_never_reads_is_cut_off_and_spoils_nothing(server: ServeProcess) -> None:
    before = rss(server)
    ws = await websockets.connect(url(server), max_queue=1)  # reads nothing it is sent
    await ws.send(json.dumps(UPDATE))
    other = asyncio.create_task(chairs(server, speed=1))
    started = time.monotonic()
    with pytest.raises((websockets.ConnectionClosed, TimeoutError)):
        async with asyncio.timeout(60):
            for sent in itertools.count():  # each answered with a session.updated it never reads
                await ws.send(json.dumps(UPDATE))
                if sent % 50 == 0:
                    await asyncio.sleep(0)  # (the session beside it runs in this loop too)
    cut_after = time.monotonic() - started
    await ws.close()
    assert await other == CHAIRS  # a session beside it, in real time, is unaffected
    assert cut_after < 30, f"it was not cut off ({cut_after:.0f} s)"
    assert rss(server) - before < 100


async def test_a_client_faster_than_real_time_waits_for_the_engine_and_loses_nothing(
    server: ServeProcess,
) -> None:
    names = ["fox", "lights", "weather"] * 2  # about 24 s, sent at once, to whisper (slower than that)
    data, per_second = encoded(speech(*names, gap=1.0), "audio/pcm")
    before = rss(server)
    tcp = socket.create_connection(("127.0.0.1", server.port))
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # its sends wait when the server does
    async with websockets.connect(url(server), sock=tcp) as ws:
        update = json.loads(json.dumps(UPDATE))
        update["session"]["audio"]["input"]["transcription"]["model"] = "whisper"
        await ws.send(json.dumps(update))
        other = asyncio.create_task(chairs(server, speed=1))
        step = per_second // 10  # 0.1 s a message
        for i in range(0, len(data), step):
            await ws.send(append(data[i:i + step]))  # (held back while the engine is behind:
            # test_listening.py shows the bound; here, that nothing is lost and memory stays flat)
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))  # answered once all is heard
        got = await events(ws, lambda e: e["type"] == "error", within=120)
        peak = rss(server) - before
    assert got[-1]["error"]["code"] == "input_audio_buffer_commit_empty"
    assert await other == CHAIRS  # a real-time session beside it is unaffected
    started_items = [e["item_id"] for e in got if e["type"] == "input_audio_buffer.speech_started"]
    completed = [e["item_id"] for e in got if e["type"].endswith("transcription.completed")]
    assert len(started_items) >= 6 and completed == started_items  # every utterance, in order
    assert peak < 150, f"{peak:.0f} MB"


async def test_clients_that_hang_up_mid_utterance_leave_no_work_behind(server: ServeProcess) -> None:
    data, per_second = encoded(speech("chairs", "good_morning"), "audio/pcm")
    process = psutil.Process(server.process.pid)
    fds = process.num_fds()
    for _ in range(6):
        ws = await websockets.connect(url(server))
        await ws.send(json.dumps(UPDATE))
        for i in range(0, int(per_second * 1.6), per_second // 50):  # into the first utterance
            await ws.send(append(data[i:i + per_second // 50]))
        ws.transport.abort()  # gone, mid-utterance, without a close
    await asyncio.sleep(1.0)
    busy = sum(process.cpu_times()[:2])
    await asyncio.sleep(2.0)
    assert sum(process.cpu_times()[:2]) - busy < 0.4, "the server kept working for clients that left"
    assert process.num_fds() <= fds + 2
    assert await chairs(server) == CHAIRS


def test_the_page_can_be_turned_off(server: ServeProcess) -> None:
    assert httpx.get(f"{server.url}/").status_code == 404  # [serve] page = false
