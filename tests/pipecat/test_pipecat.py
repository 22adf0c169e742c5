"""The Pipecat adapter in Pipecat's own test pipeline (``pipecat.tests.utils.run_test``), on the
real whisper engine, the real groq and deepgram SDKs against their fakes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pipecat.frames.frames import (
    CancelFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    MetricsFrame,
    STTMetadataFrame,
    STTUpdateSettingsFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import ProcessingMetricsData, STTUsageMetricsData, TTFBMetricsData
from pipecat.pipeline.worker import PipelineParams
from pipecat.services.settings import STTSettings
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.transcriptions.language import Language

import speech
import stt_core
from fakes.deepgram_api import KEY as DEEPGRAM_KEY
from fakes.deepgram_api import FakeDeepgram
from fakes.groq_api import KEY as GROQ_KEY
from fakes.groq_api import FakeGroq
from fakes.local_engine import LocalEngine
from speech import FIXTURES, MAX_WER, REFERENCES, TINY_SENSEVOICE, conversation, normalize, warm_whisper, wer
from stt_core import Audio, Chain, RetryPolicy
from stt_core.testing import FakeProvider
from stt_core_deepgram._provider import DeepgramProvider
from stt_core_funasr._provider import FunASRProvider
from stt_core_groq._provider import GroqProvider
from stt_core_pipecat import ChainSTTService

RATE = 16_000
STOP_SECS = 0.2  # Pipecat's VADParams default
PATIENT = speech.PATIENT.model_copy(update={"min_silence": STOP_SECS})  # as the service's default


@pytest.fixture(scope="module")
def whisper() -> stt_core.Provider:
    return warm_whisper()


@pytest.fixture
async def groq(serve):  # type: ignore[no-untyped-def]
    fake = FakeGroq(text="Please open the door and turn on the lights.")
    fake.url = await serve(fake.app())
    return fake


def groq_engine(fake: FakeGroq, key: str = GROQ_KEY) -> GroqProvider:
    return GroqProvider(api_key=key, base_url=fake.url, timeout=5.0)


def audio_frames(name: str, *, frame_ms: int = 20) -> list[InputAudioRawFrame]:
    """A fixture as a Pipecat transport delivers it: 16 kHz mono int16 frames."""
    pcm = Audio.from_file(FIXTURES / f"{name}.wav").to(RATE, 1, "int16").samples.reshape(-1)
    step = RATE * frame_ms // 1000
    return [InputAudioRawFrame(pcm[i:i + step].tobytes(), RATE, 1) for i in range(0, len(pcm), step)]


def silence(seconds: float) -> list[InputAudioRawFrame]:
    return [InputAudioRawFrame(bytes(RATE * 2 // 50), RATE, 1) for _ in range(round(seconds * 50))]


def spoken(*names: str) -> list[Frame]:
    """Each clip as the pipeline's VAD would frame it: silence, start, the speech, stop."""
    frames: list[Frame] = []
    for name in names:
        frames += [*silence(0.3), VADUserStartedSpeakingFrame(start_secs=0.2), *audio_frames(name),
                   *silence(STOP_SECS), VADUserStoppedSpeakingFrame(stop_secs=STOP_SECS)]
    return frames


def of(frames: Sequence[Frame], kind: type[Frame]) -> list[Any]:
    return [f for f in frames if isinstance(f, kind)]


async def test_segmented_finals_carry_the_fixtures_words_and_pipecats_metrics(
    whisper: stt_core.Provider,
) -> None:
    service = ChainSTTService(whisper, realtime=False, realtime_settings=PATIENT)
    assert service.mode == "segmented"
    down, up = await run_test(service, frames_to_send=spoken("lights", "weather"),
                              pipeline_params=PipelineParams(enable_metrics=True, enable_usage_metrics=True))
    finals = of(down, TranscriptionFrame)
    assert len(finals) == 2 and not of(up, ErrorFrame)
    for frame, name in zip(finals, ["lights", "weather"], strict=True):
        assert wer(REFERENCES[name], frame.text) <= MAX_WER, frame.text
        assert frame.finalized and frame.result.provider == "whisper"
        assert frame.language is not None and frame.language.value == "en"
    data = [d for m in of(down, MetricsFrame) for d in m.data]
    assert of(data, TTFBMetricsData) and of(data, ProcessingMetricsData)
    usage = sum(d.value.audio_seconds for d in of(data, STTUsageMetricsData))
    speech = sum(Audio.from_file(FIXTURES / f"{n}.wav").duration for n in ("lights", "weather"))
    assert usage == pytest.approx(speech + 2 * (0.3 + STOP_SECS), abs=0.05)  # with the silence each side


async def test_segmented_behind_pipecats_own_vad_keeps_each_first_word(whisper: stt_core.Provider) -> None:
    """As a transport delivers it, with no VAD frames of ours: Pipecat's Silero VAD says speech
    started 0.7-0.8 s after it did on these clips, and a 0.5 s pre-roll lost the first words of
    each ("quick round-fark jump over the lazy dog", "starting to stand in the morning")."""
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.processors.audio.vad_processor import VADProcessor

    names = ("fox", "meeting", "chairs")
    service = ChainSTTService(whisper, realtime=False, realtime_settings=PATIENT)
    pipeline = Pipeline([VADProcessor(vad_analyzer=SileroVADAnalyzer()), service])
    frames = [frame for name in names for frame in (*audio_frames(name), *silence(1.0))]
    down, up = await run_test(pipeline, frames_to_send=frames)
    finals = [f.text for f in of(down, TranscriptionFrame)]
    assert len(finals) == len(names) and not of(up, ErrorFrame), finals
    for text, name in zip(finals, names, strict=True):
        assert wer(name, text) <= MAX_WER, text


async def test_realtime_pushes_interims_while_the_user_speaks_then_the_final() -> None:
    # The tiny SenseVoice fixture: fast enough at every length for interims (whisper tiny.en on 2
    # cores gets only the first, as its speed allows; docs/benchmarks.md).
    service = ChainSTTService(FunASRProvider(model=str(TINY_SENSEVOICE), vad="none"))
    assert service.mode == "realtime"  # a local first engine and Silero's model installed
    frames: list[Frame] = [*silence(0.3), *audio_frames("chairs"), *silence(0.6)]
    paced = [item for frame in frames for item in (frame, SleepFrame(sleep=0.02))]  # real time
    down, up = await run_test(service, frames_to_send=paced)
    finals, interims = of(down, TranscriptionFrame), of(down, InterimTranscriptionFrame)
    assert [f.text for f in finals] == ["We need 25 chairs for the party."]
    assert interims, "no interim while the user spoke"
    assert down.index(interims[0]) < down.index(finals[0])
    assert not of(up, ErrorFrame)


async def test_a_first_engine_answering_500_is_answered_by_the_next_with_no_error_frame(
    groq: FakeGroq, whisper: stt_core.Provider
) -> None:
    groq.faults.extend(["500"] * 10)
    chain = Chain([groq_engine(groq), whisper], retry=RetryPolicy(attempts=1))
    service = ChainSTTService(chain, realtime=False, realtime_settings=PATIENT)
    down, up = await run_test(service, frames_to_send=spoken("lights"))
    (final,) = of(down, TranscriptionFrame)
    assert final.result.provider == "whisper" and wer("lights", final.text) <= MAX_WER
    assert groq.attempts >= 1
    assert not of(up, ErrorFrame) and service.is_usable


async def test_when_every_engine_fails_an_error_frame_goes_up_and_the_pipeline_still_ends(
    groq: FakeGroq,
) -> None:
    groq.down = True  # every request answers 500
    service = ChainSTTService(Chain([groq_engine(groq)], retry=RetryPolicy(attempts=1)))
    assert service.mode == "segmented"  # a cloud engine: the pipeline's VAD cuts
    down, up = await asyncio.wait_for(run_test(service, frames_to_send=spoken("lights", "lights")), 60)
    errors = of(up, ErrorFrame)
    assert len(errors) == 2 and "500" in errors[0].error and not of(down, TranscriptionFrame)
    assert service.is_usable  # a 500 may pass: a ServiceSwitcher above should not give up on it


async def test_a_refused_key_on_every_engine_marks_the_service_unusable(groq: FakeGroq) -> None:
    service = ChainSTTService(Chain([groq_engine(groq, key="gsk_wrong_key_0000000000")]))
    _, up = await run_test(service, frames_to_send=spoken("lights"))
    (error,) = of(up, ErrorFrame)
    assert not service.is_usable and "gsk_wrong" not in error.error  # no secret in the error


async def test_a_service_switcher_above_fails_over_once_ours_can_never_serve(
    groq: FakeGroq, whisper: stt_core.Provider
) -> None:
    from pipecat.pipeline.service_switcher import ServiceSwitcher, ServiceSwitcherStrategyFailover

    refused = ChainSTTService(Chain([groq_engine(groq, key="gsk_wrong_key_0000000000")]))
    backup = ChainSTTService(whisper, realtime=False, realtime_settings=PATIENT)
    switcher = ServiceSwitcher(services=[refused, backup], strategy_type=ServiceSwitcherStrategyFailover)
    down, _ = await run_test(switcher, frames_to_send=[*spoken("lights"), SleepFrame(sleep=0.5),
                                                       *spoken("weather")])
    (final,) = of(down, TranscriptionFrame)
    assert final.result.provider == "whisper" and wer("weather", final.text) <= MAX_WER
    assert switcher.strategy.active_service is backup and not refused.is_usable


async def test_a_refused_key_on_one_engine_leaves_it_usable(
    groq: FakeGroq, whisper: stt_core.Provider
) -> None:
    chain = Chain([groq_engine(groq, key="gsk_wrong_key_0000000000"), whisper])
    service = ChainSTTService(chain, realtime=False, realtime_settings=PATIENT)
    down, up = await run_test(service, frames_to_send=spoken("lights", "lights"))
    assert [f.result.provider for f in of(down, TranscriptionFrame)] == ["whisper", "whisper"]
    assert service.is_usable and not of(up, ErrorFrame)


SCRIPT = [(0.0, 1.69, "Good morning everyone."), (3.19, 5.10, "Let us begin the meeting.")]


async def test_a_deepgram_stream_dying_mid_utterance_loses_no_word(serve, whisper: stt_core.Provider) -> None:  # type: ignore[no-untyped-def]
    deepgram = FakeDeepgram(utterances=list(SCRIPT), drop_after=4.3)  # inside the second utterance
    deepgram.url = await serve(deepgram.app())
    engine = DeepgramProvider(api_key=DEEPGRAM_KEY, base_url=deepgram.url, timeout=2.0)
    service = ChainSTTService(Chain([engine, whisper], retry=RetryPolicy(attempts=1)),
                              realtime_settings=PATIENT)
    assert service.mode == "stream"
    frames = [item for frame in audio_frames("two_utterances") for item in (frame, SleepFrame(sleep=0.002))]
    down, up = await run_test(service, frames_to_send=frames)
    finals = of(down, TranscriptionFrame)
    assert [f.result.provider for f in finals] == ["deepgram", "whisper"]
    assert normalize(" ".join(f.text for f in finals)) == "good morning everyone let us begin the meeting"
    assert of(down, InterimTranscriptionFrame) and not of(up, ErrorFrame)


async def test_a_stream_every_engine_failed_is_reported_not_retried_per_frame(serve) -> None:  # type: ignore[no-untyped-def]
    deepgram = FakeDeepgram(utterances=list(SCRIPT), drop_after=1.0)  # every socket dies at once
    deepgram.url = await serve(deepgram.app())
    engine = DeepgramProvider(api_key=DEEPGRAM_KEY, base_url=deepgram.url, timeout=2.0)
    service = ChainSTTService(Chain([engine], retry=RetryPolicy(attempts=1)))
    frames = [item for frame in audio_frames("two_utterances") for item in (frame, SleepFrame(sleep=0.01))]
    _, up = await asyncio.wait_for(run_test(service, frames_to_send=frames), 60)
    errors = of(up, ErrorFrame)
    assert 1 <= len(errors) <= 4, len(errors)  # about one a second of audio, not one per frame
    assert service.is_usable


async def test_a_language_no_engine_takes_marks_the_service_unusable_at_once() -> None:
    # Judged for no language, the chain looked usable: an ErrorFrame each second, for ever.
    english = stt_core.Capabilities(streaming=True, languages=frozenset({"en"}))
    service = ChainSTTService(Chain([FakeProvider(name="streamer", capabilities=english)]), language="de")
    frames = [item for frame in silence(3.0) for item in (frame, SleepFrame(sleep=0.01))]
    _, up = await asyncio.wait_for(run_test(service, frames_to_send=frames), 60)
    (error,) = of(up, ErrorFrame)
    assert "does not support language 'de'" in error.error and not service.is_usable


async def test_a_settings_update_that_makes_the_service_usable_hears_again() -> None:
    # Pipecat gives a service another chance on any settings update; the stream loop had ended.
    english = stt_core.Capabilities(streaming=True, languages=frozenset({"en"}))
    service = ChainSTTService(Chain([FakeProvider(name="streamer", capabilities=english, final_every=5)]),
                              language="de")
    paced = [item for frame in silence(1.0) for item in (frame, SleepFrame(sleep=0.01))]
    frames = [*paced, STTUpdateSettingsFrame(delta=STTSettings(language=Language.EN)), *paced, *paced]
    down, up = await asyncio.wait_for(run_test(service, frames_to_send=frames), 60)
    assert len(of(up, ErrorFrame)) == 1 and service.is_usable
    assert [f.text for f in of(down, TranscriptionFrame)][:1] == ["hello world"]


async def test_cancel_stops_recognition_in_flight_and_leaves_no_task() -> None:
    slow = FakeProvider(name="slow", delay=30.0, capabilities=stt_core.Capabilities(offline=False))
    service = ChainSTTService(slow)
    before = asyncio.all_tasks()
    frames = [*spoken("lights"), SleepFrame(sleep=0.3), CancelFrame()]
    down, _ = await asyncio.wait_for(run_test(service, frames_to_send=frames, send_end_frame=False), 20)
    assert len(slow.calls) == 1 and not of(down, TranscriptionFrame)  # it was in flight, and stopped
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    assert left == [], left


async def test_an_end_transcribes_what_is_queued(groq: FakeGroq) -> None:
    groq.latency = 0.5  # each answer takes a while: the end comes while both utterances are queued
    service = ChainSTTService(Chain([groq_engine(groq)]))
    down, _ = await run_test(service, frames_to_send=spoken("lights", "lights"))
    assert [f.text for f in of(down, TranscriptionFrame)] == [groq.text] * 2


async def test_ttfs_p99_latency_is_measured_and_broadcast(groq: FakeGroq) -> None:
    service = ChainSTTService(Chain([groq_engine(groq)]))
    frames: list[Frame] = []
    for _ in range(6):
        frames += [*spoken("lights"), SleepFrame(sleep=0.3)]  # each final before the next utterance
    down, _ = await run_test(service, frames_to_send=frames)
    assert len(service.measured_ttfs) == 6
    broadcast = [f.ttfs_p99_latency for f in of(down, STTMetadataFrame)]
    assert broadcast[0] == 1.0  # Pipecat's default, until measured
    assert broadcast[-1] == pytest.approx(max(service.measured_ttfs)) != 1.0  # the p99 of 6: their max


async def test_from_config_builds_the_declared_chain(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "stt.toml").write_text('chain = ["whisper"]\n')
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("STT_")]:  # ./stt.toml, not another test's
        monkeypatch.delenv(name)
    service = ChainSTTService.from_config()
    assert [p.name for p in service.chain.providers] == ["whisper"]
    assert service.mode == "realtime" and service.realtime_settings.min_silence == STOP_SECS


def test_the_example_runs_offline_on_a_file() -> None:
    """`python examples/pipecat_agent.py file AUDIO`: no microphone, no keys, no downloaded model
    (FunASR cannot serve, Groq has no key: the bundled whisper answers)."""
    example = Path(__file__).parents[2] / "examples" / "pipecat_agent.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "GROQ_"))}
    done = subprocess.run([sys.executable, str(example), "file", str(FIXTURES / "lights.wav")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    (final,) = [line for line in done.stdout.splitlines() if line.startswith("final: ")]
    assert final.endswith("(stt: whisper)") and wer("lights", final[len("final: "):-len(" (stt: whisper)")]) \
        <= MAX_WER, final


def test_the_example_exits_1_and_says_why_when_every_engine_failed(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "examples" / "pipecat_agent.py"
    (tmp_path / "stt.toml").write_text('chain = ["groq"]\n')  # and no key: no engine can answer
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "GROQ_"))}
    done = subprocess.run([sys.executable, str(example), "file", str(FIXTURES / "lights.wav")],
                          capture_output=True, text=True, timeout=300,
                          env={**env, "STT_CONFIG": str(tmp_path / "stt.toml")})
    assert done.returncode == 1, done.stderr[-2000:]
    assert "error: ChainSTTService#0: no provider could transcribe the audio (groq: no API key" in done.stderr
    assert "set GROQ_API_KEY" in done.stderr  # Pipecat's own redaction took "key: set" for a secret
    assert not [line for line in done.stdout.splitlines() if line.startswith("final: ")]


async def test_the_chains_spans_are_children_of_pipecats_turn_span(groq: FakeGroq) -> None:
    """With Pipecat's tracing on (``PipelineWorker(enable_tracing=True)``), a request's span goes
    under Pipecat's own turn span. Pipecat traces through the global tracer provider, so this sets
    it, with a processor that records only during this test."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from pipecat.frames.frames import EndFrame, UserStartedSpeakingFrame, UserStoppedSpeakingFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineWorker
    from pipecat.workers.runner import WorkerRunner

    class WhileOn(SpanProcessor):
        on = True

        def __init__(self, inner: SpanProcessor) -> None:
            self.inner = inner

        def on_end(self, span: Any) -> None:
            if self.on:
                self.inner.on_end(span)

    spans = InMemorySpanExporter()
    recording = WhileOn(SimpleSpanProcessor(spans))
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "another test set a tracer provider of its own"
    provider.add_span_processor(recording)
    try:
        service = ChainSTTService(Chain([groq_engine(groq)]))
        worker = PipelineWorker(Pipeline([service]), enable_tracing=True, cancel_on_idle_timeout=False)
        @worker.event_handler("on_pipeline_started")
        async def _started(worker: PipelineWorker, frame: Frame) -> None:
            await worker.queue_frame(UserStartedSpeakingFrame())
            await asyncio.sleep(0.3)  # Pipecat's observers start the turn off the frame path
            for item in spoken("lights"):
                await worker.queue_frame(item)
            await asyncio.sleep(1.0)  # Pipecat ends the user's turn once the transcript is in
            await worker.queue_frame(UserStoppedSpeakingFrame())
            await worker.queue_frame(EndFrame())

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await asyncio.wait_for(runner.run(), 30)
    finally:
        recording.on = False
    finished = spans.get_finished_spans()
    turns = {s.context.span_id: s for s in finished if s.name == "turn"}
    request = next(s for s in finished if s.name == "speech_to_text")
    assert turns and request.parent is not None and request.parent.span_id in turns


def pipecat_frames(audio: Audio) -> list[Frame]:
    pcm = audio.to(RATE, 1, "int16").samples.reshape(-1)
    step = RATE // 50
    return [InputAudioRawFrame(pcm[i:i + step].tobytes(), RATE, 1) for i in range(0, len(pcm), step)]


def local_engine(clips: tuple[str, ...], **faults: Any) -> tuple[Audio, LocalEngine]:
    audio, spans = conversation(clips)
    heard = audio.to(sample_format="int16")  # what Pipecat's int16 frames carry, exactly
    return heard, LocalEngine(heard, dict(zip(clips, spans, strict=True)), **faults)


async def test_an_utterance_no_engine_transcribes_is_one_error_frame_and_the_next_are_heard() -> None:
    heard, engine = local_engine(("fox", "lights", "weather"), fails=["lights"])
    service = ChainSTTService(Chain([engine]))
    assert service.mode == "realtime"
    down, up = await asyncio.wait_for(run_test(service, frames_to_send=pipecat_frames(heard)), 60)
    assert [f.text for f in of(down, TranscriptionFrame)] == ["fox", "weather"]
    (error,) = of(up, ErrorFrame)
    assert "crashed on lights" in error.error and service.is_usable


async def test_the_pipelines_end_waits_for_a_hung_engine_at_most_drain_timeout() -> None:
    heard, engine = local_engine(("fox", "lights"), hangs=["lights"])
    settings = stt_core.RealtimeSettings(min_silence=STOP_SECS, drain_timeout=1.0)
    service = ChainSTTService(Chain([engine]), realtime_settings=settings)
    loop = asyncio.get_running_loop()
    started = loop.time()
    down, up = await asyncio.wait_for(run_test(service, frames_to_send=pipecat_frames(heard)), 60)
    assert loop.time() - started < 10  # was 175 s with the chain's defaults: attempts of 60 s each
    assert [f.text for f in of(down, TranscriptionFrame)] == ["fox"]
    (error,) = of(up, ErrorFrame)
    assert "drain_timeout" in error.error


async def test_a_segmented_pipelines_end_waits_for_a_hung_engine_at_most_drain_timeout() -> None:
    async def hang(audio: Audio) -> str:
        await asyncio.sleep(3600)
        return ""

    engine = FakeProvider(name="cloud", script=["the quick brown fox", hang],
                          capabilities=stt_core.Capabilities())
    settings = stt_core.RealtimeSettings(drain_timeout=1.0)
    service = ChainSTTService(Chain([engine]), realtime_settings=settings)
    assert service.mode == "segmented"
    loop = asyncio.get_running_loop()
    started = loop.time()
    down, up = await asyncio.wait_for(run_test(service, frames_to_send=spoken("fox", "lights")), 60)
    assert loop.time() - started < 10
    assert [f.text for f in of(down, TranscriptionFrame)] == ["the quick brown fox"]
    (error,) = of(up, ErrorFrame)
    assert "drain_timeout" in error.error
