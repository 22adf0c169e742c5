"""Where FunASR models live on disk, and how they get there.

A ``model`` (or ``vad``) setting is either a local directory or a hub id. Hub ids are looked up,
without any network call, in:

1. the stt-core model directory: ``$STT_CORE_MODELS_DIR``, default ``~/.cache/stt-core/models``,
   where ``stt-core models download funasr`` puts them (``<dir>/<hub id>``);
2. the hub's own cache, for models funasr or modelscope downloaded before
   (``$MODELSCOPE_CACHE`` or ``~/.cache/modelscope/hub``; the Hugging Face cache for ``hub = "hf"``).

The ONNX backend serves a model from its own directory once exported there, or from the ONNX
export its authors publish (``iic/SenseVoiceSmall-onnx`` on ModelScope, the int8 model_quant.onnx,
with the tokenizer from the model's own repository, which the export's leaves out): that is what
``stt-core models download funasr`` fetches where no torch is installed to export the model.

Nothing here imports funasr: ``stt-core providers`` uses it to say what is missing.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

from stt_core import ProviderUnavailable, install_command

DEFAULT_MODEL = "iic/SenseVoiceSmall"
FSMN_VAD = "fsmn-vad"
SILERO_VAD = "silero-vad"
ONNX_VAD = "silero-onnx"  # Silero on onnxruntime (stt_core's), weights from a package that ships them
NO_VAD = "none"
ENERGY_VAD = "energy"  # stt-core's own cut at the quietest moments: no model, no torch
AUTO_VAD = "auto"  # silero-onnx where a package ships its model, else silero-vad on torch, else energy

# funasr's short names for the hub models we use (from funasr.download.name_maps_from_hub,
# copied so that resolving a name does not import funasr).
_SHORT_NAMES = {
    "ms": {FSMN_VAD: "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch"},
    "hf": {FSMN_VAD: "funasr/fsmn-vad", DEFAULT_MODEL: "FunAudioLLM/SenseVoiceSmall"},
}
_CONFIG_FILES = ("config.yaml", "configuration.json")
_SITES = {"ms": "ModelScope", "hf": "Hugging Face"}

# ONNX exports that a model's authors publish, by (hub, model): funasr's own export (the inputs and
# outputs ``_onnx`` reads), made by the team that trained it.
PUBLISHED_ONNX = {("ms", DEFAULT_MODEL): "iic/SenseVoiceSmall-onnx"}
PUBLISHED_MB = 240  # its model_quant.onnx, the int8 model
ONNX_FILES = {True: "model_quant.onnx", False: "model.onnx"}  # by `quantize`
TOKENIZER = "*.bpe.model"


# What runs funasr on torch (the export, backend "torch", the silero and fsmn VADs) needs, and how
# to install it: torch is never pulled in by our extras (pip would take a CUDA build of several GB),
# so the hint names the CPU build's command first.
TORCH_HINT = ("install torch first (pip install torch --index-url https://download.pytorch.org/whl/cpu, "
              f"or the CUDA build you want), then {install_command('funasr-torch')}")


def torch_missing(*, silero: bool = False) -> str | None:
    """What this install lacks to run funasr on torch (and silero-vad): ``"torch is not installed:
    <how>"``, or ``None``."""
    module = first_missing(("torch", "funasr", *(("silero_vad",) if silero else ())))
    if module is None:
        return None
    how = TORCH_HINT + (" silero-vad" if silero else "")
    return f"{module} is not installed: {how}"


def can_export() -> bool:
    """Whether this install can make the ONNX files (the export runs funasr on torch)."""
    return first_missing(("torch", "funasr", "onnx")) is None


def first_missing(modules: Iterable[str]) -> str | None:
    """The first of ``modules`` this install lacks (found without importing any), or ``None``."""
    return next((m for m in modules if importlib.util.find_spec(m) is None), None)


def models_dir() -> Path:
    """Where ``stt-core models download`` puts models (``$STT_CORE_MODELS_DIR`` overrides)."""
    configured = os.environ.get("STT_CORE_MODELS_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "stt-core" / "models"


def is_path(model: str) -> bool:
    """A setting that names a directory rather than a hub id (hub ids look like relative paths,
    so a relative path counts only when it exists)."""
    return model.startswith((".", "/", "~")) or Path(model).is_dir()


def hub_id(model: str, hub: str) -> str:
    return _SHORT_NAMES[hub].get(model, model)


def find_model(model: str, hub: str) -> Path | None:
    """The directory holding ``model``, or ``None`` if it is not on this machine."""
    if is_path(model):
        path = Path(model).expanduser()
        return path if path.is_dir() else None
    repo = hub_id(model, hub)
    for candidate in (models_dir() / repo, *_hub_cache_dirs(repo, hub)):
        if _is_model_dir(candidate):
            return candidate
    return None


def published_onnx(model: str, hub: str) -> str | None:
    """The hub id of the ONNX export published for ``model``, or ``None``."""
    return None if is_path(model) else PUBLISHED_ONNX.get((hub, hub_id(model, hub)))


def find_serving_model(model: str, hub: str, *, quantize: bool) -> Path | None:
    """The directory the ONNX backend serves ``model`` from: its own, exported; else its published
    export (the ONNX file and the tokenizer); else its own without the export (made on first load
    where torch is installed); ``None`` when none is on this machine."""
    found, onnx = find_model(model, hub), ONNX_FILES[quantize]
    if found is not None and (found / onnx).is_file():
        return found
    if (published := published_onnx(model, hub)) is not None:
        export = find_model(published, hub)
        if export is not None and (export / onnx).is_file() and any(export.glob(TOKENIZER)):
            return export
    return found


def serving_missing_reason(model: str, hub: str, *, quantize: bool) -> str | None:
    """Why the ONNX backend has no ``model`` to serve, with exactly what getting one takes on this
    install (no torch: the published export, or the export's own needs); ``None`` if it has."""
    if is_path(model):
        return missing_reason("model", model, hub)
    if find_serving_model(model, hub, quantize=quantize) is not None:
        return None
    option = "" if model == DEFAULT_MODEL else f" --model {model}"
    site, repo, published = _SITES[hub], hub_id(model, hub), published_onnx(model, hub)
    unreachable = "where ModelScope cannot be reached" if hub == "ms" else "without network"
    copy = (f"{unreachable}, copy an exported model directory ({ONNX_FILES[quantize]}, am.mvn, config.yaml "
            "and the *.bpe.model tokenizer) to this machine and set [funasr] model to it")
    if can_export():
        fetch = f"{repo} from {site} into {models_dir()}, exported to ONNX there"
    elif published is not None:
        fetch = (f"its ONNX export, {published}, and the tokenizer from {site}, about {PUBLISHED_MB} MB, "
                 f"into {models_dir()}: no torch needed")
    else:
        return (f"model {model!r} is not downloaded, and no ONNX export of it is published: serving it "
                "needs one, made once where torch and funasr are installed "
                f"({TORCH_HINT}) by `stt-core models download funasr{option}` ({repo} from {site}); {copy}")
    run = f"run `stt-core models download funasr{option}`"
    return f"model {model!r} is not downloaded: {run} ({fetch}); {copy}"


def missing_reason(what: str, model: str, hub: str) -> str | None:
    """Why ``model`` cannot be loaded from disk, with how to fix it; ``None`` if it can."""
    if is_path(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            return f"{what} directory {path} does not exist"
        if not _is_model_dir(path):
            return f"{path} is not a FunASR model directory (no config.yaml or configuration.json)"
        return None
    if find_model(model, hub) is None:
        option = "" if model == DEFAULT_MODEL else f" --model {model}"
        return (
            f"{what} {model!r} is not downloaded: run `stt-core models download funasr{option}` "
            f"(from {_SITES[hub]} into {models_dir()}), or set it to a local model directory"
        )
    return None


def download(model: str, *, hub: str, target: Path | None = None) -> Path:
    """Fetch ``model`` from its hub into ``target`` (default ``models_dir()/<hub id>``).

    The hub's client shows download progress. An unreachable hub is ``ProviderUnavailable``.
    """
    repo = hub_id(model, hub)
    target = target or models_dir() / repo
    _fetch(repo, hub, target)
    return target


def download_published(model: str, published: str, *, target: Path | None = None) -> Path:
    """The published ONNX export of ``model`` (ModelScope's ``published``) into ``target`` (default
    ``models_dir()/<its hub id>``), with the model's tokenizer, which the export's repository
    leaves out, from the model's own."""
    target = target or models_dir() / published
    _fetch(published, "ms", target)
    if not any(target.glob(TOKENIZER)):
        _fetch(hub_id(model, "ms"), "ms", target, only=TOKENIZER)
    return target


def _fetch(repo: str, hub: str, target: Path, *, only: str | None = None) -> None:
    target.mkdir(parents=True, exist_ok=True)
    try:
        if hub == "ms":
            from modelscope import snapshot_download

            snapshot_download(repo, local_dir=str(target), allow_file_pattern=only)
        else:
            from huggingface_hub import snapshot_download as hf_snapshot_download

            hf_snapshot_download(repo, local_dir=str(target), allow_patterns=only)
    except Exception as e:  # the hub clients raise their own (and requests') errors
        raise ProviderUnavailable(
            f"cannot download {repo!r} from {_SITES[hub]}: {type(e).__name__}: {e}. Without network, "
            "copy the model directory (for serving: model_quant.onnx, am.mvn, config.yaml and the "
            "*.bpe.model tokenizer) to this machine and set [funasr] model to it",
            provider="funasr",
        ) from e


def _is_model_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in _CONFIG_FILES)


def _hub_cache_dirs(repo: str, hub: str) -> list[Path]:
    if hub == "ms":
        root = Path(os.environ.get("MODELSCOPE_CACHE") or Path.home() / ".cache" / "modelscope" / "hub")
        return [root / "models" / repo, root / repo]  # modelscope >= 1.14 layout, then the older one
    try:
        from huggingface_hub import snapshot_download as hf_snapshot_download

        return [Path(hf_snapshot_download(repo, local_files_only=True))]
    except Exception:  # not installed, or not in the cache: either way not here
        return []
