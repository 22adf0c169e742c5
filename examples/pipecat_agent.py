"""A Pipecat pipeline whose speech-to-text is an stt-core chain from stt.toml.

    pip install "stt-core[pipecat,funasr,groq,whisper]" "pipecat-ai[local]"   # [local]: the microphone
    # (until stt-core is on PyPI: from a checkout or wheels, as the README's Install says)
    stt-core models download funasr                  # once: SenseVoiceSmall for offline use
    export GROQ_API_KEY=...                           # the fallback; without it, bundled whisper answers
    python examples/pipecat_agent.py                  # speak; each final is printed with its engine

Offline, with no microphone and no keys: `python examples/pipecat_agent.py file examples/audio/fox.wav`
runs the same pipeline on a file, its audio pushed in real time (Pipecat's Silero VAD, then the
chain), and prints each interim and final transcript with the engine that answered; when every
engine failed for an utterance it says why and exits with status 1.

The chain (FunASR SenseVoiceSmall locally, Groq Whisper as the fallback, bundled whisper last)
comes from examples/stt.toml, or the file STT_CONFIG names. FunASR is local, so the service streams
with interim transcripts (stt-core's own Silero VAD on onnxruntime); if FunASR fails on an
utterance, the whole utterance goes to Groq, then to whisper. This is a transcription agent: put
your LLM and TTS services after `stt` in the pipeline for a full voice agent.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

import stt_core
from stt_core_pipecat import ChainSTTService

CONFIG = Path(os.environ.get("STT_CONFIG", Path(__file__).with_name("stt.toml")))
RATE = 16_000  # what Pipecat's transports deliver by default


class Heard(FrameProcessor):
    """Prints what the user said: interims on one line as they come, each final with its engine."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            engine = getattr(frame.result, "provider", "?")
            print(f"final: {frame.text} (stt: {engine})", flush=True)
        elif isinstance(frame, InterimTranscriptionFrame):
            print(f"interim: {frame.text}", flush=True)
        await self.push_frame(frame, direction)


async def run(worker: PipelineWorker) -> None:
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


async def from_microphone() -> None:
    from pipecat.transports.local.audio import LocalAudioTransport, LocalAudioTransportParams

    transport = LocalAudioTransport(LocalAudioTransportParams(audio_in_enabled=True))
    stt = ChainSTTService.from_config(CONFIG)
    pipeline = Pipeline([transport.input(), VADProcessor(vad_analyzer=SileroVADAnalyzer()), stt, Heard()])
    await run(PipelineWorker(pipeline))


async def from_file(path: str) -> int:
    """The same pipeline on a file: its audio (and a second of silence, so the last utterance
    ends) pushed in 20 ms frames in real time, as a transport would. Exit status 1 when an
    utterance got no transcript (every engine of the chain failed: the ErrorFrames say why)."""
    audio = stt_core.Audio.concat([stt_core.Audio.from_file(path).to(RATE, 1, "int16"),
                                   stt_core.Audio.silence(1.0, RATE).to(sample_format="int16")])
    pcm = audio.samples.reshape(-1)
    stt = ChainSTTService.from_config(CONFIG)
    worker = PipelineWorker(Pipeline([VADProcessor(vad_analyzer=SileroVADAnalyzer()), stt, Heard()]),
                            cancel_on_idle_timeout=False)
    started = asyncio.Event()
    failed: list[str] = []

    @worker.event_handler("on_pipeline_started")
    async def _started(worker: PipelineWorker, frame: Frame) -> None:
        started.set()

    @worker.event_handler("on_pipeline_error")
    async def _failed(worker: PipelineWorker, frame: ErrorFrame) -> None:
        failed.append(frame.error)
        print(f"error: {frame.error}", file=sys.stderr, flush=True)

    async def feed() -> None:
        await started.wait()
        step = RATE // 50
        for i in range(0, len(pcm), step):
            await worker.queue_frame(InputAudioRawFrame(pcm[i:i + step].tobytes(), RATE, 1))
            await asyncio.sleep(0.02)
        await worker.queue_frame(EndFrame())

    await asyncio.gather(run(worker), feed())
    return 1 if failed else 0


if __name__ == "__main__":
    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("PIPECAT_LOG_LEVEL", "WARNING"))  # Pipecat's own log
    if sys.argv[1:2] == ["file"]:
        if len(sys.argv) != 3:
            sys.exit("usage: python examples/pipecat_agent.py file AUDIO")
        sys.exit(asyncio.run(from_file(sys.argv[2])))
    else:
        asyncio.run(from_microphone())
