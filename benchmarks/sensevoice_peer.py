"""One peer SenseVoice runtime, timed in its own interpreter (the peers' virtual environment).

    <peers venv>/bin/python benchmarks/sensevoice_peer.py SIDE MODEL_DIR THREADS FIRST_CLIP.npy

SIDE is ``funasr-onnx`` (FunASR's own ONNX runtime, ``funasr_onnx.SenseVoiceSmall``, on the
model directory's ``model_quant.onnx``) or ``sherpa-onnx`` (``OfflineRecognizer.from_sense_voice``
on a directory holding ``model.int8.onnx`` and ``tokens.txt``). funasr-onnx pins numpy<=1.26.4,
which is why the peers run here and not in stt-core's environment.

It loads the model and transcribes FIRST_CLIP, prints one JSON line (the seconds from the start
of the script to then, and the RSS), then answers each JSON line on
stdin (``{"clip": "x.npy", "segments": [[start_s, end_s], ...]}``; no segments: the whole clip)
with one JSON line ``{"seconds": ..., "text": ...}``: the call alone, timed here, so the pipe costs nothing.
Segments are recognised one by one in funasr-onnx (it decodes one waveform per batch) and as one
batch of streams in sherpa-onnx (its own way to decode many).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the imports, as stt-core's fresh-process probe counts them

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402

RATE = 16_000


def load(side: str, model_dir: Path, threads: int):  # type: ignore[no-untyped-def]
    if side == "funasr-onnx":
        from funasr_onnx import SenseVoiceSmall

        model = SenseVoiceSmall(str(model_dir), quantize=True, intra_op_num_threads=threads)
        return lambda pieces: [model(piece, language="auto", textnorm="withitn")[0] for piece in pieces]
    if side == "sherpa-onnx":
        import sherpa_onnx

        recognizer = sherpa_onnx.OfflineRecognizer.from_sense_voice(
            model=str(model_dir / "model.int8.onnx"), tokens=str(model_dir / "tokens.txt"),
            num_threads=threads, use_itn=True, language="auto")

        def recognise(pieces: list[np.ndarray]) -> list[str]:
            streams = []
            for piece in pieces:
                stream = recognizer.create_stream()
                stream.accept_waveform(RATE, piece)
                streams.append(stream)
            recognizer.decode_streams(streams)
            return [stream.result.text for stream in streams]

        return recognise
    raise SystemExit(f"unknown side {side!r}")


def main() -> None:
    side, model_dir, threads, first = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    recognise = load(side, model_dir, threads)
    recognise([np.load(first)])  # the first call, as a fresh process makes it
    print(json.dumps({"load_seconds": time.perf_counter() - STARTED,
                      "rss_mb": psutil.Process().memory_info().rss / 1e6}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        samples = np.load(request["clip"])
        spans = request.get("segments") or [[0.0, len(samples) / RATE]]
        pieces = [samples[int(start * RATE):int(end * RATE)] for start, end in spans]
        began = time.perf_counter()
        texts = recognise(pieces)
        print(json.dumps({"seconds": time.perf_counter() - began, "text": " ".join(texts)}), flush=True)


if __name__ == "__main__":
    main()
