"""`posebh quickstart`: stage scaling, the recipe it writes, its input errors, and the tiny flow end to end."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import pytest
import torch
import yaml
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.recipe import recipe_from_dict
from posebh_cli.commands.quickstart import (BASE_MODEL, FULL, MDT_DATASETS, TINY, make_zoo, plan_training,
                                           quickstart_recipe, run_quickstart, scale_stages, seconds_per_step,
                                           with_base)

STAGES = [{"name": "a", "epochs": [0, 8]}, {"name": "b", "epochs": [8, 12]}]


def test_scale_stages_keeps_proportions_and_tiles_the_epochs():
    assert [s["epochs"] for s in scale_stages(STAGES, 12, 24)] == [[0, 16], [16, 24]]
    assert [s["epochs"] for s in scale_stages(STAGES, 12, 3)] == [[0, 2], [2, 3]]
    assert [s["epochs"] for s in scale_stages(STAGES, 12, 2)] == [[0, 1], [1, 2]]   # every stage keeps an epoch
    three = STAGES + [{"name": "c", "epochs": [12, 13]}]
    assert [s["epochs"] for s in scale_stages(three, 13, 3)] == [[0, 1], [1, 2], [2, 3]]
    assert [(s["name"], s["epochs"]) for s in scale_stages(STAGES, 12, 1)] == [(STAGES[0]["name"], [0, 1])]


def test_training_plan_fits_the_budget():
    # 1 s/step, 100 steps/epoch: 15 minutes hold 9 epochs; 3 minutes hold fewer than the 2 the stages need
    same = [1.0, 1.0]
    assert plan_training(same, STAGES, 12, 100, 900, FULL) == (9, None)
    # below two epochs: the recipe's 12 epochs (8 + 4), each shortened to the 180 // 12 = 15 steps that fit
    assert plan_training(same, STAGES, 12, 100, 180, FULL) == (12, 15)
    assert plan_training(same, STAGES, 12, 100, 1, FULL) == (12, -(-FULL.min_steps // 12))
    assert plan_training([0.01, 0.01], STAGES, 12, 100, 3600, FULL) == (FULL.max_epochs, None)
    # a second stage three times as slow: 5 epochs (3 + 2) cost 300 + 600 s, 6 epochs (4 + 2) 1000 s
    assert plan_training([1.0, 3.0], STAGES, 12, 100, 900, FULL) == (5, None)
    # the slow stage's 4 epochs cost 3 s per step each: 180 // (8 * 1 + 4 * 3) = 9 steps per epoch
    assert plan_training([1.0, 3.0], STAGES, 12, 100, 180, FULL) == (12, 9)


def test_a_shortened_epoch_reaches_the_recipe_and_the_sampler():
    from posebh_cli.data.sampler import MultiDatasetSampler

    prepared = {name: Path(f"/data/{name}") for name in FULL.sizes}
    on_base = dataclasses.replace(FULL, base=Path("/models/zoo-base"))   # PoseBH's three stages on the base
    recipe = recipe_from_dict(quickstart_recipe(prepared, on_base, seed=0, epochs=8, epoch_steps=13),
                              check_paths=False)
    assert recipe.train.epoch_length == 13 * FULL.batch_size
    assert [s.epochs for s in recipe.stages] == [(0, 4), (4, 7), (7, 8)]   # the recipe's stages as written
    sampler = MultiDatasetSampler([400, 600], None, batch_size=FULL.batch_size, epoch_length=recipe.train.epoch_length)
    assert len(sampler) == 13 * FULL.batch_size
    assert "epoch_length" not in quickstart_recipe(prepared, FULL, seed=0, epochs=8)["train"]


@pytest.mark.parametrize("plan", [FULL, TINY])
def test_the_recipe_validates_and_trains_the_six_datasets(plan):
    prepared = {name: Path(f"/data/{name}") for name in plan.sizes}
    recipe = recipe_from_dict(quickstart_recipe(prepared, plan, seed=5, epochs=6), check_paths=False)
    assert recipe.method == "posebh"
    assert [d.name for d in recipe.datasets] == list(MDT_DATASETS)
    assert [d.path for d in recipe.datasets] == [f"/data/{n}" for n in MDT_DATASETS]
    assert recipe.train.epochs == 6 and recipe.train.seed == 5
    assert recipe.model.img_size == plan.model_size
    assert recipe.stages[-1].epochs[1] == 6 and "css" in recipe.stages[-1].losses


@pytest.fixture
def tiny_base(tmp_path, monkeypatch):
    """A random-weight multi-head model on the six MDT skeletons at 64x48, installed as the built-in zoo-base."""
    from posebh_cli.models import store
    from posebh_cli.models.checkpoint import save_checkpoint
    from posebh_cli.models.pose_model import PoseModel
    from posebh_cli.skeletons import load_skeleton

    torch.manual_seed(0)
    model = PoseModel("vit_pico", list(MDT_DATASETS), [load_skeleton(n) for n in MDT_DATASETS], img_size=(64, 48),
                      head_channels=64)
    weights = tmp_path / "weights"
    save_checkpoint(model, weights / BASE_MODEL)
    monkeypatch.setattr(store, "BUILTIN_DIR", weights)
    return weights / BASE_MODEL


@pytest.mark.parametrize("plan", [FULL, TINY])
def test_from_the_base_the_recipe_runs_posebhs_three_stages_on_the_base_model(plan, tiny_base):
    plan = with_base(plan)
    assert plan.base == tiny_base and plan.model_size == (64, 48) and plan.min_epochs == 3
    prepared = {name: Path(f"/data/{name}") for name in plan.sizes}
    raw = quickstart_recipe(prepared, plan, seed=5, epochs=6)
    assert raw["model"]["init"] == {"kind": "ours", "path": str(tiny_base)}
    recipe = recipe_from_dict(raw, check_paths=False)
    assert [s.name for s in recipe.stages] == ["prototypes", "heads", "all"]
    assert tuple(recipe.stages[0].trainable) == ("embedding",) and "css" in recipe.stages[1].losses
    assert recipe.stages[-1].epochs[1] == 6


def test_without_a_shipped_base_the_quickstart_says_how_to_go_on(tmp_path, monkeypatch):
    from posebh_cli.models import store

    monkeypatch.setattr(store, "BUILTIN_DIR", tmp_path / "nothing")
    result = CliRunner().invoke(app, ["quickstart", "--out", str(tmp_path / "q"), "--tiny"])
    assert result.exit_code == 2 and "--from-scratch" in result.output and "train_zoo_base.py" in result.output
    assert not (tmp_path / "q").exists()


def test_bad_budget_and_out_are_one_line_errors(tmp_path, tiny_base):
    runner = CliRunner()
    result = runner.invoke(app, ["quickstart", "--out", str(tmp_path / "q"), "--minutes-budget", "0"])
    assert result.exit_code == 2 and "--minutes-budget" in result.output
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = runner.invoke(app, ["quickstart", "--out", str(a_file), "--tiny"])
    assert result.exit_code == 2 and "not a folder" in result.output
    assert not (tmp_path / "q").exists()
    started = tmp_path / "started"
    started.mkdir()
    (started / "settings.json").write_text('{"seed": 1, "tiny": true, "from_scratch": false}')
    result = runner.invoke(app, ["quickstart", "--out", str(started), "--tiny"])
    assert result.exit_code == 2 and "was started with" in result.output


def test_tiny_zoo_is_made_once_and_kept_on_a_rerun(tmp_path):
    prepared = make_zoo(tmp_path, TINY, seed=0)
    assert set(prepared) == set(MDT_DATASETS) | {"3dpw"}
    assert all((p / "meta.yaml").is_file() for p in prepared.values())
    stamps = {p: (p / "meta.yaml").stat().st_mtime_ns for p in prepared.values()}
    (tmp_path / "prepared" / "mpii" / "meta.yaml").unlink()          # as if killed while preparing MPII
    again = make_zoo(tmp_path, TINY, seed=0)
    assert again == prepared and (again["mpii"] / "meta.yaml").is_file()
    assert all((p / "meta.yaml").stat().st_mtime_ns == t for p, t in stamps.items() if p.name != "mpii")


@pytest.fixture
def one_thread():
    """The tiny flow on a shared CPU: one torch thread avoids oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_calibration_times_each_stage_without_start_up(tmp_path, one_thread, monkeypatch):
    """Each stage is timed alone from the trainer's logged rate (the second half of its steps), and the
    throw-away run leaves nothing behind."""
    from posebh_cli.engine import trainer

    prepared = make_zoo(tmp_path, TINY, seed=0)
    plan = dataclasses.replace(TINY, calibration_steps=4)
    seen = []
    original = trainer.train_mdt

    def spy(recipe_file, where, max_steps=None, **kw):
        recipe = yaml.safe_load(Path(recipe_file).read_text())
        seen.append(([s["name"] for s in recipe["stages"]], recipe["train"]["log_every_steps"], max_steps))
        return original(recipe_file, where, max_steps=max_steps, **kw)

    monkeypatch.setattr(trainer, "train_mdt", spy)
    first, css = (seconds_per_step(tmp_path, prepared, plan, 0, i) for i in range(2))
    assert seen == [(["prototypes"], 2, 4), (["css"], 2, 4)]
    assert 0 < first < 60 and 0 < css < 60
    assert not (tmp_path / "runs" / ".calibration").exists()
    assert not (tmp_path / "runs" / ".calibration.yaml").exists()


def test_calibration_reaches_the_last_of_the_base_recipes_three_stages(tmp_path, one_thread, tiny_base):
    plan = dataclasses.replace(with_base(TINY), calibration_steps=2)
    prepared = make_zoo(tmp_path, plan, seed=0)
    assert 0 < seconds_per_step(tmp_path, prepared, plan, 0, 2) < 60


@pytest.mark.slow
@pytest.mark.parametrize("from_scratch", [False, True])
def test_tiny_quickstart_end_to_end_and_rerun(tmp_path, one_thread, monkeypatch, tiny_base, from_scratch):
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    out = tmp_path / "qs"
    summary = run_quickstart(out, minutes_budget=1, seed=0, tiny=True, from_scratch=from_scratch)
    assert (summary["base_metrics"] is None) == from_scratch
    saved = json.loads((out / "quickstart.json").read_text())
    assert saved["metrics"].keys() == set(MDT_DATASETS)
    assert (out / "runs" / "posebh" / "model.safetensors").is_file()
    assert (out / "runs" / "fit-3dpw" / "fit.json").is_file()
    overlays = [Path(p) for p in summary["overlays"]]
    assert all(p.is_file() for p in overlays)
    assert {p.parent.name for p in overlays} == {"zoo-coco", "zoo-ap10k", "zoo-3dpw",
                                                 "astronaut-coco", "astronaut-3dpw", "cat-ap10k"}
    overview = cv2.imread(summary["overview"])
    assert overview is not None and overview.shape[0] >= 6 * 160, "one row of the overview per prediction folder"
    # The held-out zoo images are predicted in their ground-truth boxes: one instance per annotated figure.
    boxes = json.loads((out / "photos" / "zoo-coco.boxes.json").read_text())
    predicted = {f.stem: len(json.loads(f.read_text())["predictions"])
                 for f in (out / "predictions" / "zoo-coco").glob("*.json") if f.name != "results.json"}
    figures = {Path(image["file_name"]).stem: sum(a["image_id"] == image["id"] for a in boxes["annotations"])
               for image in boxes["images"]}
    assert predicted == figures and len(figures) >= 1
    for name, metrics in saved["metrics"].items():
        for value in metrics.values():
            assert value == -1 or 0.0 <= value <= 1.0 or value > 1.0 and name == "coco_wholebody"
    # Re-running into the same folder skips every finished step and gives the same metrics.
    again = run_quickstart(out, minutes_budget=1, seed=0, tiny=True, from_scratch=from_scratch)
    assert again["metrics"] == saved["metrics"]
