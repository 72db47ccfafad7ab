"""`posebh predict`: images, folders or videos -> one JSON per input, results.json and overlays (inference/run.py).

The checkpoint is a model name or a path (models/store.py; the default model when none is given).
"""
from __future__ import annotations

from pathlib import Path

from posebh_cli.commands.devices import resolve_device
from posebh_cli.inference.run import PredictSummary, run_predict
from posebh_cli.models.store import resolve_checkpoint


def predict_command(input_path: Path, checkpoint: str | None, out: Path, device: str | None = None,
                    **options) -> PredictSummary:
    """Resolve the model and the device, then predict (options as `run_predict`)."""
    return run_predict(input_path, resolve_checkpoint(checkpoint), out, device=resolve_device(device), **options)


__all__ = ["predict_command", "run_predict"]
