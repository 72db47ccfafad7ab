"""`posebh convert-checkpoint`: official or our checkpoints -> our format, optionally split to one dataset."""
from __future__ import annotations

from posebh_cli.models.checkpoint import convert_checkpoint

__all__ = ["convert_checkpoint"]
