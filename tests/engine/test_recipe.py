"""Recipe loading: errors name the YAML key; the shipped recipes parse."""
from pathlib import Path

import pytest
import yaml

from posebh_cli.methods import load_recipe
from posebh_cli.recipe import recipe_from_dict
from posebh_cli.errors import PosebhError

RECIPES = Path(__file__).resolve().parents[2] / "posebh_cli" / "recipes"


def _minimal(tmp_path: Path) -> dict:
    data = tmp_path / "ds"
    data.mkdir(exist_ok=True)
    (data / "meta.yaml").write_text("name: ds\n")
    return {
        "name": "t", "method": "multihead", "model": {"arch": "vit_pico", "img_size": [128, 96]},
        "datasets": [{"name": "a", "path": str(data), "codec": "udp"}],
        "train": {"batch_size": 2, "epochs": 3, "lr": 1e-3},
        "stages": [{"name": "s1", "epochs": [0, 1], "lr": 1e-3, "trainable": ["heads"]},
                   {"name": "s2", "epochs": [1, 3], "lr": 1e-4}],
    }


def _error(raw: dict) -> str:
    with pytest.raises(PosebhError) as info:
        recipe_from_dict(raw, "r.yaml")
    return str(info.value)


def test_minimal_recipe_fills_defaults(tmp_path):
    recipe = recipe_from_dict(_minimal(tmp_path), "r.yaml")
    assert recipe.model.img_size == (128, 96)
    assert recipe.datasets[0].val_split == "val" and recipe.datasets[0].ratio is None
    assert recipe.stages[0].trainable == ("heads",) and recipe.stages[1].trainable == ("backbone", "heads", "embedding")
    assert recipe.stage_at(0).name == "s1" and recipe.stage_at(2).name == "s2"
    again = recipe_from_dict(recipe.to_dict(), "r.yaml")
    assert again == recipe


def test_unknown_key_is_named(tmp_path):
    raw = _minimal(tmp_path)
    raw["train"]["lrr"] = 1
    assert "field 'train.lrr': unknown key" in _error(raw)
    raw = _minimal(tmp_path)
    raw["stages"][1]["froze"] = ["x"]
    assert "field 'stages[1].froze': unknown key" in _error(raw)


def test_missing_dataset_folder_is_named(tmp_path):
    raw = _minimal(tmp_path)
    raw["datasets"][0]["path"] = str(tmp_path / "nowhere")
    message = _error(raw)
    assert message.startswith("r.yaml: field 'datasets[0].path'") and "no meta.yaml" in message


@pytest.mark.parametrize("section, key, value, expected", [
    ("train", "lr", -1.0, "field 'train.lr': must be > 0"),
    ("train", "batch_size", 0, "field 'train.batch_size': must be >= 1"),
    ("train", "optimizer", "sgd", "field 'train.optimizer': must be one of adamw, adam"),
    ("model", "drop_path", 1.5, "field 'model.drop_path': must be < 1"),
    ("model", "img_size", [128], "field 'model.img_size'"),
    ("model", "img_size", [100, 96], "field 'model.img_size': must be multiples of 16"),
])
def test_bad_values_are_named(tmp_path, section, key, value, expected):
    raw = _minimal(tmp_path)
    raw[section][key] = value
    assert expected in _error(raw)


def test_stage_overlap_gap_and_end(tmp_path):
    raw = _minimal(tmp_path)
    raw["stages"][1]["epochs"] = [0, 3]
    assert "field 'stages[1].epochs': starts at 0 and overlaps" in _error(raw)
    raw["stages"][1]["epochs"] = [2, 3]
    assert "field 'stages[1].epochs': starts at 2 and leaves a gap" in _error(raw)
    raw["stages"][1]["epochs"] = [1, 4]
    assert "ends at 4 but train.epochs is 3" in _error(raw)
    raw["stages"][1]["epochs"] = [1, 3]
    raw["stages"][1]["trainable"] = ["backbone", "neck"]
    assert "field 'stages[1].trainable': unknown name 'neck'" in _error(raw)


def test_overrides_and_missing_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_minimal(tmp_path)))
    recipe = load_recipe(path, ["train.batch_size=4", "datasets.0.codec=msra", "stages.1.lr=2e-4"])
    assert recipe.train.batch_size == 4 and recipe.datasets[0].codec == "msra" and recipe.stages[1].lr == 2e-4
    with pytest.raises(PosebhError, match="field 'datasets.5'"):
        load_recipe(path, ["datasets.5.codec=msra"])
    with pytest.raises(PosebhError, match="recipe file not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_unquoted_no_is_no_mixed_precision(tmp_path):
    """`--set train.mixed_precision=no` (YAML reads false) means no mixed precision; true is still refused."""
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_minimal(tmp_path)))
    assert load_recipe(path, ["train.mixed_precision=no"]).train.mixed_precision == "no"
    assert load_recipe(path, ["train.mixed_precision=bf16"]).train.mixed_precision == "bf16"
    with pytest.raises(PosebhError, match="train.mixed_precision.*got True"):
        load_recipe(path, ["train.mixed_precision=yes"])


@pytest.mark.parametrize("name", ["vitb.yaml", "vith.yaml", "vitb-multihead.yaml", "zoo-pico-multihead.yaml",
                                  "zoo-pico-posebh.yaml"])
def test_shipped_recipes_parse(name):
    recipe = load_recipe(RECIPES / name, check_paths=False)
    assert recipe.stages[-1].epochs[1] == recipe.train.epochs


def test_paper_schedule_in_vitb():
    recipe = load_recipe(RECIPES / "vitb.yaml", check_paths=False)
    assert [s.epochs for s in recipe.stages] == [(0, 50), (50, 90), (90, 100)]
    assert [s.lr for s in recipe.stages] == [1e-3, 1e-4, 1e-5]
    assert [set(s.trainable) for s in recipe.stages] == [{"embedding"}, {"embedding", "heads"},
                                                         {"backbone", "heads", "embedding"}]
    assert [d.name for d in recipe.datasets] == ["coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody"]
    assert [d.codec for d in recipe.datasets] == ["udp", "msra", "udp", "msra", "msra", "msra"]
    assert recipe.train.layer_decay == 0.75 and recipe.model.drop_path == 0.3


@pytest.mark.parametrize("name", ["vitb.yaml", "vith.yaml", "vitb-multihead.yaml", "zoo-pico-multihead.yaml",
                                  "zoo-pico-posebh.yaml"])
def test_shipped_method_configs_are_accepted_by_their_method(name):
    recipe = load_recipe(RECIPES / name, check_paths=False)
    if recipe.method == "posebh":
        from posebh_cli.methods.posebh import PoseBHConfig

        PoseBHConfig.from_dict(recipe.method_config)
    else:
        from posebh_cli.methods.multihead import MultiHead

        MultiHead(None, [], recipe.method_config, None)
