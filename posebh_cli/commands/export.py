"""`posebh export`: one dataset's heatmap model to ONNX or TorchScript, with a parity check (models/export.py)."""
from __future__ import annotations

from pathlib import Path

from posebh_cli.commands.devices import resolve_device
from posebh_cli.models.export import export_model
from posebh_cli.models.store import resolve_checkpoint


def export_command(checkpoint: str | None, dataset: str, fmt: str, out: Path, device: str | None = None):
    """Export the named / given / default model; the parity check runs on `device`."""
    return export_model(resolve_checkpoint(checkpoint), dataset, fmt, out, device=resolve_device(device))


__all__ = ["export_command", "export_model"]
