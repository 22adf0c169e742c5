"""Long audio through each VAD funasr cuts with: energy (no model), silero-onnx (stt-core's Silero on
onnxruntime, what vad = "auto" picks where its model is installed) and silero-vad (torch), at the
same settings. Per VAD: the pieces, the seconds of audio they keep, and the word error rate of
whisper tiny.en on the pieces (the SenseVoiceSmall-size model has random weights, so whisper hears)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from common import AUDIO, publish_alone

import stt_core
from speech import REFERENCES, wer
from stt_core import Audio

TITLE = "VADs on long audio"
CLIPS = ("fox", "lights", "weather", "meeting", "chairs", "offline")
PAUSE = 0.7  # seconds between the sentences
LONGEST = 30.0  # funasr's max_single_segment_time


def long_audio() -> Audio:
    pieces = [Audio.silence(0.5)]
    for name in CLIPS:
        pieces += [Audio.from_file(AUDIO / f"{name}.wav").to(16_000, 1, "float32"), Audio.silence(PAUSE)]
    return Audio.concat(pieces)


def cuts(audio: Audio) -> dict[str, tuple[list[tuple[float, float]], float]]:
    """Each VAD's pieces (start, end) and the seconds it took."""
    from stt_core import SileroVAD, speech_segments
    from stt_core_funasr._engine import ONNX_CUTS

    samples = audio.mono_float32(16_000)
    out = {}
    started = time.perf_counter()
    out["energy"] = ([(s, s + p.duration) for s, p in audio.split_at_silences(LONGEST)],
                     time.perf_counter() - started)
    started = time.perf_counter()
    out["silero-onnx"] = (speech_segments(SileroVAD().probabilities(samples), ONNX_CUTS),
                          time.perf_counter() - started)

    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    model = load_silero_vad()
    started = time.perf_counter()
    found = get_speech_timestamps(torch.from_numpy(samples), model, threshold=ONNX_CUTS.threshold,
                                  min_speech_duration_ms=round(ONNX_CUTS.min_speech * 1000),
                                  min_silence_duration_ms=round(ONNX_CUTS.min_silence * 1000),
                                  speech_pad_ms=round(ONNX_CUTS.pad * 1000), return_seconds=True)
    out["silero-vad (torch)"] = ([(t["start"], t["end"]) for t in found], time.perf_counter() - started)
    return out


async def measure() -> list[dict[str, Any]]:
    audio = long_audio()
    whisper = stt_core.registry().create("whisper", {"cpu_threads": 1, "vad_filter": False})
    reference = " ".join(REFERENCES[name] for name in CLIPS)
    rows = []
    for vad, (pieces, took) in cuts(audio).items():
        heard = [(await whisper.transcribe(audio.slice(start, end))).text for start, end in pieces]
        rows.append({"vad": vad, "pieces": len(pieces), "kept": sum(e - s for s, e in pieces),
                     "ms": took * 1000, "wer": wer(reference, " ".join(heard))})
    return rows


def markdown(rows: list[dict[str, Any]], seconds: float) -> list[str]:
    return [
        "## VADs on long audio: where each cuts, and what whisper hears of the pieces",
        "",
        f"{len(CLIPS)} fixtures, {PAUSE} s apart ({seconds:.1f} s). Silero's two at funasr's settings for "
        "cutting (a pause of 0.5 s, 0.3 s kept either side); energy cuts only what is longer than 30 s.",
        "",
        "| VAD | pieces | seconds kept | ms to cut | whisper WER |",
        "|---|---:|---:|---:|---:|",
        *(f"| {r['vad']} | {r['pieces']} | {r['kept']:.1f} | {r['ms']:.0f} | {r['wer']:.3f} |" for r in rows),
        "",
    ]


def section(repeats: int) -> list[str]:
    return markdown(asyncio.run(measure()), long_audio().duration)


if __name__ == "__main__":
    publish_alone(__file__, section(1))
