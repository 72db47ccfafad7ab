"""`posebh transfer --target 3dpw` as written, `--set train.epochs=N` stage scaling and `train-mdt` from a name,
through the CLI in a temporary folder with POSEBH_HOME in a temp dir (issue #15, points 4, 5 and 10)."""
import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.methods import load_recipe
from posebh_cli.recipe import bundled_recipes

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
from cli_setup import make_dataset, make_model  # noqa: E402
from tiny_setup import tiny_recipe  # noqa: E402

runner = CliRunner()
# A short run of the bundled recipe: what changes is the length and the CPU-friendly loader, not the protocol.
SHORT = ["--set", "train.epochs=1", "--set", "train.num_workers=0", "--set", "train.mixed_precision=no",
         "--set", "train.batch_size=4", "--set", "train.warmup_iters=1", "--set", "train.val_max_images=2",
         "--set", "train.checkpoint_every_epochs=0", "--device", "cpu"]


def posebh(*args) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture(scope="module")
def posebh_model(tmp_path_factory) -> Path:
    """A PoseBH-style source (keypoint embedding) at 64x48: its pos_embed is (1, 13, 192)."""
    return make_model(tmp_path_factory.mktemp("source") / "run")


# ------------------------------------------------------------------ 4. transfer --target 3dpw
def test_transfer_3dpw_lists_every_missing_input_at_once(work):
    code, out = posebh("transfer", "--target", "3dpw")
    assert code == 2
    assert "prepared dataset data/prepared/3dpw" in out and "posebh prepare-data 3dpw" in out
    assert "source model" in out and "posebh models add" in out  # both, in one line


def test_transfer_3dpw_from_the_default_model_and_the_default_place(work, posebh_model):
    make_dataset(work / "data" / "prepared" / "3dpw", num_images=4)
    assert posebh("models", "add", "zoo", posebh_model)[0] == 0
    code, out = posebh("transfer", "--target", "3dpw", *SHORT)
    assert code == 0, out
    run = work / "runs" / "transfer-3dpw"
    assert (run / "model.safetensors").is_file() and (run / "fit" / "fit.json").is_file()
    config = json.loads((run / "model.json").read_text())["config"]
    assert config["img_size"] == [64, 48] and config["arch"] == "vit_pico"  # the source's, not vit_base 256x192
    assert "source " in out and "input 64x48" in out


def test_zoo_transfer_takes_the_source_input_size(work, posebh_model, tmp_path):
    data = make_dataset(tmp_path / "d" / "3dpw", num_images=4)
    # the zoo recipe asks 128x96; a 64x48 quickstart model used to fail with pos_embed (1, 13, 192) vs (1, 49, 192)
    code, out = posebh("transfer", "--target", "3dpw", "--zoo", "--checkpoint", posebh_model, "--data", data,
                       "--out", "same", "--no-fit", *SHORT)
    assert code == 0, out
    assert json.loads((work / "same" / "model.json").read_text())["config"]["img_size"] == [64, 48]


def test_zoo_transfer_interpolates_the_position_table_for_another_size(work, posebh_model, tmp_path):
    data = make_dataset(tmp_path / "d" / "3dpw", num_images=4)
    code, out = posebh("transfer", "--target", "3dpw", "--zoo", "--checkpoint", posebh_model, "--data", data,
                       "--out", "bigger", "--no-fit", "--set", "model.img_size=[96, 64]", *SHORT)
    assert code == 0, out
    assert json.loads((work / "bigger" / "model.json").read_text())["config"]["img_size"] == [96, 64]


def test_zoo_transfer_finds_the_quickstart_folder(work, posebh_model):
    quickstart = work / "posebh-quickstart"
    make_dataset(quickstart / "prepared" / "3dpw", num_images=4)
    shutil.copytree(posebh_model, quickstart / "runs" / "posebh")
    code, out = posebh("transfer", "--target", "3dpw", "--zoo", "--no-fit", "--out", "t", *SHORT)
    assert code == 0, out
    assert "posebh-quickstart/runs/posebh" in out and "posebh-quickstart/prepared/3dpw" in out


def test_transfer_from_a_vitpose_plus_model_uses_the_baseline_protocol(work, tmp_path):
    source = make_model(tmp_path / "plain", embedding=False)
    data = make_dataset(tmp_path / "d" / "3dpw", num_images=4)
    code, out = posebh("transfer", "--target", "3dpw", "--checkpoint", source, "--data", data, "--out", "b", *SHORT)
    assert code == 0, out
    assert "baseline protocol" in out
    code, out = posebh("transfer", "--target", "3dpw", "--protocol", "posebh", "--checkpoint", source,
                       "--data", data, "--out", "p", *SHORT)
    assert code == 2 and "keypoint embedding" in out


# ------------------------------------------------------------------ 5. --set train.epochs=N
@pytest.mark.parametrize("name", bundled_recipes())
def test_every_bundled_recipe_takes_train_epochs_1(name, capsys):
    recipe = load_recipe(name, ["train.epochs=1"], check_paths=False)
    assert recipe.train.epochs == 1 and recipe.stages[0].epochs == (0, 1) and len(recipe.stages) == 1
    assert "train.epochs=1: stages scaled" in capsys.readouterr().err  # no bundled recipe has 1 epoch


def test_train_epochs_scales_the_stages_through_the_cli(work):
    recipe = tiny_recipe(work)  # 2 epochs in 2 stages [0, 1], [1, 2]
    code, out = posebh("train-mdt", "--recipe", recipe, "--out", "run4", "--set", "train.epochs=4",
                       "--max-steps", "1", "--device", "cpu")
    assert code == 0, out
    assert "train.epochs=4: stages scaled from 2 epochs: heads [0, 2], all [2, 4]" in out
    stages = yaml.safe_load((work / "run4" / "recipe.yaml").read_text())["stages"]
    assert [s["epochs"] for s in stages] == [[0, 2], [2, 4]]


def test_train_mdt_recipe_by_bundled_name_starts(work, tmp_path):
    """`train-mdt --recipe <bundled name>` with its datasets pointed at a tiny prepared set: it trains."""
    data = make_dataset(tmp_path / "d" / "coco", name="coco", skeleton="coco", splits=("train", "val"), num_images=4)
    code, out = posebh("train-mdt", "--recipe", "zoo-base.yaml", "--out", "run", "--max-steps", "1",
                       "--set", f"datasets=[{{name: coco, path: {data}, codec: udp}}]",
                       "--set", "model.img_size=[64, 48]", "--set", "train.batch_size=4",
                       "--set", "train.num_workers=0", "--set", "train.epochs=1", "--device", "cpu")
    assert code == 0, out
    assert (work / "run" / "model.safetensors").is_file()
