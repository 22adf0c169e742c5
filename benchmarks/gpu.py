"""GPU: FunASR on cuda:0 against the CPU where CUDA is available, "not measured" elsewhere."""

from __future__ import annotations

import statistics

from common import AUDIO, interleaved, publish_alone, run
from models import full_size_sensevoice

from stt_core import Audio

TITLE = "GPU"


def gpu(repeats: int) -> str:
    import torch

    if not torch.cuda.is_available():
        return "not measured: no CUDA device on this machine."
    from stt_core_funasr._provider import FunASRProvider

    clip = Audio.from_file(AUDIO / "chairs.wav")
    model = str(full_size_sensevoice())
    cpu = FunASRProvider(model=model, vad="none", device="cpu")
    cuda = FunASRProvider(model=model, vad="none", device="cuda:0")
    times = interleaved({"cpu": lambda: run(cpu.transcribe(clip)),
                         "cuda": lambda: run(cuda.transcribe(clip))}, repeats)
    t = {name: statistics.median(seconds) for name, seconds in times.items()}
    return (f"FunASR (SenseVoiceSmall-size) on {torch.cuda.get_device_name(0)}: "
            f"{t['cuda'] * 1000:.1f} ms per utterance vs {t['cpu'] * 1000:.1f} ms on the CPU "
            f"(ratio {t['cuda'] / t['cpu']:.2f}).")


def section(repeats: int) -> list[str]:
    return ["## GPU", "", gpu(repeats), ""]


if __name__ == "__main__":
    publish_alone(__file__, section(15))
