"""SenseVoice runtimes on a CPU, side by side: funasr's own call, funasr-onnx, sherpa-onnx and
stt-core's paths.

    .venv/bin/python benchmarks/sensevoice_runtimes.py   # this section alone (rewrites its part of the doc)

With the SenseVoiceSmall-size model (``models.full_size_sensevoice``: the real architecture and size,
random weights), on a 3 s, a 30 s and a 5 min clip, at 1 and 2 threads, in interleaved rounds:

- funasr ``AutoModel.generate`` (how FunASR's README and the seed server call it);
- funasr-onnx 0.4.3 ``SenseVoiceSmall(quantize=True)`` on the same ``model_quant.onnx`` stt-core
  serves, and sherpa-onnx 2.0.1 on that same int8 file with the metadata sherpa-onnx reads; both in
  an environment of their own (funasr-onnx pins numpy<=1.26.4), one process each, timed there
  (``sensevoice_peer.py``);
- stt-core funasr, backend onnx int8 (the default), onnx fp32, torch, and torch with silero-vad.

The 5 min clip goes through a VAD: stt-core's sides through their own (``energy``, what
``vad = "auto"`` picks in the serving install, and silero-vad), the other sides get the pieces
stt-core's energy cut makes (they have no VAD of their own without a download), so their time
leaves the cutting out. Then each path's load in a fresh process (import, load, first call) and
that process's RSS.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import AUDIO, ROOT, publish_alone
from models import bench_dir, full_size_sensevoice

TITLE = "sensevoice runtimes"
HEADING = "## SenseVoice runtimes on a CPU: funasr's own call, funasr-onnx, sherpa-onnx, stt-core"
AUTOMODEL = "funasr AutoModel.generate"
DEFAULT = "stt-core default (onnx int8)"
PEERS = {  # label: the side's name in sensevoice_peer.py
    "funasr-onnx 0.4.3 (same int8 file)": "funasr-onnx",
    "sherpa-onnx 2.0.1 (same int8 file)": "sherpa-onnx",
}
PEER_PACKAGES = ["funasr-onnx==0.4.3", "sherpa-onnx==2.0.1", "numpy==1.26.4", "psutil"]
# stt-core's sides: funasr settings. vad_min_audio_s = 60: the 3 s and 30 s clips go to the model
# whole, as they do on every other side; the 5 min clip goes through the VAD.
STT_CORE = {
    DEFAULT: {"backend": "onnx", "quantize": True, "vad": "energy"},
    "stt-core onnx fp32": {"backend": "onnx", "quantize": False, "vad": "energy"},
    "stt-core torch": {"backend": "torch", "vad": "energy"},
    # The seed's setting: long audio is cut by silero-vad first.
    "stt-core torch, silero-vad": {"backend": "torch", "vad": "silero-vad"},
}
SIDES = [AUTOMODEL, *PEERS, *STT_CORE]
CLIPS = ("3 s", "30 s", "5 min")
LONGEST_PIECE_S = 30.0  # max_single_segment_time
SHORT_ROUNDS = 5  # the 3 s clip gets this many times the rounds: its calls are quick and noisy


def clips() -> dict[str, Any]:
    from stt_core import Audio

    names = ("chairs", "lights", "weather", "fox", "good_morning", "begin_meeting", "offline", "meeting")
    parts = [Audio.from_file(AUDIO / f"{n}.wav").to(sample_rate=16_000, channels=1) for n in names]
    long = Audio.concat(parts * 14).float32()
    return {"3 s": parts[0], "30 s": Audio(long[: 30 * 16_000], 16_000),
            "5 min": Audio(long[: 300 * 16_000], 16_000)}


def peers_python() -> Path:
    """The peers' own environment (made once, next to the benchmark model)."""

    venv = bench_dir() / "peers-venv"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *PEER_PACKAGES], check=True)
        (venv / ".installed").touch()
    return python


def sherpa_model(model_dir: Path) -> Path:
    """stt-core's int8 file with the metadata sherpa-onnx reads (front end, language and ITN ids),
    and the tokenizer as sherpa-onnx's tokens.txt: the same weights and graph, inputs in the same
    order, the CTC logits first among the outputs."""
    import onnx
    import sentencepiece

    from stt_core_funasr._onnx import _LANGUAGE_IDS, _WITH_ITN, _WITHOUT_ITN, _read_cmvn, model_files

    target = model_dir / "sherpa-onnx"
    if (target / "model.int8.onnx").exists():
        return target
    target.mkdir(exist_ok=True)
    files = model_files(model_dir)
    shift, scale = _read_cmvn(files["cmvn_file"])
    tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(files["bpemodel"]))
    model = onnx.load(str(model_dir / "model_quant.onnx"))
    meta = {"model_type": "sense_voice_ctc", "vocab_size": tokenizer.get_piece_size(), "blank_id": 0,
            "lfr_window_size": files["frontend_conf"]["lfr_m"],
            "lfr_window_shift": files["frontend_conf"]["lfr_n"],
            "normalize_samples": 0,  # as funasr: samples scaled to 16-bit range before the fbank
            "neg_mean": ",".join(map(str, shift)), "inv_stddev": ",".join(map(str, scale)),
            "with_itn": _WITH_ITN, "without_itn": _WITHOUT_ITN,
            **{f"lang_{name}": index for name, index in _LANGUAGE_IDS.items()}}
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, str(value)
    onnx.save(model, str(target / "model.int8.onnx.partial"))
    (target / "tokens.txt").write_text(
        "".join(f"{tokenizer.id_to_piece(i)} {i}\n" for i in range(tokenizer.get_piece_size())))
    (target / "model.int8.onnx.partial").rename(target / "model.int8.onnx")
    return target


def peer_dir(side: str, model_dir: Path) -> Path:
    return model_dir if side == "funasr-onnx" else sherpa_model(model_dir)


class Peer:
    """A peer runtime in its own process: the call is timed there, the pipe costs nothing."""

    def __init__(self, python: Path, side: str, model_dir: Path, threads: int, first: Path) -> None:
        self._process = subprocess.Popen(
            [str(python), str(ROOT / "benchmarks" / "sensevoice_peer.py"), side, str(model_dir), str(threads),
             str(first)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.loaded = self._answer()

    def __call__(self, clip: Path, segments: list[tuple[float, float]] | None) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"clip": str(clip), "segments": segments}) + "\n")
        self._process.stdin.flush()
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer {self._process.args} ended: exit {self._process.wait()}")
        return dict(json.loads(line))

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=60)


def measure(model_dir: Path, rounds: int = 3) -> dict[str, Any]:
    """Medians of interleaved rounds: ``SHORT_ROUNDS * rounds`` for the 3 s clip, ``rounds`` for the
    30 s clip, one for the 5 min clip (up to half a minute a side), after a round that warms every
    side up on the 3 s clip."""
    import torch

    from stt_core_funasr._engine import auto_model, in_batches
    from stt_core_funasr._provider import FunASRProvider, FunASRSettings

    audio = clips()
    cut = audio["5 min"].split_at_silences(LONGEST_PIECE_S)
    pieces = [(start, start + piece.duration) for start, piece in cut]
    saved = Path(tempfile.mkdtemp(prefix="sensevoice-bench-"))
    files = {name: saved / f"{name.replace(' ', '')}.npy" for name in audio}  # what the peers read
    for name, clip in audio.items():
        np.save(files[name], clip.mono_float32(16_000))
    python = peers_python()
    times: dict[tuple[str, int, str], list[float]] = {}
    loop = asyncio.new_event_loop()
    for threads in (1, 2):
        calls: dict[str, Any] = {}
        for label, settings in STT_CORE.items():  # first: the onnx sides make the export if it is missing
            provider = FunASRProvider(model=str(model_dir), ncpu=threads, min_free_memory_gb=0,
                                      vad_min_audio_s=60, max_single_segment_time=int(LONGEST_PIECE_S * 1000),
                                      **settings)
            loop.run_until_complete(provider.warmup())
            calls[label] = lambda name, clip, p=provider: loop.run_until_complete(p.transcribe(clip))
        model = auto_model(FunASRSettings(model=str(model_dir), ncpu=threads), str(model_dir))

        def automodel(name: str, clip: Any, model: Any = model) -> None:
            samples = clip.mono_float32(16_000)
            if name != "5 min":  # as FunASR's README and the seed server call it
                model.generate(input=samples, language="auto", use_itn=True, disable_pbar=True)
                return
            # The pieces in calls of at most 60 s of audio each, as funasr's own VAD path
            # (batch_size_s = 60, FunASR's README) and stt-core's engine batch them.
            cut = [samples[int(a * 16_000):int(b * 16_000)] for a, b in pieces]
            for batch in in_batches(cut, 60 * 16_000):
                model.generate(input=batch, batch_size=len(batch), language="auto", use_itn=True,
                               disable_pbar=True)

        calls[AUTOMODEL] = automodel
        peers = {label: Peer(python, side, peer_dir(side, model_dir), threads, files["3 s"])
                 for label, side in PEERS.items()}
        for label, peer in peers.items():
            calls[label] = lambda name, clip, peer=peer: peer(
                files[name], pieces if name == "5 min" else None)["seconds"]
        last_round = dict(zip(CLIPS, (SHORT_ROUNDS * rounds, rounds, 1), strict=True))
        for r in range(SHORT_ROUNDS * rounds + 1):  # the first round warms up
            order = SIDES[r % len(SIDES):] + SIDES[:r % len(SIDES)]
            for clip_name in [c for c in CLIPS if r <= last_round[c]] if r else CLIPS[:1]:
                for label in order:
                    torch.set_num_threads(threads)  # funasr's own call runs in this thread
                    # The side before may have left threads spinning (onnxruntime's and OpenMP's
                    # idle threads spin a while before they sleep); on 2 cores they would slow
                    # this one, whichever process they are in.
                    time.sleep(0.2)
                    started = time.perf_counter()
                    inner = calls[label](clip_name, audio[clip_name])
                    took = inner if label in PEERS else time.perf_counter() - started
                    if r:
                        times.setdefault((label, threads, clip_name), []).append(took)
        for peer in peers.values():
            peer.close()
    loop.close()
    rows = [{"side": label, "threads": threads, "clip": clip, "seconds": statistics.median(values)}
            for (label, threads, clip), values in times.items()]
    fresh = {label: fresh_process(model_dir, label) for label in [AUTOMODEL, *STT_CORE]}
    for label, side in PEERS.items():
        peer = Peer(python, side, peer_dir(side, model_dir), 1, files["3 s"])
        fresh[label] = {"seconds": peer.loaded["load_seconds"], "rss_mb": peer.loaded["rss_mb"], "heavy": []}
        peer.close()
    return {"rows": rows, "fresh": fresh, "pieces": len(pieces)}


_PROBE = """
import json, sys, time
import psutil
started = time.perf_counter()
label, model_dir = sys.argv[1], sys.argv[2]
settings = json.loads(sys.argv[3])
from stt_core import Audio
clip = Audio.from_file(sys.argv[4])
if settings is None:
    from funasr import AutoModel
    model = AutoModel(model=model_dir, ncpu=1, disable_update=True, disable_pbar=True, disable_log=True)
    model.generate(input=clip.mono_float32(16_000), language="auto", use_itn=True, disable_pbar=True)
else:
    import asyncio
    from stt_core_funasr._provider import FunASRProvider
    provider = FunASRProvider(model=model_dir, ncpu=1, min_free_memory_gb=0, **settings)
    asyncio.run(provider.transcribe(clip))
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "funasr"})
print(json.dumps({"seconds": time.perf_counter() - started,
                  "rss_mb": psutil.Process().memory_info().rss / 1e6, "heavy": heavy}))
"""


def fresh_process(model_dir: Path, label: str) -> dict[str, Any]:
    """Start, import, load and transcribe 3 s in a new interpreter: the ready time and the RSS then
    (not ru_maxrss: Linux carries it over an exec from the forked parent, this benchmark)."""
    settings = json.dumps(STT_CORE.get(label))
    done = subprocess.run([sys.executable, "-c", _PROBE, label, str(model_dir), settings,
                           str(AUDIO / "chairs.wav")], capture_output=True, text=True, check=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("STT_")})
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def markdown(result: dict[str, Any], rounds: int) -> list[str]:
    rows, fresh = result["rows"], result["fresh"]
    cell = {(r["side"], r["threads"], r["clip"]): r["seconds"] for r in rows}
    columns = [(t, c) for t in (1, 2) for c in CLIPS]
    fastest = {column: min(cell[(s, *column)] for s in SIDES) for column in columns}

    def shown(seconds: float) -> str:
        return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"

    lines = [
        HEADING,
        "",
        "The SenseVoiceSmall-size model (real architecture and size, random weights), medians of "
        f"interleaved rounds ({SHORT_ROUNDS * rounds} for the 3 s clip, {rounds} for the 30 s clip, one "
        "for the 5 min clip), each call 0.2 s after the one before; each ratio is against the fastest "
        "side in the same column. The 5 min clip goes through a VAD: stt-core's `energy` cut (what "
        "`vad = \"auto\"` picks in the serving install) or silero-vad on stt-core's sides, and the "
        f"{result['pieces']} pieces of that same energy cut, already made, on the other sides (their "
        "time leaves the cutting out). funasr-onnx and sherpa-onnx run the same `model_quant.onnx` as "
        "stt-core's default, in an environment of their own (funasr-onnx pins numpy<=1.26.4). Load: a "
        "fresh process importing, loading and transcribing a 3 s clip, one thread; RSS: that process's "
        "resident memory then.",
        "",
        "| path | " + " | ".join(f"{c}, {t} thread{'s' if t > 1 else ''}" for t, c in columns)
        + " | load s | RSS MB | torch or funasr imported |",
        "|---|" + "---:|" * (len(columns) + 3),
    ]
    for side in SIDES:
        values = [f"{shown(cell[(side, *column)])} ({cell[(side, *column)] / fastest[column]:.2f}x)"
                  for column in columns]
        f = fresh[side]
        lines.append(f"| {side} | " + " | ".join(values) +
                     f" | {f['seconds']:.1f} | {f['rss_mb']:.0f} | {', '.join(f['heavy']) or 'neither'} |")
    worst = max(columns, key=lambda column: cell[(DEFAULT, *column)] / fastest[column])
    worst_ratio = cell[(DEFAULT, *worst)] / fastest[worst]
    funasr_onnx = next(label for label, side in PEERS.items() if side == "funasr-onnx")
    rss_ratio = fresh[DEFAULT]["rss_mb"] / fresh[funasr_onnx]["rss_mb"]
    lines += [
        "",
        f"- Speed: the default (onnx int8) is at most {worst_ratio:.2f}x the fastest side in any column "
        f"(its worst: {worst[1]} at {worst[0]} thread{'s' if worst[0] > 1 else ''}; target at most 1.05x).",
        f"- Memory: a fresh serving process holds {fresh[DEFAULT]['rss_mb']:.0f} MB, {rss_ratio:.2f}x "
        f"funasr-onnx's {fresh[funasr_onnx]['rss_mb']:.0f} MB (target at most 1.1x).",
        f"- Load: {fresh[DEFAULT]['seconds']:.1f} s from a fresh interpreter to the first transcript "
        "(target under 2 s), with neither torch nor funasr imported.",
        "- stt-core's torch path against funasr's own call on the 30 s clip: "
        + ", ".join(f"{cell[('stt-core torch', t, '30 s')] / cell[(AUTOMODEL, t, '30 s')]:.2f}x at {t} "
                    f"thread{'s' if t > 1 else ''}" for t in (1, 2))
        + " (issue 17 measured 1.19x: glibc gave the memory torch frees in stt-core's worker thread back "
        "to the kernel after every call, about 200,000 page faults a call; the engine now has it kept, "
        "`keep_freed_memory` in the funasr engine).",
        "",
    ]
    return lines


def section(repeats: int) -> list[str]:
    rounds = 3  # each side in its own process per round: load time and memory are per process
    return markdown(measure(full_size_sensevoice(), rounds), rounds)


if __name__ == "__main__":
    publish_alone(__file__, section(3))
