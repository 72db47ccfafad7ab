"""`posebh synth`: parse the option strings, build the zoo, tabulate what was written."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from posebh_cli.data.synth import synth_zoo
from posebh_cli.errors import PosebhError
from posebh_cli.files import check_writable_parent


def parse_sizes(text: str | None) -> dict[str, int]:
    """'coco=2000,aic=3000' -> {'coco': 2000, 'aic': 3000}."""
    sizes = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        try:
            sizes[name.strip()] = int(value)
        except ValueError:
            raise PosebhError(f"--sizes: expected NAME=COUNT items separated by commas, got {item!r}") from None
    return sizes


def parse_image_size(text: str) -> tuple[int, int]:
    """'256x192' -> (256, 192) as (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise PosebhError(f"--image-size: expected WIDTHxHEIGHT such as 256x192, got {text!r}") from None
    return w, h


def synth_command(out: str, seed: int, scale: float, sizes: str | None, datasets: str | None, image_size: str,
                  workers: int | None) -> dict[str, dict[str, int]]:
    """The `posebh synth` command: parse the option strings and build the zoo."""
    names = [d.strip() for d in datasets.split(",") if d.strip()] if datasets else None
    if Path(out).exists() and not Path(out).is_dir():
        raise PosebhError(f"{out}: --out is an existing file; give a folder")
    check_writable_parent(out, "--out")
    return synth_zoo(out, seed=seed, sizes=parse_sizes(sizes), image_size=parse_image_size(image_size),
                     datasets=names, workers=workers, scale=scale)


def synth_table(out, summary: dict[str, dict[str, int]]) -> Table:
    table = Table(title=f"synthetic zoo in {out}")
    for column in ("dataset", "images per split"):
        table.add_column(column)
    for name, splits in summary.items():
        table.add_row(name, ", ".join(f"{split} {count}" for split, count in splits.items()))
    return table
