"""The LiveKit adapter on the real livekit-agents STT machinery, the real whisper engine and the
fake Deepgram on 127.0.0.1. No LiveKit server is needed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jiwer
import pytest
from livekit import rtc
from livekit.agents import APIConnectionError, APIError, APIStatusError, APITimeoutError, stt

import stt_core
from fakes.deepgram_api import KEY, FakeDeepgram
from fakes.local_engine import LocalEngine
from speech import FIXTURES, MAX_WER, PATIENT, REFERENCES, conversation, normalize, warm_whisper, wer
from stt_core import (
    AllProvidersFailed,
    Audio,
    BreakerPolicy,
    Capabilities,
    Chain,
    ConfigError,
    InvalidAudioError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RetryPolicy,
)
from stt_core.testing import FakeProvider
from stt_core_deepgram._provider import DeepgramProvider
from stt_core_livekit import STT, audio_to_frames, frames_to_audio, prewarm, to_livekit_error

# two_utterances.wav: good_morning, 1.5 s of silence, begin_meeting.
SCRIPT = [(0.0, 1.69, "Good morning everyone."), (3.19, 5.10, "Let us begin the meeting.")]


@pytest.fixture(scope="module")
def whisper() -> stt_core.Provider:
    return warm_whisper()


@pytest.fixture
async def deepgram(serve):  # type: ignore[no-untyped-def]
    fake = FakeDeepgram(utterances=list(SCRIPT))
    fake.url = await serve(fake.app())
    return fake


def deepgram_provider(fake: FakeDeepgram) -> DeepgramProvider:
    return DeepgramProvider(api_key=KEY, base_url=fake.url, timeout=2.0)


def livekit_frames(name: str) -> list[Any]:
    """A fixture as LiveKit delivers room audio: 48 kHz, stereo, 20 ms frames."""
    audio = Audio.from_file(FIXTURES / f"{name}.wav").to(sample_rate=48_000, channels=2)
    return audio_to_frames(audio, frame_ms=20)


async def push(stream: stt.RecognizeStream, frames: list[Any], *, pace: float = 0.002) -> None:
    """Real-time-sized frames, faster than real time; then the end of input."""
    for frame in frames:
        stream.push_frame(frame)
        await asyncio.sleep(pace)
    stream.end_input()


async def finals(stream: stt.RecognizeStream) -> tuple[list[stt.SpeechEvent], list[stt.SpeechEvent]]:
    events = [event async for event in stream]
    return [e for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT], events


# -- recognize -------------------------------------------------------------------------------------


async def test_recognize_livekit_frames_through_whisper(whisper: stt_core.Provider) -> None:
    adapter = STT(whisper, realtime_settings=PATIENT)
    references, hypotheses = [], []
    for name, text in REFERENCES.items():
        event = await adapter.recognize(livekit_frames(name))
        assert event.type == stt.SpeechEventType.FINAL_TRANSCRIPT
        references.append(normalize(text))
        hypotheses.append(normalize(event.alternatives[0].text))
    assert jiwer.wer(references, hypotheses) <= 0.12


async def test_recognize_gives_the_answer_the_chain_judged_with_its_confidence() -> None:
    doubted = FakeProvider(name="local", text="and if we have three", confidence=0.2)
    sure = FakeProvider(name="next", text="ni hao shi jie", confidence=0.93)
    event = await STT(Chain([doubted, sure])).recognize(livekit_frames("fox"))
    (best,) = event.alternatives
    assert (best.text, best.confidence, best.metadata["provider"]) == ("ni hao shi jie", 0.93, "next")


async def test_a_frame_too_short_or_no_frames_is_bad_audio_that_no_engine_is_sent(
    whisper: stt_core.Provider,
) -> None:
    cloud = FakeProvider(name="cloud")  # would take anything, an empty upload included
    adapter = STT(Chain([whisper, cloud]), realtime_settings=PATIENT)
    one_sample = rtc.AudioFrame(b"\x10\x00", 48_000, 1, 1)
    for frames in ([one_sample], []):
        with pytest.raises(APIStatusError) as refused:
            await adapter.recognize(frames)
        assert refused.value.retryable is False
    assert cloud.calls == []


def test_audio_to_frames_cuts_any_length_and_refuses_a_frame_of_no_sample() -> None:
    audio = Audio.from_file(FIXTURES / "fox.wav")
    frames = audio_to_frames(audio, frame_ms=20)
    assert {f.samples_per_channel for f in frames[:-1]} == {audio.sample_rate // 50}
    assert frames_to_audio(frames).samples.tobytes() == audio.to(sample_format="int16").samples.tobytes()
    for frame_ms in (0, -20):  # LiveKit's chunker would never return
        with pytest.raises(ValueError, match=f"frame_ms = {frame_ms} holds no sample"):
            audio_to_frames(audio, frame_ms=frame_ms)


async def test_metrics_name_the_engine_that_answered(whisper: stt_core.Provider) -> None:
    unavailable = FakeProvider(name="first", script=[ProviderUnavailable("no key", provider="first")])
    adapter = STT(Chain([unavailable, whisper]), realtime_settings=PATIENT)
    metrics: list[Any] = []
    adapter.on("metrics_collected", metrics.append)
    event = await adapter.recognize(livekit_frames("lights"))
    assert event.alternatives[0].metadata["provider"] == "whisper"
    assert (adapter.provider, metrics[0].metadata.model_provider) == ("whisper", "whisper")
    assert metrics[0].metadata.model_name == whisper.model
    assert metrics[0].audio_duration == pytest.approx(2.99, abs=0.02)


async def test_word_times_when_every_engine_gives_them(whisper: stt_core.Provider) -> None:
    adapter = STT(whisper, realtime_settings=PATIENT)
    assert adapter.capabilities.aligned_transcript == "word"
    words = (await adapter.recognize(livekit_frames("good_morning"))).alternatives[0].words
    assert words and [normalize(w) for w in words][:2] == ["good", "morning"]
    assert all(w.start_time <= w.end_time for w in words)  # type: ignore[operator]
    no_words = FakeProvider(name="plain", capabilities=stt_core.Capabilities())
    assert STT(Chain([no_words, whisper])).capabilities.aligned_transcript is False


def test_capabilities_follow_the_first_engine(whisper: stt_core.Provider) -> None:
    streaming = STT(Chain([DeepgramProvider(api_key="k"), whisper])).capabilities
    assert (streaming.streaming, streaming.interim_results) == (True, True)
    # A local first engine streams through stt_core.realtime (Silero on onnxruntime), with interims;
    # without it LiveKit's StreamAdapter and VAD cut utterances.
    assert (STT(whisper).capabilities.streaming, STT(whisper).capabilities.interim_results) == (True, True)
    assert STT(whisper, realtime=False).capabilities.streaming is False


@pytest.mark.parametrize(
    ("error", "kind", "retryable"),
    [
        (ProviderError("HTTP 503", provider="x", status_code=503, retryable=True), APIStatusError, True),
        (ProviderError("HTTP 429", provider="x", status_code=429, retryable=True, retry_after=2),
         APIStatusError, True),
        (ProviderError("reset", provider="x", retryable=True), APIConnectionError, True),
        (ProviderError("bad request", provider="x", status_code=422), APIStatusError, False),
        (ProviderTimeout("slow", provider="x"), APITimeoutError, True),
        (InvalidAudioError("empty"), APIStatusError, False),
        (ProviderUnavailable("no key", provider="x"), APIError, False),
        (ConfigError("bad key"), APIError, False),
        (AllProvidersFailed([("a", ProviderUnavailable("no key")), ("b", ProviderTimeout("slow"))]),
         APITimeoutError, True),
        (AllProvidersFailed([("a", ProviderUnavailable("no key"))]), APIError, False),
    ],
)
def test_errors_map_to_the_livekit_family(error: stt_core.STTError, kind: type, retryable: bool) -> None:
    mapped = to_livekit_error(error)
    assert type(mapped) is kind and mapped.retryable is retryable
    assert str(error) in str(mapped)


async def test_one_retry_layer_livekit_does_not_retry_what_the_chain_retried() -> None:
    failing = FakeProvider(name="a", script=[ProviderError("boom", retryable=True)] * 10)
    adapter = STT(Chain([failing], retry=RetryPolicy(attempts=2, initial_backoff=0.0, jitter=0)))
    with pytest.raises(APIConnectionError, match="boom"):
        await adapter.recognize(livekit_frames("lights"))
    assert len(failing.calls) == 2  # the chain's two attempts, and no LiveKit retries on top


# -- streaming -------------------------------------------------------------------------------------


async def test_stream_gives_each_utterance_in_order_with_usage_metrics(
    deepgram: FakeDeepgram, whisper: stt_core.Provider
) -> None:
    adapter = STT(Chain([deepgram_provider(deepgram), whisper]), realtime_settings=PATIENT)
    metrics: list[Any] = []
    adapter.on("metrics_collected", metrics.append)
    stream = adapter.stream()
    pusher = asyncio.create_task(push(stream, livekit_frames("two_utterances")))
    final, events = await finals(stream)
    await pusher
    assert [e.alternatives[0].text for e in final] == [text for _, _, text in SCRIPT]
    kinds = [e.type for e in events if e.type != stt.SpeechEventType.RECOGNITION_USAGE]
    assert kinds[:4] == [stt.SpeechEventType.START_OF_SPEECH, stt.SpeechEventType.INTERIM_TRANSCRIPT,
                         stt.SpeechEventType.FINAL_TRANSCRIPT, stt.SpeechEventType.END_OF_SPEECH]
    usage = [e.recognition_usage.audio_duration for e in events if e.recognition_usage]
    assert sum(usage) == pytest.approx(5.1, abs=0.05)
    streamed = [m for m in metrics if m.streamed]
    assert streamed and {m.metadata.model_provider for m in streamed} == {"deepgram"}


async def test_stream_failover_mid_utterance_still_delivers_it(
    deepgram: FakeDeepgram, whisper: stt_core.Provider
) -> None:
    deepgram.drop_after = 4.3  # inside the second utterance, after its interim result
    adapter = STT(Chain([deepgram_provider(deepgram), whisper], retry=RetryPolicy(attempts=1)),
                  realtime_settings=PATIENT)
    stream = adapter.stream()
    pusher = asyncio.create_task(push(stream, livekit_frames("two_utterances")))
    final, _ = await finals(stream)
    await pusher
    assert [e.alternatives[0].metadata["provider"] for e in final] == ["deepgram", "whisper"]
    assert normalize(" ".join(e.alternatives[0].text for e in final)) == \
        "good morning everyone let us begin the meeting"
    assert adapter.provider == "whisper"


async def test_flush_ends_a_segment_so_a_batch_engine_answers_per_utterance(
    whisper: stt_core.Provider,
) -> None:
    """A stream whose engines do not stream natively (here: whisper) still answers each turn
    when LiveKit flushes, not only at the end of the call."""
    adapter = STT(whisper, realtime_settings=PATIENT)
    stream = adapter.stream()
    for frame in livekit_frames("good_morning"):
        stream.push_frame(frame)
    stream.flush()
    first = await asyncio.wait_for(anext(_typed(stream, stt.SpeechEventType.FINAL_TRANSCRIPT)), 60)
    assert normalize(first.alternatives[0].text) == "good morning everyone"
    for frame in livekit_frames("begin_meeting"):
        stream.push_frame(frame)
    stream.end_input()
    rest = [e async for e in _typed(stream, stt.SpeechEventType.FINAL_TRANSCRIPT)]
    assert [normalize(e.alternatives[0].text) for e in rest] == ["let us begin the meeting"]
    assert rest[0].alternatives[0].start_time >= 1.6  # on the stream's clock, after the first turn


async def _typed(stream: stt.RecognizeStream, kind: stt.SpeechEventType):  # type: ignore[no-untyped-def]
    async for event in stream:
        if event.type == kind:
            yield event


async def test_our_chain_keeps_what_livekits_fallback_adapter_loses(
    deepgram: FakeDeepgram, whisper: stt_core.Provider
) -> None:
    """The same failing engine (Deepgram, dropping its socket inside the second utterance) and the
    same fallback (whisper), input pushed faster than real time: LiveKit's FallbackAdapter does not
    replay what the failed stream had taken; the stt-core chain does."""
    from livekit.plugins import silero

    deepgram.drop_after = 4.3
    theirs = stt.FallbackAdapter([STT(deepgram_provider(deepgram)), STT(whisper, realtime_settings=PATIENT)],
                                 vad=silero.VAD.load())
    stream = theirs.stream()
    pusher = asyncio.create_task(push(stream, livekit_frames("two_utterances")))
    their_finals, _ = await finals(stream)
    await pusher
    their_words = normalize(" ".join(e.alternatives[0].text for e in their_finals)).split()

    deepgram.drop_after, deepgram.streamed = 4.3, bytearray()
    ours = STT(Chain([deepgram_provider(deepgram), whisper], retry=RetryPolicy(attempts=1)),
               realtime_settings=PATIENT)
    stream = ours.stream()
    pusher = asyncio.create_task(push(stream, livekit_frames("two_utterances")))
    our_finals, _ = await finals(stream)
    await pusher
    our_words = normalize(" ".join(e.alternatives[0].text for e in our_finals)).split()

    assert our_words == ["good", "morning", "everyone", "let", "us", "begin", "the", "meeting"]
    assert "meeting" not in their_words  # the second utterance was lost in LiveKit's fail-over


# -- worker process --------------------------------------------------------------------------------


class Proc:
    """What prewarm uses of LiveKit's JobProcess."""

    def __init__(self) -> None:
        self.userdata: dict[str, Any] = {}


def test_prewarm_loads_once_per_process_and_the_job_finds_it(tmp_path: Path) -> None:
    from stt_core_whisper import _provider as whisper_module

    config = tmp_path / "stt.toml"
    config.write_text('chain = ["whisper"]\n')
    proc = Proc()
    chain = prewarm(proc, config)
    loaded = dict(whisper_module._models)
    assert loaded and chain.providers[0]._whisper is not None  # type: ignore[attr-defined]
    adapter = STT.from_process(proc)
    assert adapter.chain is chain
    prewarm(Proc(), config)  # another setup call in the same process: no second model
    assert whisper_module._models == loaded


def test_importing_the_adapter_imports_no_engine() -> None:
    engines = ("torch", "funasr", "faster_whisper", "ctranslate2")
    code = f"import sys, stt_core_livekit; print(sorted(m for m in {engines!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_example_agent_sets_up_a_worker_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/livekit_agent.py: its setup function and stt.toml, as a worker would run them."""
    import importlib.util

    from livekit.agents.inference_runner import _InferenceRunner

    from stt_core_livekit import SharedEngine, SharedEngineRunner, prewarmed_chain

    for name in ("STT_CONFIG", "STT_LIVEKIT__SHARED_INFERENCE"):  # the example sets them: restored after
        monkeypatch.setenv(name, "")  # (delenv alone records nothing for an unset name, and they leaked
        monkeypatch.delenv(name)  # into later tests: test_cli's bad stt.toml was never read)
    monkeypatch.setattr(_InferenceRunner, "registered_runners", {})

    path = Path(__file__).parents[2] / "examples" / "livekit_agent.py"
    spec = importlib.util.spec_from_file_location("livekit_agent_example", path)
    assert spec and spec.loader
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    proc = Proc()
    example.setup(proc)
    chain = prewarmed_chain(proc)
    assert chain is not None and [p.name for p in chain.providers] == ["funasr", "groq", "whisper"]
    assert example.voice_models() == {} or os.environ.get("LIVEKIT_API_KEY")  # transcribe-only offline
    # The shared path: the runner registered at import, FunASR a link to it, nothing loaded here.
    assert _InferenceRunner.registered_runners == {SharedEngineRunner.INFERENCE_METHOD: SharedEngineRunner}
    assert isinstance(chain.providers[0], SharedEngine)
    assert "vad" in proc.userdata
    assert STT.from_process(proc).chain is chain


@pytest.mark.slow
def test_the_example_agent_runs_offline_on_a_file(tmp_path: Path) -> None:
    """`python examples/livekit_agent.py file AUDIO`: no server, no microphone, no keys; the file
    through the example's chain as a session hears it (stt-core's real time: whisper), in real time."""
    example = Path(__file__).parents[2] / "examples" / "livekit_agent.py"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STT_", "LIVEKIT_", "GROQ_", "DEEPGRAM_")) and k != "AGENT_LLM"}
    done = subprocess.run([sys.executable, str(example), "file", str(FIXTURES / "lights.wav")],
                          capture_output=True, text=True, cwd=tmp_path, env={**env, "HF_HUB_OFFLINE": "1"},
                          timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    events = done.stdout.splitlines()
    assert events[0] == "START_OF_SPEECH" and "END_OF_SPEECH" in events
    [final] = [e for e in events if e.startswith("FINAL_TRANSCRIPT: ")]
    heard = final.removeprefix("FINAL_TRANSCRIPT: ").removesuffix(" (stt: whisper)")
    assert final.endswith("(stt: whisper)")  # FunASR's model is not downloaded, Groq has no key
    assert wer("lights", heard) <= MAX_WER, heard
    assert "Traceback" not in done.stderr


def test_the_example_agents_help_lists_the_file_mode_and_livekits_commands() -> None:
    example = Path(__file__).parents[2] / "examples" / "livekit_agent.py"
    done = subprocess.run([sys.executable, str(example), "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "100"}, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: python examples/livekit_agent.py file AUDIO\n"), done.stdout
    assert all(command in done.stdout for command in ("console", "start", "dev"))  # and LiveKit's own


# -- observability ---------------------------------------------------------------------------------


async def test_the_chains_spans_are_children_of_livekits_current_span(whisper: stt_core.Provider) -> None:
    from livekit.agents.telemetry import tracer as livekit_tracer
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    livekit_tracer.set_provider(provider)  # LiveKit's own spans, as set_tracer_provider() does
    stt_core.telemetry.configure(tracer_provider=provider)
    try:
        with livekit_tracer.start_as_current_span("user_turn") as turn:
            await STT(whisper, realtime_settings=PATIENT).recognize(livekit_frames("lights"))
            # its task starts here, in LiveKit's span
            stream = STT(whisper, realtime_settings=PATIENT).stream()
            await push(stream, livekit_frames("lights"))
            finals_, _ = await finals(stream)
    finally:
        stt_core.telemetry.configure()
        livekit_tracer.set_provider(trace.get_tracer_provider())
    assert finals_
    ours = [s for s in spans.get_finished_spans() if s.name in ("speech_to_text", "speech_to_text stream")]
    assert {s.name for s in ours} == {"speech_to_text", "speech_to_text stream"}
    parents = {s.name: s.parent.span_id if s.parent else None for s in ours}
    assert parents["speech_to_text stream"] == turn.get_span_context().span_id
    recognised = next(s for s in ours if s.name == "speech_to_text" and s.parent
                      and s.parent.span_id == turn.get_span_context().span_id)
    assert recognised.attributes is not None and recognised.attributes["gen_ai.provider.name"] == "whisper"


async def test_an_utterance_no_engine_transcribes_is_a_recoverable_error_and_the_stream_goes_on() -> None:
    # LiveKit counts unrecoverable STT errors and closes the AgentSession at the fourth: one lost
    # utterance must be a recoverable error, and the utterances after it must still come.
    audio, spans = conversation(("fox", "lights", "weather"))
    heard = audio.to(sample_format="int16")  # what LiveKit's int16 frames carry, exactly
    engine = LocalEngine(heard, dict(zip(("fox", "lights", "weather"), spans, strict=True)), fails=["lights"])
    adapter = STT(Chain([engine]))
    assert adapter.realtime
    errors: list[Any] = []
    adapter.on("error", errors.append)
    stream = adapter.stream()
    pusher = asyncio.create_task(push(stream, audio_to_frames(heard, frame_ms=20), pace=0.005))
    final, _ = await finals(stream)
    await pusher
    assert [e.alternatives[0].text for e in final] == ["fox", "weather"]
    (error,) = errors
    assert error.recoverable and "crashed on lights" in str(error.error)


async def test_an_empty_frame_in_a_stream_is_passed_over() -> None:
    # It ended the stream with stt-core's InvalidAudioError ("audio is empty"), and what came after was lost.
    audio, spans = conversation(("fox", "weather"))
    heard = audio.to(sample_format="int16")
    engine = LocalEngine(heard, dict(zip(("fox", "weather"), spans, strict=True)))
    adapter = STT(Chain([engine]))
    errors: list[Any] = []
    adapter.on("error", errors.append)
    frames = audio_to_frames(heard, frame_ms=20)
    frames.insert(len(frames) // 3, rtc.AudioFrame(b"", heard.sample_rate, 1, 0))
    stream = adapter.stream()
    pusher = asyncio.create_task(push(stream, frames, pace=0.005))
    final, _ = await finals(stream)
    await pusher
    assert [e.alternatives[0].text for e in final] == ["fox", "weather"] and not errors


async def test_a_stream_the_whole_chain_failed_is_said_at_once_and_the_audio_after_it_is_heard() -> None:
    # A natively streaming engine, alone in its chain, that drops every stream after 5 chunks: each
    # drop is a recoverable error when it happens (it was said only at the end of the input, and the
    # audio after it queued for no one), and a new stream hears the audio that follows.
    engine = FakeProvider(name="streamer", capabilities=Capabilities(streaming=True), fail_stream_after=5,
                          final_every=2, text="words")
    adapter = STT(Chain([engine], retry=RetryPolicy(attempts=1), breaker=BreakerPolicy(failures=100)))
    assert adapter._hearing.mode == "stream"
    said: list[str] = []
    adapter.on("error", lambda e: said.append("error" if e.recoverable else "unrecoverable"))
    stream = adapter.stream()
    pusher = asyncio.create_task(push(stream, audio_to_frames(Audio.silence(3.0), frame_ms=20), pace=0.02))
    async for event in stream:
        if event.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
            said.append("final" if not pusher.done() else "final after the input ended")
    await pusher
    assert said.count("error") >= 2 and "unrecoverable" not in said, said
    assert "final" in said[said.index("error"):], said  # heard on, while the input still came
    assert len(engine.streams) >= 2


async def test_audio_the_chain_refuses_ends_the_stream_with_one_unrecoverable_error() -> None:
    # A new stream would be refused too: an error every second, for ever. So the stream ends, and
    # LiveKit hears why once, as an error that no retry can mend.
    class Refuses(FakeProvider):
        async def _stream(self, audio, *, language):  # type: ignore[no-untyped-def]
            async for _ in audio:
                raise InvalidAudioError("audio is clipped beyond repair")
            yield  # pragma: no cover

    engine = Refuses(name="streamer", capabilities=Capabilities(streaming=True))
    adapter = STT(Chain([engine], retry=RetryPolicy(attempts=1)))
    said: list[Any] = []
    adapter.on("error", said.append)
    stream = adapter.stream()
    pusher = asyncio.create_task(push(stream, audio_to_frames(Audio.silence(3.0), frame_ms=20), pace=0.01))
    with pytest.raises(APIStatusError, match="clipped beyond repair") as raised:
        async for _ in stream:
            pass
    pusher.cancel()
    assert raised.value.status_code == 400 and not raised.value.retryable
    assert [e.recoverable for e in said] == [False]


async def test_a_language_no_engine_takes_ends_the_stream_with_one_unrecoverable_error() -> None:
    # The chain was judged for no language, found an engine that could serve, and the stream began
    # again every second: a "recoverable" error each time, for ever.
    english = Capabilities(streaming=True, languages=frozenset({"en"}))
    engine = FakeProvider(name="streamer", capabilities=english)
    adapter = STT(Chain([engine], retry=RetryPolicy(attempts=1)), language="de")
    said: list[Any] = []
    adapter.on("error", said.append)
    stream = adapter.stream()
    pusher = asyncio.create_task(push(stream, audio_to_frames(Audio.silence(3.0), frame_ms=20), pace=0.01))
    with pytest.raises(APIError, match="does not support language 'de'"):
        async for _ in stream:
            pass
    pusher.cancel()
    assert [e.recoverable for e in said] == [False]
