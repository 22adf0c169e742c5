"""``stt-core serve``: the OpenAI transcription API over a chain, on uvicorn and a real socket.

The client is the official openai SDK (a client no one here wrote) or raw multipart requests
(httpx), the engines are the bundled whisper and the tiny trained SenseVoice, or the groq provider
against the fake Groq API for the faults.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jiwer
import openai
import pytest

import stt_core
from fakes.groq_api import KEY, FakeGroq
from realtime_clients import REALTIME_KEY
from serving import WHISPER_TABLE, ServeProcess, running
from speech import FIXTURES, MAX_WER, REFERENCES, TINY_SENSEVOICE, normalize, wer
from stt_core import Audio, Chain, RetryPolicy
from stt_core.server import ServeSettings
from stt_core_groq._provider import GroqProvider
from stt_core_openai._provider import OpenAIProvider

SERVER_KEY = REALTIME_KEY
pytestmark = pytest.mark.slow


# -- the real command, in its own process -------------------------------------------------------------


WHISPER_ONLY = f'chain = ["whisper"]\n{WHISPER_TABLE}'


@pytest.fixture
def local_server(realtime_server: ServeProcess) -> ServeProcess:
    """The suite's shared server (conftest.py): whisper first (English only: it takes English
    requests), the tiny SenseVoice behind it, behind SERVER_KEY."""
    return realtime_server


def _client(server: ServeProcess, key: str = SERVER_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


@pytest.mark.parametrize("fixture", ["fox", "chairs", "lights"])
async def test_the_openai_sdk_transcribes_english_through_whisper(local_server: ServeProcess,
                                                                  fixture: str) -> None:
    async with _client(local_server) as client:
        raw = await client.audio.transcriptions.with_raw_response.create(
            file=(FIXTURES / f"{fixture}.wav").open("rb"), model="whisper-1", language="en")
        result = raw.parse()
    assert wer(fixture, result.text) <= MAX_WER, result.text  # tiny.en's own errors
    assert raw.headers["x-stt-provider"] == "whisper"


async def test_chinese_goes_to_sensevoice_behind_it(local_server: ServeProcess) -> None:
    async with _client(local_server) as client:
        raw = await client.audio.transcriptions.with_raw_response.create(
            file=(FIXTURES / "zh_hello.wav").open("rb"), model="whisper-1", language="zh",
            response_format="verbose_json")
        result = raw.parse()
    assert (result.text, result.language) == ("你好世界。", "chinese")
    assert raw.headers["x-stt-provider"] == "funasr"


async def test_mandarin_without_a_language_is_reasked_and_verbose_json_carries_confidence(
    local_server: ServeProcess,
) -> None:
    """No language given: whisper tiny.en answers Mandarin in English, the chain doubts it and
    SenseVoice answers; the confidence reaches the openai SDK, and stt-core's openai provider."""
    async with _client(local_server) as client:
        raw = await client.audio.transcriptions.with_raw_response.create(
            file=(FIXTURES / "zh_hello.wav").open("rb"), model="whisper-1", response_format="verbose_json")
        answer = raw.http_response.json()
    assert (answer["text"], raw.headers["x-stt-provider"]) == ("你好世界。", "funasr")
    assert 0.5 <= answer["confidence"] <= 1
    async with OpenAIProvider(api_key=SERVER_KEY, base_url=f"{local_server.url}/v1") as upstream:
        heard = await upstream.transcribe(FIXTURES / "fox.wav")
    assert heard.confidence is not None and 0.5 <= heard.confidence <= 1  # whisper's, as served


async def test_every_response_format(local_server: ServeProcess) -> None:
    fox = (FIXTURES / "fox.wav").read_bytes()
    async with _client(local_server) as client:
        async def create(**options: object) -> object:
            return await client.audio.transcriptions.create(file=("fox.wav", fox), model="whisper-1",
                                                            language="en", **options)  # type: ignore[call-overload]

        as_json, text, srt, vtt, verbose = await asyncio.gather(
            create(response_format="json"), create(response_format="text"),
            create(response_format="srt"), create(response_format="vtt"),
            create(response_format="verbose_json", timestamp_granularities=["word", "segment"]),
        )
    expected = normalize(as_json.text)  # type: ignore[attr-defined]
    assert wer("fox", expected) <= MAX_WER, expected
    assert isinstance(text, str) and normalize(text) == expected
    assert isinstance(srt, str) and srt.startswith("1\n00:00:00,") and " --> " in srt
    assert isinstance(vtt, str) and vtt.startswith("WEBVTT\n\n00:00:00.")
    assert verbose.language == "english" and 3 < verbose.duration < 4  # type: ignore[attr-defined]
    words = verbose.words  # type: ignore[attr-defined]
    assert wer("fox", " ".join(w.word for w in words)) <= MAX_WER, words
    assert all(a.end <= b.start + 1e-6 for a, b in itertools.pairwise(words))
    assert verbose.segments and verbose.segments[0].start == 0.0  # type: ignore[attr-defined]


async def test_a_language_no_engine_takes_is_a_400_the_sdk_does_not_retry(local_server: ServeProcess) -> None:
    started = time.monotonic()
    # The SDK's own retries on, as a user has them: a 503 would be retried, a 400 is not.
    async with openai.AsyncOpenAI(base_url=f"{local_server.url}/v1", api_key=SERVER_KEY) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.audio.transcriptions.create(file=(FIXTURES / "fox.wav").open("rb"), model="m",
                                                     language="fr")
        with pytest.raises(openai.BadRequestError) as possible:  # OpenAI's possible languages: one is asked
            await client.audio.transcriptions.create(file=(FIXTURES / "fox.wav").open("rb"), model="m",
                                                     languages=["", "fr"])
    assert "language 'fr' is not taken" in possible.value.body["message"]  # type: ignore[index]
    assert time.monotonic() - started < 5  # a 503 with Retry-After: 5 made the SDK wait 10 s, then fail
    error = refused.value.body  # the SDK hands over the body's "error" object
    assert isinstance(error, dict) and error["param"] == "language"
    assert "language 'fr' is not taken by any engine of the chain (whisper -> funasr)" in error["message"]


async def test_models_health_and_ready(local_server: ServeProcess) -> None:
    async with _client(local_server) as client:
        models = await client.models.list()
    assert [m.id for m in models.data] == ["stt-core"]
    async with httpx.AsyncClient(base_url=local_server.url) as http:
        assert (await http.get("/health")).json() == {"status": "ok"}
        ready = (await http.get("/ready", headers={"Authorization": f"Bearer {SERVER_KEY}"})).json()
        anyone = await http.get("/ready")  # a load balancer's probe: the status, not the engines
        wrong = await http.get("/ready", headers={"Authorization": "Bearer sk-wrong"})
    assert ready == {"ready": True, "engines": ["whisper", "funasr"], "chain": "whisper -> funasr"}
    assert anyone.status_code == wrong.status_code == 200
    assert anyone.json() == wrong.json() == {"ready": True}


async def test_a_wrong_or_missing_key_is_401(local_server: ServeProcess) -> None:
    async with _client(local_server, key="sk-wrong") as client:
        with pytest.raises(openai.AuthenticationError, match="invalid or missing API key"):
            await client.audio.transcriptions.create(file=(FIXTURES / "fox.wav").open("rb"), model="m")
    async with httpx.AsyncClient(base_url=local_server.url) as http:
        answer = await http.post("/v1/audio/transcriptions", files={"file": b"x"}, data={"model": "m"})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"
    assert SERVER_KEY not in (local_server.log.read_text())


@pytest.mark.parametrize(("header", "status"), [
    (f"Bearer {SERVER_KEY}", 200), (f"bearer {SERVER_KEY}", 200), (f"BEARER  {SERVER_KEY}", 200),
    (SERVER_KEY, 401), (f"Basic {SERVER_KEY}", 401), (f"Bearer {SERVER_KEY}x", 401), ("Bearer", 401),
])
async def test_the_key_goes_in_a_bearer_header_whatever_the_scheme_s_case(
    local_server: ServeProcess, header: str, status: int
) -> None:
    async with httpx.AsyncClient(base_url=local_server.url, timeout=60) as http:
        answer = await http.post("/v1/audio/transcriptions", headers={"Authorization": header},
                                 files={"file": ("fox.wav", (FIXTURES / "fox.wav").read_bytes())},
                                 data={"model": "m", "language": "en"})
    assert answer.status_code == status, answer.text


@pytest.mark.parametrize(("host", "key", "warned"), [
    ("0.0.0.0", None, True), ("192.168.1.5", None, True), ("gpu-box", None, True),
    ("0.0.0.0", "sk-serve-test-0123456789", False), ("127.0.0.1", None, False), ("127.0.0.2", None, False),
    ("::1", None, False), ("localhost", None, False),
])
def test_an_open_address_without_a_key_is_warned_about(
    host: str, key: str | None, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    from stt_core.server import warn_if_open

    with caplog.at_level("WARNING", logger="stt_core.serve"):
        warn_if_open(ServeSettings(host=host, api_key=key))
    assert ("with no api_key" in caplog.text) is warned


@pytest.mark.parametrize(
    ("files", "data", "status", "message"),
    [
        ({"file": ("a.wav", b"")}, {"model": "m"}, 400, "audio is empty"),
        ({"file": ("a.wav", b"RIFF\x00\x00not a wav at all")}, {"model": "m"}, 400, "cannot decode a.wav"),
        ({"file": ("a.wav", b"<html>no audio</html>")}, {"model": "m", "stream": "true"}, 400,
         "cannot decode a.wav"),
        ({}, {"model": "m"}, 400, "the file field is missing"),
        ({"file": ("a.wav", b"x")}, {}, 400, "the model field is missing"),
        ({"file": ("a.wav", b"x")}, {"model": "m", "response_format": "mp3"}, 400, "response_format 'mp3'"),
        ({"file": ("a.wav", b"x")}, {"model": "m", "timestamp_granularities[]": "char"}, 400, "char"),
    ],
)
async def test_raw_requests_with_bad_input_get_openai_style_errors(
    local_server: ServeProcess, files: dict[str, object], data: dict[str, str], status: int, message: str
) -> None:
    async with httpx.AsyncClient(base_url=local_server.url,
                                 headers={"Authorization": f"Bearer {SERVER_KEY}"}) as http:
        if not files:  # multipart with fields only
            answer = await http.post("/v1/audio/transcriptions", files={"model": (None, "m")})
        else:
            answer = await http.post("/v1/audio/transcriptions", files=files, data=data)  # type: ignore[arg-type]
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"
    assert "stt-core-serve-" not in error["message"]  # the client's file name, never the server's path
    assert "Errno" not in error["message"]  # FFmpeg's words, not its error number


async def test_a_body_that_is_not_multipart_is_400(local_server: ServeProcess) -> None:
    async with httpx.AsyncClient(base_url=local_server.url,
                                 headers={"Authorization": f"Bearer {SERVER_KEY}"}) as http:
        answer = await http.post("/v1/audio/transcriptions", json={"file": "fox.wav"})
    assert answer.status_code == 400 and "multipart/form-data" in answer.json()["error"]["message"]


# -- in this process: uvicorn in a thread, for chains over fakes ------------------------------------


@pytest.fixture
async def groq(serve) -> FakeGroq:  # type: ignore[no-untyped-def]
    fake = FakeGroq()
    fake.url = await serve(fake.app())
    return fake


def groq_chain(fake: FakeGroq, attempt_timeout: float = 1.0) -> Chain:
    return Chain([GroqProvider(api_key=KEY, base_url=fake.url, timeout=5)],
                 retry=RetryPolicy(attempts=2, initial_backoff=0.01, jitter=0),
                 attempt_timeout=attempt_timeout)


async def test_past_the_concurrency_bound_it_is_429_with_retry_after_not_a_queue(groq: FakeGroq) -> None:
    groq.latency = 1.0
    clip = (FIXTURES / "fox.wav").read_bytes()
    async with running(groq_chain(groq, attempt_timeout=10), max_concurrent=2, max_waiting=1) as url, \
            httpx.AsyncClient(base_url=url, timeout=10) as http:
        answers = await asyncio.gather(*(
            http.post("/v1/audio/transcriptions", files={"file": ("f.wav", clip)}, data={"model": "m"})
            for _ in range(5)
        ))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 200, 200, 429, 429]  # 2 in, 1 waiting its turn, 2 turned away
    busy = next(a for a in answers if a.status_code == 429)
    assert busy.headers["retry-after"] == "1" and busy.json()["error"]["type"] == "rate_limit_error"
    assert groq.attempts == 3


async def test_the_openai_sdk_sees_a_rate_limit_error_when_busy(groq: FakeGroq) -> None:
    groq.latency = 1.0
    async with running(groq_chain(groq, attempt_timeout=10), max_concurrent=1, max_waiting=0) as url, \
            openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0) as client:
        clip = (FIXTURES / "fox.wav").read_bytes()

        async def call() -> object:
            return await client.audio.transcriptions.create(file=("f.wav", clip), model="m")

        first, second = await asyncio.gather(call(), call(), return_exceptions=True)
    errors = [r for r in (first, second) if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], openai.RateLimitError)


async def test_a_wav_whose_header_claims_hours_is_transcribed_as_far_as_it_goes_with_a_warning(
    local_server: ServeProcess,
) -> None:
    import struct

    fox = bytearray((FIXTURES / "fox.wav").read_bytes())
    claimed = 5 * 3600 * 16_000 * 2  # the data chunk says 5 h; 3.4 s follow
    data_at = fox.index(b"data") + 4
    fox[data_at:data_at + 4] = struct.pack("<I", claimed)
    fox[4:8] = struct.pack("<I", claimed + data_at - 4)
    async with _client(local_server) as client:
        raw = await client.audio.transcriptions.with_raw_response.create(
            file=("claims.wav", bytes(fox)), model="m", language="en")
    assert wer("fox", raw.parse().text) <= MAX_WER
    assert "claims.wav is truncated" in raw.headers["x-stt-warning"]


async def test_ready_leaves_out_an_engine_whose_model_failed_to_load(tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "tiny"
    shutil.copytree(TINY_SENSEVOICE, broken)
    (broken / "model_quant.onnx").write_bytes(b"not an onnx model")
    funasr = stt_core.registry().create("funasr", {"model": str(broken), "vad": "none",
                                                   "min_free_memory_gb": 0})
    whisper = stt_core.registry().create("whisper", {"model": "bundled", "cpu_threads": 1})
    assert funasr.why_unavailable() is None  # nothing says so before it is loaded
    async with running(Chain([funasr, whisper])) as url, httpx.AsyncClient(base_url=url) as http:
        ready = (await http.get("/ready")).json()
    assert ready["ready"] is True and ready["engines"] == ["whisper"]


@pytest.mark.parametrize("response_format", ["json", "text", "srt", "vtt", "verbose_json"])
async def test_an_upstream_that_echoes_the_key_never_passes_it_on(
    groq: FakeGroq, response_format: str, caplog: pytest.LogCaptureFixture
) -> None:
    groq.faults.append("401_echo")
    async with running(groq_chain(groq)) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        answer = await http.post("/v1/audio/transcriptions",
                                 files={"file": ("f.wav", (FIXTURES / "fox.wav").read_bytes())},
                                 data={"model": "m", "response_format": response_format})
    assert answer.status_code == 503, answer.text
    message = answer.json()["error"]["message"]
    assert "groq rejected the API key (HTTP 401)" in message and "[redacted]" in message
    assert KEY not in answer.text and KEY not in caplog.text


async def test_a_400_about_the_servers_model_file_falls_over_not_bad_audio(groq: FakeGroq) -> None:
    whisper = stt_core.registry().create("whisper", {"model": "bundled", "cpu_threads": 1})
    groq.faults.append("bad_model")
    chain = Chain([GroqProvider(api_key=KEY, base_url=groq.url, timeout=5), whisper])
    async with chain:
        result = await chain.transcribe(FIXTURES / "fox.wav", language="en")
    assert result.provider == "whisper" and wer("fox", result.text) <= MAX_WER
    [groq_attempt, *_] = result.attempts
    assert groq_attempt.outcome == "error" and "could not load model file" in (groq_attempt.error or "")


async def test_clients_that_hang_up_close_their_upstream_calls(groq: FakeGroq) -> None:
    groq.faults.extend(["slow"] * 5)
    groq.slow_seconds = 10
    clip = (FIXTURES / "fox.wav").read_bytes()
    async with running(groq_chain(groq, attempt_timeout=20), max_concurrent=8) as url:
        async def hang_up() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=1.0) as http:
                with pytest.raises(httpx.ReadTimeout):
                    await http.post("/v1/audio/transcriptions", files={"file": ("f.wav", clip)},
                                    data={"model": "m"})

        await asyncio.gather(*(hang_up() for _ in range(5)))
        for _ in range(50):  # the upstream sockets close soon after, not when the 10 s are up
            if len(groq.slow_transports) == 5 and all(t.is_closing() for t in groq.slow_transports):
                break
            await asyncio.sleep(0.05)
        assert len(groq.slow_transports) == 5 and all(t.is_closing() for t in groq.slow_transports)


@pytest.mark.parametrize(("faults", "status"), [(["500", "500"], 502), (["slow", "slow"], 504)])
async def test_engines_that_fail_are_502_and_ones_that_time_out_504(
    groq: FakeGroq, faults: list[str], status: int
) -> None:
    groq.faults.extend(faults)
    async with running(groq_chain(groq)) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        answer = await http.post("/v1/audio/transcriptions",
                                 files={"file": ("f.wav", (FIXTURES / "fox.wav").read_bytes())},
                                 data={"model": "m"})
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["type"] == "server_error" and "groq" in answer.json()["error"]["message"]


async def test_uploads_over_the_limit_are_refused_as_they_arrive(groq: FakeGroq) -> None:
    big = Audio.silence(10.0).encode("WAV")  # 320 kB
    async with running(groq_chain(groq), max_upload_mb=0.1) as url, httpx.AsyncClient(base_url=url) as http:
        declared = await http.post("/v1/audio/transcriptions", files={"file": ("f.wav", big)},
                                   data={"model": "m"})

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while it arrives
            boundary = b"--xyz\r\n"
            yield boundary + b'Content-Disposition: form-data; name="model"\r\n\r\nm\r\n'
            yield boundary + b'Content-Disposition: form-data; name="file"; filename="f.wav"\r\n\r\n'
            for _ in range(100):
                yield b"\x00" * 10_000

        chunked = await http.post("/v1/audio/transcriptions", content=chunks(),
                                  headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    for answer in (declared, chunked):
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "file_too_large"
    assert groq.attempts == 0


# -- the two directions together -------------------------------------------------------------------


async def test_a_server_killed_mid_request_hands_the_audio_to_the_local_engine(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, WHISPER_ONLY)
    remote = OpenAIProvider(base_url=f"{server.url}/v1", timeout=30).named("gpu-box")
    chain = Chain([remote, stt_core.registry().create("whisper", {"model": "bundled"})])
    long = _sentences()  # in flight when the server dies
    async with chain:
        request = asyncio.create_task(chain.transcribe(long, language="en"))
        await server.wait_until_transcribing()
        server.process.kill()
        result = await request
    assert result.provider == "whisper"
    assert jiwer.wer(_said(), normalize(result.text)) <= 0.3, result.text
    assert [(a.provider, a.outcome) for a in result.attempts][-1] == ("whisper", "ok")
    assert result.attempts[0].provider == "gpu-box" and result.attempts[0].outcome == "error"


async def test_sigterm_finishes_the_request_in_flight(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path, WHISPER_ONLY)
    long = _sentences().encode("WAV")
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0) as client:
        request = asyncio.create_task(client.audio.transcriptions.create(file=("long.wav", long), model="m",
                                                                         language="en"))
        await server.wait_until_transcribing()
        server.process.send_signal(signal.SIGTERM)
        result = await request
    assert jiwer.wer(_said(), normalize(result.text)) <= 0.3, result.text
    await asyncio.to_thread(server.stop)


# ~18 s of six different sentences: a sentence repeated makes whisper fall back to sampling.
SENTENCES = ["fox", "chairs", "lights", "weather", "offline", "meeting"]


def _sentences() -> Audio:
    return Audio.concat([Audio.from_file(FIXTURES / f"{name}.wav") for name in SENTENCES])


def _said() -> str:
    return normalize(" ".join(REFERENCES[name] for name in SENTENCES))


# -- observability: /metrics and the client's trace ----------------------------------------------


async def test_metrics_are_prometheus_text_with_a_histogram_per_engine_behind_the_key(serve) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client.parser import text_string_to_metric_families

    primary, backup = FakeGroq(text="from primary"), FakeGroq(text="from backup")
    primary.down = True
    primary.url, backup.url = await serve(primary.app()), await serve(backup.app())
    chain = Chain([GroqProvider(api_key=KEY, base_url=primary.url).named("primary"),
                   GroqProvider(api_key=KEY, base_url=backup.url).named("backup")],
                  retry=RetryPolicy(attempts=1))
    async with running(chain, api_key=SERVER_KEY) as url, httpx.AsyncClient(base_url=url) as http:
        auth = {"Authorization": f"Bearer {SERVER_KEY}"}
        answer = await http.post("/v1/audio/transcriptions", headers=auth,
                                 files={"file": ("fox.wav", (FIXTURES / "fox.wav").read_bytes())},
                                 data={"model": "stt-core"})
        assert answer.status_code == 200 and answer.json()["text"] == "from backup"
        assert (await http.get("/metrics")).status_code == 401
        scraped = await http.get("/metrics", headers=auth)
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(scraped.text)}
    attempts = families["stt_core_attempt_duration_seconds"]
    assert attempts.type == "histogram"
    counts = {(s.labels["stt_core_engine"], s.labels["stt_core_outcome"]): s.value
              for s in attempts.samples if s.name.endswith("_count")}
    assert counts == {("primary", "error"): 1, ("backup", "ok"): 1}
    assert "stt_core_request_duration_seconds" in families and "stt_core_failovers" in families
    assert SERVER_KEY not in scraped.text and KEY not in scraped.text


async def test_a_clients_traceparent_is_the_parent_of_the_request_span(groq: FakeGroq) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    stt_core.telemetry.configure(tracer_provider=provider)
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    try:
        async with running(groq_chain(groq)) as url, httpx.AsyncClient(base_url=url) as http:
            answer = await http.post("/v1/audio/transcriptions",
                                     headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
                                     files={"file": ("fox.wav", (FIXTURES / "fox.wav").read_bytes())},
                                     data={"model": "stt-core"})
        assert answer.status_code == 200
    finally:
        stt_core.telemetry.configure()
    request = next(s for s in spans.get_finished_spans() if s.name == "speech_to_text")
    assert request.parent is not None and f"{request.parent.span_id:016x}" == parent_id
    assert f"{request.context.trace_id:032x}" == trace_id


async def test_metrics_can_be_switched_off(groq: FakeGroq) -> None:
    async with running(groq_chain(groq), metrics=False) as url, httpx.AsyncClient(base_url=url) as http:
        answer = await http.get("/metrics")
    assert answer.status_code == 404 and "metrics = false" in answer.json()["error"]["message"]


async def test_a_model_naming_engines_keeps_the_chains_quality_rules() -> None:
    """``model="a,b"`` is a chain of those engines under the served chain's policies: a's own
    ``min_confidence`` (0.2) still passes its 0.3 answer (it was judged by the default 0.5, and
    re-asked of b)."""
    from stt_core import QualityPolicy
    from stt_core.testing import FakeProvider

    a = FakeProvider(name="a", text="from a", confidence=0.3)
    b = FakeProvider(name="b", text="from b", confidence=0.9)
    chain = Chain([b, a], quality=QualityPolicy(per_engine={"a": 0.2}))
    async with running(chain) as url, httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/v1/audio/transcriptions", data={"model": "a,b"},
                                 files={"file": ("fox.wav", (FIXTURES / "fox.wav").read_bytes())})
    assert answer.status_code == 200 and answer.json()["text"] == "from a", answer.text
    assert answer.headers["x-stt-provider"] == "a" and not b.calls


async def test_a_long_upload_with_a_piece_no_engine_heard_is_an_error_the_client_can_retry() -> None:
    # Served, a gap in the text would be a 200 that the openai SDK cannot tell from a whole answer:
    # a failed piece fails the request (the CLI and transcribe_file keep the other pieces instead).
    from stt_core.testing import FakeProvider

    down = stt_core.ProviderError("upstream 503", provider="cloud", retryable=False)
    engine = FakeProvider(name="cloud", script=["first", down])
    long = Audio.silence(610.0).encode()  # three pieces of at most 300 s
    async with running(Chain([engine]), max_upload_mb=30) as url, httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/v1/audio/transcriptions", files={"file": ("long.wav", long)},
                                 data={"model": "m"})
    assert answer.status_code == 502 and "upstream 503" in answer.json()["error"]["message"], answer.text
    assert len(engine.calls) == 2  # no piece asked after it


async def test_stream_true_deltas_join_to_the_text_as_a_files_pieces_are_joined() -> None:
    # The deltas joined once kept a piece's closing full stop that the joined transcript drops
    # ("door. and turn"): a piece's full stop now waits for the next piece.
    from stt_core.testing import FakeProvider

    said = ["Please open the door.", "and turn on the lights.", "Thank you."]
    engine = FakeProvider(name="cloud", script=list(said), text="and so on.")
    long = Audio.silence(75.0).encode()  # three pieces of at most 30 s
    form = {"files": {"file": ("long.wav", long)}, "data": {"model": "m", "stream": "true"}}
    async with (running(Chain([engine]), max_upload_mb=30) as url, httpx.AsyncClient(base_url=url) as http,
                http.stream("POST", "/v1/audio/transcriptions", **form) as answer):  # type: ignore[arg-type]
        events = [json.loads(line[6:]) async for line in answer.aiter_lines() if line.startswith("data: ")]
    deltas = [e["delta"] for e in events if e["type"] == "transcript.text.delta"]
    more = len(engine.calls) - len(said)  # the pieces cut at the silence's own pauses
    assert more >= 0 and events[-1]["type"] == "transcript.text.done"
    # what Transcript.joined makes of the same pieces (a long file's, without stream=true)
    text = " ".join(["Please open the door and turn on the lights. Thank you", *["and so on"] * more]) + "."
    assert "".join(deltas) == events[-1]["text"] == text
    assert deltas[0] == "Please open the door"  # sent before the second piece was heard
