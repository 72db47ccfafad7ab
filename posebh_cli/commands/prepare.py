"""`posebh prepare-data`: one native dataset -> a prepared dataset, and its summary table."""
from __future__ import annotations

from rich.table import Table

from posebh_cli.data.prepare import prepare_dataset

__all__ = ["prepare_dataset", "summary_table"]


def summary_table(summary: dict) -> Table:
    """A rich table of a `prepare_dataset` summary: one row per split."""
    table = Table(title=f"{summary['format']} → {summary['out']} (skeleton {summary['skeleton']})")
    for column in ("split", "images", "annotations", "outside image → v=0", "missing, skipped",
                   "unreadable, skipped"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, counts in summary["splits"].items():
        table.add_row(split, str(counts["images"]), str(counts["annotations"]),
                      str(counts["invisible_outside_image"]), str(counts["skipped_missing"]),
                      str(counts.get("skipped_unreadable", 0)))
    return table
