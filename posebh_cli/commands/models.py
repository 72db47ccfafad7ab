"""`posebh models list / add / default`: the named local models (models/store.py)."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from posebh_cli.models.store import add_model, default_name, describe, home, list_models, set_default


def models_table() -> Table:
    """Every named model: name, where it lives, architecture, input size, heads and prototype skeletons."""
    table = Table(title=f"models (store: {home()})")
    for column in ("name", "kind", "arch", "input", "heads", "prototype skeletons", "path"):
        table.add_column(column)
    for model in list_models():
        info = describe(model.path)
        size = "x".join(str(v) for v in info["img_size"] or []) or "?"
        table.add_row(model.name + (" (default)" if model.default else ""), "built-in" if model.builtin else "store",
                      info["arch"], size, ", ".join(info["heads"]) or "-", ", ".join(info["prototypes"]) or "-",
                      str(model.path))
    return table


def add_command(name: str, source: Path, make_default: bool = False, force: bool = False) -> tuple[Path, bool]:
    """Register `source` as `name`; it also becomes the default when asked or when no store default is set yet.
    Returns (stored folder, whether it is now the default)."""
    had_default = (home() / "default.json").is_file()
    where = add_model(name, source, force=force)
    if make_default or not had_default:
        set_default(name)
    return where, default_name() == name


__all__ = ["models_table", "add_command", "set_default"]
