"""Bundled recipes: lookup by name or path, complete validation at load, `posebh recipes list | show`."""
from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.errors import PosebhError
from posebh_cli.methods import METHODS, load_recipe
from posebh_cli.recipe import METHOD_NAMES, RECIPES_DIR, bundled_recipes, find_recipe


def test_find_recipe_by_name_path_and_suffix(tmp_path, monkeypatch):
    assert find_recipe("vitb") == RECIPES_DIR / "vitb.yaml"
    assert find_recipe("vitb.yaml") == RECIPES_DIR / "vitb.yaml"
    own = tmp_path / "vitb.yaml"
    own.write_text("name: mine\n")
    monkeypatch.chdir(tmp_path)
    assert find_recipe("vitb.yaml") == own.relative_to(tmp_path)  # a file that exists wins over the bundled one
    with pytest.raises(PosebhError, match="nor a bundled recipe .*zoo-quickstart") as info:
        find_recipe("no-such-recipe")
    assert "\n" not in str(info.value)


def test_the_recipe_knows_every_method():
    assert tuple(METHODS) == METHOD_NAMES
    for method in METHODS.values():  # what load_recipe relies on
        assert method.loss_names and isinstance(method.on_start_actions, tuple)
        assert hasattr(method.config_class, "from_dict")


def test_every_bundled_recipe_loads_by_name():
    assert "zoo-quickstart" in bundled_recipes() and "vitb" in bundled_recipes()
    for name in bundled_recipes():
        load_recipe(name, check_paths=False)


@pytest.mark.parametrize("override, key", [
    ("stages.2.losses=[heatmap, protto]", "stages[2].losses"),
    ("stages.0.on_start=[kmeans]", "stages[0].on_start"),
    ("method_config.momentm=0.9", "method_config.momentm"),
])
def test_method_specific_keys_fail_at_load_naming_the_key(override, key):
    with pytest.raises(PosebhError) as info:
        load_recipe("zoo-pico-posebh", [override], check_paths=False)
    assert f"field '{key}'" in str(info.value) and "zoo-pico-posebh.yaml" in str(info.value)


def test_multihead_rejects_prototype_losses_at_load(tmp_path):
    raw = yaml.safe_load(find_recipe("zoo-pico-multihead").read_text())
    raw["stages"] = [{"name": "all", "epochs": [0, raw["train"]["epochs"]], "losses": ["heatmap", "css"]}]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PosebhError, match=r"stages\[0\].losses.*'css'"):
        load_recipe(path, check_paths=False)


def test_recipes_commands():
    runner = CliRunner()
    listed = runner.invoke(app, ["recipes", "list"])
    assert listed.exit_code == 0 and "zoo-quickstart" in listed.output
    shown = runner.invoke(app, ["recipes", "show", "vitb"])
    assert shown.exit_code == 0 and shown.output == (RECIPES_DIR / "vitb.yaml").read_text()
    missing = runner.invoke(app, ["recipes", "show", "nope"])
    assert missing.exit_code == 2
