"""What the benchmarks build once and share: the cache directory, and a SenseVoiceSmall-size model
with random weights (so no section needs a download)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).parents[1]
TINY_SENSEVOICE = ROOT / "tests" / "fixtures" / "funasr" / "tiny-sensevoice"


def bench_dir() -> Path:
    """Where the benchmarks keep what they build once (models, the peers' environment)."""
    return Path(os.environ.get("STT_CORE_BENCH_DIR", Path.home() / ".cache" / "stt-core" / "bench"))


def full_size_sensevoice() -> Path:
    """A model with SenseVoiceSmall's architecture and size (234M-parameter encoder) but random
    weights: the real model's compute, so its overhead ratio is the one users see, without a
    download. Its text is meaningless; only its time is used. Built once into a cache dir."""
    import shutil

    import torch
    import yaml
    from funasr.models.sense_voice.model import SenseVoiceSmall
    from sentencepiece import SentencePieceProcessor

    model_dir = bench_dir() / "sensevoice-small-size"
    if (model_dir / "model.pt").exists():
        return model_dir
    # The fixture's front end and tokenizer files; not its ONNX exports (made for this model on use).
    shutil.copytree(TINY_SENSEVOICE, model_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.onnx*"))
    config = yaml.safe_load((model_dir / "config.yaml").read_text())
    # iic/SenseVoiceSmall's encoder, as in its config.yaml.
    config["encoder_conf"].update(output_size=512, attention_heads=4, linear_units=2048, num_blocks=50,
                                  tp_blocks=20)
    (model_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    tokenizer = next(model_dir.glob("*.bpe.model"))
    torch.manual_seed(0)
    model = SenseVoiceSmall(encoder=config["encoder"], encoder_conf=config["encoder_conf"], input_size=560,
                            vocab_size=SentencePieceProcessor(model_file=str(tokenizer)).get_piece_size(),
                            **config["model_conf"])
    torch.save(model.state_dict(), model_dir / "model.pt.partial")
    (model_dir / "model.pt.partial").rename(model_dir / "model.pt")
    return model_dir
