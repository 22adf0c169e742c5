"""OpenTelemetry traces and metrics (stt_core.telemetry), read back with the OTel SDK's in-memory
span exporter and metric reader, on the real whisper and funasr engines and the fake Groq API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import stt_core
from fakes.deepgram_api import KEY as DEEPGRAM_KEY
from fakes.deepgram_api import FakeDeepgram
from fakes.groq_api import KEY, FakeGroq
from speech import FIXTURES, MAX_WER, TINY_SENSEVOICE, wer
from stt_core import Audio, BreakerPolicy, Capabilities, Chain, RetryPolicy, telemetry
from stt_core._registry import UnusableEngine
from stt_core.testing import FakeProvider
from stt_core_deepgram._provider import DeepgramProvider
from stt_core_groq._provider import GroqProvider

LIGHTS = FIXTURES / "lights.wav"


@dataclass
class Recorded:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        return [point for resource in (data.resource_metrics if data else [])
                for scope in resource.scope_metrics for metric in scope.metrics if metric.name == name
                for point in metric.data.data_points]

    def everything(self) -> str:
        """Every span and metric as JSON: what an exporter would send."""
        data = self.metrics.get_metrics_data()
        return "\n".join([span.to_json() for span in self.spans.get_finished_spans()]
                         + ([data.to_json()] if data else []))


@pytest.fixture
def otel() -> Iterator[Recorded]:
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[metrics])
    telemetry.configure(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield Recorded(spans, metrics, tracer_provider)
    telemetry.configure()


@pytest.fixture(scope="module")
def whisper() -> stt_core.Provider:
    return stt_core.registry().create("whisper")


@pytest.fixture
async def groq(serve) -> FakeGroq:  # type: ignore[no-untyped-def]
    fake = FakeGroq(text="Please open the door and turn on the lights.")
    fake.url = await serve(fake.app())
    return fake


def failing_groq(fake: FakeGroq) -> GroqProvider:
    fake.down = True  # every request answers HTTP 500
    return GroqProvider(api_key=KEY, base_url=fake.url, timeout=5.0)


async def test_a_500_then_an_answer_gives_an_error_attempt_span_then_an_ok_one(
    otel: Recorded, groq: FakeGroq, whisper: stt_core.Provider
) -> None:
    chain = Chain([failing_groq(groq), whisper], retry=RetryPolicy(attempts=1))
    result = await chain.transcribe(LIGHTS, language="en")
    assert result.provider == "whisper"
    spans = sorted(otel.spans.get_finished_spans(), key=lambda s: s.start_time or 0)
    request, *attempts = spans
    assert request.name == "speech_to_text" and request.parent is None
    assert request.attributes is not None and request.attributes["gen_ai.operation.name"] == "speech_to_text"
    assert request.attributes["gen_ai.provider.name"] == "whisper"
    assert request.attributes["gen_ai.speech.input.language"] == "en"
    assert request.attributes["stt_core.fell_over"] is True
    seconds = Audio.from_file(LIGHTS).duration
    assert request.attributes["gen_ai.speech.input.duration"] == pytest.approx(seconds)
    assert [s.name for s in attempts] == ["speech_to_text groq", "speech_to_text whisper"]
    assert all(s.parent is not None and s.parent.span_id == request.context.span_id for s in attempts)
    failed, answered = attempts
    assert failed.status.status_code == StatusCode.ERROR and failed.attributes is not None
    assert failed.attributes["error.type"] == "ProviderError"
    assert failed.attributes["gen_ai.provider.name"] == "groq"
    assert answered.status.status_code != StatusCode.ERROR and answered.attributes is not None
    assert answered.attributes["stt_core.attempt.outcome"] == "ok"

    by_engine = {(p.attributes["stt_core.engine"], p.attributes["stt_core.outcome"]): p.count
                 for p in otel.points("stt_core.attempt.duration")}
    assert by_engine == {("groq", "error"): 1, ("whisper", "ok"): 1}
    (request_point,) = otel.points("stt_core.request.duration")
    assert request_point.attributes == {"stt_core.engine": "whisper", "stt_core.outcome": "ok"}
    (audio,) = otel.points("stt_core.audio.duration")
    assert audio.value == pytest.approx(seconds)
    (failover,) = otel.points("stt_core.failovers")
    assert failover.value == 1 and failover.attributes == {"stt_core.from": "groq", "stt_core.to": "whisper"}


async def test_when_every_engine_fails_the_request_span_is_an_error(otel: Recorded, groq: FakeGroq) -> None:
    chain = Chain([failing_groq(groq)], retry=RetryPolicy(attempts=1))
    with pytest.raises(stt_core.AllProvidersFailed):
        await chain.transcribe(LIGHTS)
    request = next(s for s in otel.spans.get_finished_spans() if s.name == "speech_to_text")
    assert request.status.status_code == StatusCode.ERROR and request.attributes is not None
    assert request.attributes["error.type"] == "AllProvidersFailed"
    (point,) = otel.points("stt_core.request.duration")
    assert point.attributes == {"stt_core.engine": "none", "stt_core.outcome": "failed"}


async def test_no_secret_or_transcript_text_in_any_span_or_metric(
    otel: Recorded, groq: FakeGroq, whisper: stt_core.Provider
) -> None:
    chain = Chain([GroqProvider(api_key=KEY, base_url=groq.url), whisper])
    groq.faults.append("401_echo")  # an upstream that quotes the key in its error
    first = await chain.transcribe(LIGHTS)
    second = await chain.transcribe(LIGHTS)
    assert wer("lights", first.text) <= MAX_WER and second.provider in ("groq", "whisper")
    recorded = otel.everything()
    assert "speech_to_text groq" in recorded  # the spans are there
    assert KEY not in recorded and "gsk_" not in recorded
    assert "open the door" not in recorded.lower()
    telemetry.configure(tracer_provider=otel.tracer_provider, record_text=True)
    await chain.transcribe(LIGHTS)
    assert "open the door" in otel.everything().lower()  # switched on, it is there


async def test_streams_get_a_span_and_one_per_utterance_with_time_to_interim_and_final(
    otel: Recorded, serve  # type: ignore[no-untyped-def]
) -> None:
    fake = FakeDeepgram(utterances=[(0.0, 1.69, "Good morning everyone."), (3.19, 5.10, "Let us begin.")])
    fake.url = await serve(fake.app())
    chain = Chain([DeepgramProvider(api_key=DEEPGRAM_KEY, base_url=fake.url)])
    audio = Audio.from_file(FIXTURES / "two_utterances.wav")

    async def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(audio.samples), 1600):
            yield Audio(audio.samples[i:i + 1600], audio.sample_rate)
            await asyncio.sleep(0)

    finals = [e async for e in chain.stream(chunks()) if e.is_final]
    assert len(finals) == 2
    spans = otel.spans.get_finished_spans()
    stream = next(s for s in spans if s.name == "speech_to_text stream")
    utterances = [s for s in spans if s.name == "speech_to_text utterance"]
    assert stream.attributes is not None and stream.attributes["stt_core.utterances"] == 2
    assert len(utterances) == 2
    for span in utterances:
        assert span.parent is not None and span.parent.span_id == stream.context.span_id
        assert span.attributes is not None and span.attributes["gen_ai.provider.name"] == "deepgram"
        interim, final = (span.attributes[f"stt_core.time_to_{k}"] for k in ("first_interim", "final"))
        assert 0 <= interim <= final


async def test_breaker_state_changes_are_counted(otel: Recorded) -> None:
    down = FakeProvider(name="down", script=[stt_core.ProviderError("down", retryable=True)] * 10,
                        capabilities=stt_core.Capabilities())
    chain = Chain([down, FakeProvider(name="backup", capabilities=stt_core.Capabilities())],
                  retry=RetryPolicy(attempts=1), breaker=BreakerPolicy(failures=2, cooldown=60))
    for _ in range(3):
        await chain.transcribe(Audio.silence(0.5))
    points = {(p.attributes["stt_core.engine"], p.attributes["stt_core.state"]): p.value
              for p in otel.points("stt_core.breaker.transitions")}
    assert points == {("down", "open"): 1}


async def test_a_local_engine_reports_its_queue_depth_and_batch_sizes(otel: Recorded) -> None:
    from stt_core_funasr._provider import FunASRProvider

    engine = FunASRProvider(model=str(TINY_SENSEVOICE), vad="none", max_batch=8)
    await engine.warmup()
    await asyncio.gather(*(engine.transcribe(FIXTURES / "chairs.wav") for _ in range(6)))
    batches = otel.points("stt_core.batch.size")
    (depth,) = otel.points("stt_core.queue.depth")
    assert sum(p.sum for p in batches) >= 6 and depth.value == 0  # every request taken, none left


@pytest.mark.parametrize("hidden", ["opentelemetry.sdk", "opentelemetry"], ids=["no-sdk", "no-api"])
def test_without_the_sdk_or_the_api_nothing_is_exported_and_nothing_breaks(hidden: str) -> None:
    probe = f"""
import asyncio, json, sys
sys.modules[{hidden!r}] = None  # not installed, as far as imports go
import stt_core
from stt_core import Audio, Chain, telemetry
from stt_core.testing import FakeProvider

async def main():
    chain = Chain([FakeProvider(name="down", script=[stt_core.ProviderError("x", retryable=True)]),
                   FakeProvider(name="up")])
    result = await chain.transcribe(Audio.silence(0.5))
    async def chunks():
        for _ in range(3):
            yield Audio.silence(0.1)

    finals = [e async for e in chain.stream(chunks()) if e.is_final]
    recording = telemetry._trace is not None and telemetry._tracer().start_span("x").is_recording()
    print(json.dumps([result.provider, len(finals) > 0, recording]))

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == ["up", True, False]


async def test_a_failover_is_only_a_real_move_to_another_engine(otel: Recorded) -> None:
    """Not an engine that is not installed (every request would count: 100 % on a whisper-only
    install), not one passed for what it declares (whisper -> whisper for word times): only a
    move from the engine a request was meant for to another."""
    plain = Capabilities(offline=True)  # no word times
    missing = UnusableEngine("funasr", "provider 'funasr' is not installed")
    chain = Chain([missing, FakeProvider(name="whisper", capabilities=plain),
                   FakeProvider(name="groq", script=[])], retry=RetryPolicy(attempts=1))
    assert (await chain.transcribe(Audio.silence(0.5))).provider == "whisper"
    assert (await chain.transcribe(Audio.silence(0.5), word_timestamps=True)).provider == "groq"
    assert otel.points("stt_core.failovers") == []
    requests = [s for s in otel.spans.get_finished_spans() if s.name == "speech_to_text"]
    assert [s.attributes["stt_core.fell_over"] for s in requests if s.attributes] == [False, False]

    chain.providers[1].script.append(stt_core.ProviderError("busy", retryable=True))  # type: ignore[attr-defined]
    assert (await chain.transcribe(Audio.silence(0.5))).provider == "groq"
    (failover,) = otel.points("stt_core.failovers")
    assert failover.value == 1 and failover.attributes == {"stt_core.from": "whisper", "stt_core.to": "groq"}


async def test_metrics_name_their_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """/metrics' target_info: stt-core, not unknown_service:python3; OTEL_SERVICE_NAME wins."""
    from stt_core._serve.app import Prometheus

    for name, expected in ((None, "stt-core"), ("edge-stt", "edge-stt")):
        if name:
            monkeypatch.setenv("OTEL_SERVICE_NAME", name)
        prometheus = Prometheus()
        try:
            await Chain([FakeProvider()]).transcribe(Audio.silence(0.5))
            text = prometheus.text()[0].decode()
        finally:
            prometheus.close()
        assert f'service_name="{expected}"' in text and "unknown_service" not in text
