"""`posebh export`: one dataset's heatmap model (or a prototype-bank skeleton's prototype heatmaps) to ONNX or
TorchScript, with a parity check (models/export.py).

What the file predicts is the Predictor's own choice for the same request (`inference/predictor.py`: head, expert,
channels, codec, box padding, input size), so an ONNX file's metadata (`inference/onnx_model.py`) describes exactly
the pre- and post-processing `posebh predict` applies to the PyTorch model.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from posebh_cli.commands.devices import resolve_device
from posebh_cli.errors import PosebhError
from posebh_cli.inference.onnx_model import export_metadata
from posebh_cli.inference.predictor import Predictor, default_flip_test, load_checkpoint
from posebh_cli.models.export import ExportResult, export_model
from posebh_cli.models.store import resolve_checkpoint


def posebh_version() -> str:
    try:
        return version("posebh")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def export_command(checkpoint: str | None, dataset: str | None, fmt: str, out: Path, device: str | None = None,
                   prototypes: str | None = None) -> ExportResult:
    """Export the named / given / default model's head for `dataset` (the first head by default), or the prototype
    heatmaps of the bank skeleton `prototypes`; the parity check runs on `device`."""
    if prototypes is not None and dataset is not None:
        raise PosebhError("--prototypes names the skeleton itself; drop --dataset")
    model, recipe = load_checkpoint(resolve_checkpoint(checkpoint))
    source = "head" if prototypes is None else "prototypes"
    # Only the description is used: the target, its codec, box padding and input size, as predict picks them.
    described = Predictor(model, dataset=prototypes or dataset, source=source, recipe=recipe, flip=False)
    target = described.target
    rows = None
    if source == "prototypes":
        rows = (target.keypoint_offset, target.keypoint_offset + target.skeleton.num_keypoints)
    metadata = None
    if fmt == "onnx":
        metadata = export_metadata(target.name, source, target.skeleton, described.codec, described.input_size,
                                   described.box_padding, posebh_version(), flip_test=default_flip_test(recipe))
    result = export_model(model, model.datasets[target.dataset_idx], fmt, out, device=resolve_device(device),
                          channels=target.channels, prototype_rows=rows, metadata=metadata)
    result.name = target.name
    return result


__all__ = ["export_command", "export_model"]
