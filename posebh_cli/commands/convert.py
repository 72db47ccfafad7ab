"""`posebh convert-checkpoint`: official or our checkpoints -> our format, optionally split to one dataset."""
from __future__ import annotations

from pathlib import Path

from posebh_cli.models.checkpoint import convert_checkpoint
from posebh_cli.models.store import resolve_checkpoint


def convert_command(checkpoint: str | None, out: Path, split: str | None = None):
    """Convert the named / given / default model into our format at `out`."""
    return convert_checkpoint(resolve_checkpoint(checkpoint), out, split=split)


__all__ = ["convert_command", "convert_checkpoint"]
