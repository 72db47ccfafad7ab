"""`posebh train-mdt`: train a recipe (a path or a bundled name) with the engine's loop."""
from __future__ import annotations

from posebh_cli.engine.trainer import train_mdt

__all__ = ["train_mdt"]
