"""`posebh train-mdt`: train a recipe (a path or a bundled name) with the engine's loop."""
from __future__ import annotations

import os
from pathlib import Path

from posebh_cli.commands.devices import resolve_device
from posebh_cli.engine.trainer import train_mdt
from posebh_cli.errors import PosebhError


def use_training_device(device: str | None) -> str:
    """Point Accelerate at `device` for this process: cpu forces the CPU (ACCELERATE_USE_CPU); cuda uses the GPUs
    Accelerate assigns (one per process of a launch; choose them with CUDA_VISIBLE_DEVICES)."""
    device = resolve_device(device)
    if device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "1"
    elif device != "cuda":
        raise PosebhError(f"--device {device}: training takes cpu or cuda (pick GPUs with CUDA_VISIBLE_DEVICES)")
    return device


def train_command(recipe: str | Path, device: str | None = None, **options) -> Path:
    """`posebh train-mdt`: the device, then `train_mdt` (options as there)."""
    use_training_device(device)
    return train_mdt(recipe, **options)


__all__ = ["train_command", "train_mdt", "use_training_device"]
