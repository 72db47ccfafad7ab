"""`posebh predict`: images, folders and videos -> one JSON per input, results.json and overlays (inference/run.py).

The checkpoint is a model name or a path (models/store.py; the default model when none is given).
"""
from __future__ import annotations

from pathlib import Path

from posebh_cli.commands.devices import resolve_device
from posebh_cli.inference.onnx_model import is_onnx
from posebh_cli.inference.run import PredictSummary, run_predict
from posebh_cli.models.store import resolve_checkpoint


def predict_command(inputs: Path | list[Path], checkpoint: str | None, out: Path, device: str | None = None,
                    **options) -> PredictSummary:
    """Resolve the model and the device, then predict (options as `run_predict`).

    An exported `.onnx` model keeps `device` as given: ONNX Runtime picks its provider (`onnx_model.open_session`),
    whatever GPU torch sees.
    """
    path = resolve_checkpoint(checkpoint)
    return run_predict(inputs, path, out, device=device if is_onnx(path) else resolve_device(device), **options)


__all__ = ["predict_command", "run_predict"]
