"""`posebh recipes list | show NAME`: the recipes bundled inside the package."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from posebh_cli.files import read_yaml
from posebh_cli.recipe import bundled_recipes, find_recipe


def recipes_table() -> Table:
    """Name, method, architecture and datasets of every bundled recipe."""
    table = Table(title="Bundled recipes (use the name with --recipe, or `posebh recipes show NAME`)")
    for column in ("name", "method", "arch", "datasets"):
        table.add_column(column, no_wrap=column == "name")
    for name in bundled_recipes():
        raw = read_yaml(find_recipe(name), "recipe file") or {}
        datasets = ", ".join(str(d.get("name")) for d in raw.get("datasets") or [] if isinstance(d, dict))
        table.add_row(name, str(raw.get("method", "-")), str((raw.get("model") or {}).get("arch", "-")), datasets)
    return table


def recipe_text(name_or_path: str | Path) -> str:
    """The recipe file's text, comments included."""
    return find_recipe(name_or_path).read_text(encoding="utf-8")
