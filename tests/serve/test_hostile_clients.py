"""``stt-core serve`` against clients that are slow, idle, leave, or send small files that claim
hours: the real command in its own process, real sockets, the official openai SDK for the
requests that must still be answered."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import psutil
import pytest
import soundfile as sf

from serving import WHISPER_TABLE, ServeProcess
from speech import FIXTURES, MAX_WER, REFERENCES, wer
from stt_core import Audio

pytestmark = pytest.mark.slow

SERVER = f"""chain = ["whisper"]
{WHISPER_TABLE}[serve]
max_concurrent = 1
max_waiting = 2
head_timeout = 2
body_timeout = 4
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    served = ServeProcess(tmp_path_factory.mktemp("hostile"), SERVER)
    yield served
    served.stop()


def _client(server: ServeProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=120)


async def _fox(server: ServeProcess) -> str:
    async with _client(server) as client:
        result = await client.audio.transcriptions.create(file=(FIXTURES / "fox.wav").open("rb"), model="m",
                                                          language="en")
    return result.text


def _fds(server: ServeProcess) -> int:
    return psutil.Process(server.process.pid).num_fds()


async def _trickle(server: ServeProcess, stop: asyncio.Event) -> bytes:
    """A multipart upload that sends one byte every half second: an answer, or b"" if closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = (b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF')
    writer.write(head)
    try:
        while not stop.is_set() and not reader.at_eof():
            writer.write(b"\x00")  # the file's bytes, one at a time
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(reader.read(4096), 0.5)
                while b"}}" not in answer and (more := await asyncio.wait_for(reader.read(4096), 2)):
                    answer += more  # the body, where it came in a packet of its own
                return answer
        return b""
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def test_slow_uploads_never_take_the_places_real_requests_wait_for(server: ServeProcess) -> None:
    stop = asyncio.Event()
    trickling = [asyncio.create_task(_trickle(server, stop)) for _ in range(20)]  # 20 > the 3 places
    await asyncio.sleep(1.0)
    heard = await asyncio.gather(*(_fox(server) for _ in range(3)))  # while all 20 are still trickling
    assert all(wer("fox", text) <= MAX_WER for text in heard), heard
    answers = await asyncio.wait_for(asyncio.gather(*trickling), 30)
    stop.set()
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:2]  # body_timeout = 4
    assert all(b"body_timeout" in a for a in answers)


async def test_idle_and_slowloris_connections_are_closed(server: ServeProcess) -> None:
    before = _fds(server)
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    try:
        for _ in range(6):  # a header byte a second, for 6 s: past head_timeout = 2
            for s in slow:
                with contextlib.suppress(OSError):
                    s.send(b"X")
            await asyncio.sleep(1.0)
        for s in idle + slow:
            s.settimeout(5)
            with contextlib.suppress(ConnectionError):
                assert s.recv(1024) == b""  # closed by the server
        assert _fds(server) <= before + 5
        assert wer("fox", await _fox(server)) <= MAX_WER
    finally:
        for s in idle + slow:
            s.close()


async def test_a_client_that_hangs_up_cancels_its_request(server: ServeProcess) -> None:
    long = Audio.concat([Audio.from_file(FIXTURES / f"{n}.wav") for n in REFERENCES]).encode("WAV")  # 18 s
    started = time.monotonic()
    async with _client(server) as client:
        await client.audio.transcriptions.create(file=("long.wav", long), model="m", language="en")
    one = time.monotonic() - started  # what one of them costs the engine, on this machine, now

    async def hang_up() -> None:
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0,
                                      timeout=0.5) as client:
            with pytest.raises(openai.APITimeoutError):
                await client.audio.transcriptions.create(file=("long.wav", long), model="m", language="en")

    await asyncio.gather(*(hang_up() for _ in range(3)))  # one transcribing, two waiting their turn
    started = time.monotonic()
    assert wer("fox", await _fox(server)) <= MAX_WER
    waited = time.monotonic() - started
    # Only the one call already inside the engine finishes; the two waiting were cancelled (else
    # this request would wait for three long ones), and whisper's breaker stays closed.
    assert waited < 2 * one, (waited, one)
    ready = await asyncio.to_thread(httpx.get, f"{server.url}/ready")
    assert ready.json()["ready"] is True


async def test_a_streamed_request_that_hangs_up_while_waiting_gives_its_place_in_line_back(
    server: ServeProcess,
) -> None:
    # One place inside (a long request), two in line: two stream=True callers wait there and hang up.
    # Their places in line are free again at once, so two more callers are let in, not turned away
    # with 429 while the long request still runs.
    long = Audio.concat([Audio.from_file(FIXTURES / f"{n}.wav") for n in REFERENCES] * 3).encode("WAV")
    async with _client(server) as client:
        running = asyncio.create_task(client.audio.transcriptions.create(file=("long.wav", long), model="m",
                                                                          language="en"))
        await server.wait_until_transcribing()
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0,
                                      timeout=0.3) as impatient:
            for _ in range(2):
                with pytest.raises(openai.APITimeoutError):
                    await impatient.audio.transcriptions.create(file=(FIXTURES / "fox.wav").open("rb"),
                                                                model="m", language="en", stream=True)
        await asyncio.sleep(0.2)  # the server sees them go
        assert not running.done()  # (else this would not test the line)
        after = await asyncio.gather(_fox(server), _fox(server))
        await running
    assert all(wer("fox", text) <= MAX_WER for text in after), after


async def test_callers_who_hung_up_leave_no_work_inside_a_local_engine(tmp_path: Path) -> None:
    # The default places (4 inside at once): 8 callers send 18 s each and hang up. Four of them were
    # already handed to whisper; only the one it was running may finish, the three that waited
    # their turn there are dropped unrun, so the next caller waits for one long request, not four.
    busy = ServeProcess(tmp_path, f'chain = ["whisper"]\n{WHISPER_TABLE}')
    try:
        long = Audio.concat([Audio.from_file(FIXTURES / f"{n}.wav") for n in REFERENCES]).encode("WAV")
        started = time.monotonic()
        async with _client(busy) as client:
            await client.audio.transcriptions.create(file=("long.wav", long), model="m", language="en")
        one = time.monotonic() - started

        async def hang_up() -> None:
            async with openai.AsyncOpenAI(base_url=f"{busy.url}/v1", api_key="none", max_retries=0,
                                          timeout=0.5) as client:
                with pytest.raises(openai.APITimeoutError):
                    await client.audio.transcriptions.create(file=("long.wav", long), model="m",
                                                             language="en")

        await asyncio.gather(*(hang_up() for _ in range(8)))
        started = time.monotonic()
        assert wer("fox", await _fox(busy)) <= MAX_WER
        waited = time.monotonic() - started
        assert waited < 2 * one, (waited, one)
    finally:
        busy.stop()


async def test_a_busy_answer_reaches_connection_close_clients_with_large_bodies(server: ServeProcess) -> None:
    long = Audio.concat([Audio.from_file(FIXTURES / f"{n}.wav") for n in REFERENCES]).encode("WAV")
    big = b"\x00" * 1_000_000
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
        async def post(audio: bytes, **headers: str) -> httpx.Response:
            return await http.post("/v1/audio/transcriptions", files={"file": ("a.wav", audio)},
                                   data={"model": "m", "language": "en"}, headers=headers)

        places = [asyncio.create_task(post(long)) for _ in range(3)]  # the 3 places, taken
        await server.wait_until_transcribing()
        await asyncio.sleep(0.5)
        busy = await asyncio.gather(*(post(big, Connection="close") for _ in range(10)),
                                    return_exceptions=True)
        await asyncio.gather(*places)
    assert all(isinstance(a, httpx.Response) and a.status_code == 429 for a in busy), busy  # never a reset


def test_memory_per_request_is_bounded_by_a_piece_not_by_what_the_file_claims(tmp_path: Path) -> None:
    """230 minutes of digital silence in a FLAC of under 1 MB (the decoding limits allow 4 h)."""
    flac = tmp_path / "silence.flac"
    with sf.SoundFile(flac, "w", samplerate=8_000, channels=1, format="FLAC") as f:
        for _ in range(230):
            f.write(np.zeros(8_000 * 60, np.int16))
    assert flac.stat().st_size < 1_000_000
    served = ServeProcess(tmp_path, SERVER.replace("body_timeout = 4", "body_timeout = 60"))
    try:
        process = psutil.Process(served.process.pid)
        before, peak = process.memory_info().rss, 0

        async def request() -> str:
            async with _client(served) as client:
                result = await client.audio.transcriptions.create(file=flac.open("rb"), model="m")
            return result.text

        async def watch(done: asyncio.Future[str]) -> None:
            nonlocal peak
            while not done.done():
                peak = max(peak, process.memory_info().rss)
                await asyncio.sleep(0.05)

        async def both() -> str:
            task = asyncio.ensure_future(request())
            await watch(task)
            return await task

        text = asyncio.run(both())
    finally:
        served.stop()
    grew_mb = (peak - before) / 2**20
    print(f"230 min of silence through serve: RSS grew {grew_mb:.0f} MB (was 10 GB before pieces)")
    assert text == ""
    assert grew_mb < 500


async def test_requests_left_when_the_shutdown_grace_ends_get_503_with_retry_after(tmp_path: Path) -> None:
    served = ServeProcess(tmp_path, SERVER.replace("max_waiting = 2", "max_waiting = 20")
                          + "shutdown_timeout = 1\n")
    long = Audio.concat([Audio.from_file(FIXTURES / f"{n}.wav") for n in REFERENCES]).encode("WAV")
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:
        requests = [asyncio.create_task(http.post("/v1/audio/transcriptions", files={"file": ("l.wav", long)},
                                                  data={"model": "m", "language": "en"}))
                    for _ in range(8)]  # one transcribing at a time: most are still waiting
        await served.wait_until_transcribing()
        await asyncio.to_thread(served.stop)  # SIGTERM, as a process manager sends it
        answers = await asyncio.gather(*requests, return_exceptions=True)
    refused = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 503]
    assert refused, answers
    for answer in answers:
        assert isinstance(answer, httpx.Response), answer
        assert answer.status_code in (200, 503), answer.text
    for answer in refused:
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["error"]["code"] == "shutting_down"
    log = served.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log
