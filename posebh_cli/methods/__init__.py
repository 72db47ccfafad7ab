"""Training objectives, one class per file, picked by the recipe's `method` key.

Every method follows the `Method` protocol of `methods/base.py`. `load_recipe` is the one way to read a recipe:
the recipe's structure (`posebh_cli.recipe`) plus what only the method knows (`method_config`, stage `losses`,
`on_start`), so a typo in the last stage fails when the recipe is read, not at epoch 90.
"""
from __future__ import annotations

from pathlib import Path

from posebh_cli.errors import PosebhError, input_error
from posebh_cli.methods.acae import ACAEConsistency
from posebh_cli.methods.base import Method
from posebh_cli.methods.distill import Distill
from posebh_cli.methods.multihead import MultiHead
from posebh_cli.methods.posebh import PoseBH
from posebh_cli.recipe import Recipe, find_recipe, read_recipe

# The recipe validates `method` against recipe.METHOD_NAMES, the same names (tests/test_recipes.py checks).
METHODS: dict[str, type[Method]] = {"multihead": MultiHead, "posebh": PoseBH, "acae": ACAEConsistency,
                                    "distill": Distill}


def check_method(recipe: Recipe, file: str | Path | None = None) -> None:
    """Check the recipe's method-specific keys against the method's declarations; errors name the YAML key."""
    method = METHODS[recipe.method]
    try:
        method.config_class.from_dict(recipe.method_config, [d.name for d in recipe.datasets])
    except PosebhError as exc:  # the config classes say "recipe"; name the file where we know it
        message = str(exc)
        if file is not None and message.startswith("recipe: "):
            raise PosebhError(f"{file}: {message[len('recipe: '):]}") from None
        raise
    for i, stage in enumerate(recipe.stages):
        for loss in stage.losses:
            if loss not in method.loss_names:
                raise input_error(file, f"unknown loss {loss!r} for method {recipe.method} (allowed: "
                                  f"{', '.join(method.loss_names)})", field=f"stages[{i}].losses")
        for action in stage.on_start:
            if action not in method.on_start_actions:
                allowed = ", ".join(method.on_start_actions) or "none"
                raise input_error(file, f"action {action!r} is not supported by method {recipe.method} (allowed: "
                                  f"{allowed})", field=f"stages[{i}].on_start")


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None, check_paths: bool = True) -> Recipe:
    """Find (a path, or a bundled recipe name), read, override and validate a recipe completely."""
    path = find_recipe(name_or_path)
    recipe = read_recipe(path, overrides, check_paths=check_paths)
    check_method(recipe, path)
    return recipe


__all__ = ["METHODS", "Method", "check_method", "load_recipe"]
