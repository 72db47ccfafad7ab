"""`posebh export`: one dataset's heatmap model to ONNX or TorchScript, with a parity check (models/export.py)."""
from __future__ import annotations

from posebh_cli.models.export import export_model

__all__ = ["export_model"]
