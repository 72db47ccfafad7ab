"""Our checkpoint format and the one `load_model` entry point.

A checkpoint is a folder with `model.safetensors` (the state dict) and `model.json`:
{format_version, config (ModelConfig), datasets, skeletons (full Skeleton dicts), recipe, extra}.
The same JSON is stored in the safetensors metadata (read first), so a lone `.safetensors` file loads too.
Official mmcv `.pth` files (ViTPose, ViTPose++, PoseBH) go through `official.py`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import atomic_file
from posebh_cli.models.pose_model import ModelConfig, PoseModel, load_state_strict
from posebh_cli.skeletons import skeleton_from_dict

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"


def checkpoint_meta(model: PoseModel, recipe: dict | None = None, extra: dict | None = None) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "datasets": list(model.datasets),
        "skeletons": [s.to_dict() for s in model.skeletons],
        "prototype_skeletons": [s.to_dict() for _, s in model.prototype_only],
        "recipe": recipe,
        "extra": extra or {},
        # A bank imported from a released PoseBH file whose signs are not aligned yet: scored with |cos|.
        "prototype_abs_similarity": bool(getattr(model.prototypes, "abs_similarity", False)),
    }


def save_checkpoint(model: PoseModel, out_dir: str | Path, recipe: dict | None = None,
                    extra: dict | None = None) -> Path:
    """Write `out_dir/model.safetensors` + `out_dir/model.json`; other files in out_dir (logs) are kept.

    Each file is written under a temporary name and renamed; model.json goes last, so its presence means the
    weights beside it are complete.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = checkpoint_meta(model, recipe, extra)
    text = json.dumps(meta, indent=2)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_file(out_dir / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"posebh": text})
    with atomic_file(out_dir / META_NAME) as tmp:
        tmp.write_text(text + "\n")
    return out_dir


def convert_checkpoint(src: str | Path, out: str | Path, split: str | None = None) -> PoseModel:
    """Read any checkpoint load_model reads and write ours: a folder, or one `.safetensors` file when `out` ends so.

    With `split`, the result is the plain single-dataset model of that dataset (its expert merged into fc2).
    """
    model = load_model(src)
    if split is not None:
        model = model.split(split)
    extra = {"converted_from": str(src)} | ({"split": split} if split else {})
    out = Path(out)
    if out.suffix == ".safetensors":
        with atomic_file(out) as tmp:
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(tmp), metadata={"posebh": json.dumps(checkpoint_meta(model, None, extra))})
    else:
        save_checkpoint(model, out, extra=extra)
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> PoseModel:
    """Load our checkpoint folder / `.safetensors`, or an official `.pth`; returns the model in eval mode."""
    path = Path(path)
    if not path.exists():
        raise input_error(path, "checkpoint not found")
    if path.suffix in (".pth", ".pt"):
        from posebh_cli.models.official import load_official

        model = load_official(path)
    else:
        weights = path / WEIGHTS_NAME if path.is_dir() else path
        if weights.suffix != ".safetensors" or not weights.is_file():
            raise input_error(path, f"expected a checkpoint folder with {WEIGHTS_NAME}, a .safetensors file "
                                    "or an official .pth file")
        model = _load_ours(weights)
    return model.to(device).eval()


def head_channels_of(path: str | Path) -> int:
    """Deconv width of a checkpoint's heads, read without loading its weights (official files: 256)."""
    path = Path(path)
    if path.suffix in (".pth", ".pt"):
        return 256
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if not weights.is_file():
        raise input_error(path, "checkpoint not found")
    meta, _ = _read_meta(weights)
    return int(meta.get("config", {}).get("head_channels", 256))


def _read_meta(weights: Path) -> tuple[dict, Path]:
    """The model description: embedded in the safetensors metadata, else the model.json beside it."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            text = (f.metadata() or {}).get("posebh")
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise input_error(weights, f"cannot read safetensors file ({exc})") from None
    if text is not None:
        return json.loads(text), weights
    sidecar = weights.parent / META_NAME
    if not sidecar.is_file():
        raise input_error(weights, f"no posebh metadata inside and no {META_NAME} beside it")
    try:
        return json.loads(sidecar.read_text()), sidecar
    except json.JSONDecodeError as exc:
        raise input_error(sidecar, f"invalid JSON ({exc.msg}, line {exc.lineno})") from None


def model_from_meta(meta: dict, source: Path) -> PoseModel:
    """Build the model that a model.json describes, on the meta device (weights come from the file)."""
    for key in ("format_version", "config", "skeletons"):
        if key not in meta:
            raise input_error(source, "missing", field=key)
    if meta["format_version"] > FORMAT_VERSION:
        raise input_error(source, f"format_version {meta['format_version']} is newer than this posebh "
                                  f"({FORMAT_VERSION})", field="format_version")
    skeletons = [skeleton_from_dict(s, source) for s in meta["skeletons"]]
    prototype_skeletons = [skeleton_from_dict(s, source) for s in meta.get("prototype_skeletons", [])]
    try:
        config = ModelConfig.from_dict(meta["config"])
    except (TypeError, PosebhError) as exc:
        raise input_error(source, str(exc), field="config") from None
    with torch.device("meta"):  # no random init for weights that are about to be replaced
        return PoseModel.from_config(config, skeletons, prototype_skeletons)


def _load_ours(weights: Path) -> PoseModel:
    meta, meta_source = _read_meta(weights)
    model = model_from_meta(meta, meta_source)
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights))
    except Exception as exc:  # damaged or truncated file
        raise input_error(weights, f"cannot read safetensors file ({exc})") from None
    load_state_strict(model, state, weights)
    if model.prototypes is not None and meta.get("prototype_abs_similarity"):
        model.prototypes.abs_similarity = True
    return model
