"""`posebh predict`: images, folders or videos -> one JSON per input plus overlays (inference/run.py)."""
from __future__ import annotations

from posebh_cli.inference.run import run_predict

__all__ = ["run_predict"]
