"""The zoo base model shipped in the package (`zoo-base`) finds keypoints on a zoo it never saw.

A small zoo is synthesized with a seed no training run uses; its val split is scored with each dataset's own head,
GT boxes and the model's own flip-test default (none for a model trained without mirrored crops). The floors sit
well below what the shipped model scores (its card) and far above what a random-weight model of the same shape scores, which the second test checks,
so the first test fails for a model that has not learned.
"""
from __future__ import annotations

import json

import pytest
import torch

from posebh_cli.data.prepare import prepare_dataset
from posebh_cli.data.prepared import open_prepared
from posebh_cli.data.synth.zoo import synth_zoo
from posebh_cli.inference.evaluate import evaluate_model
from posebh_cli.models.checkpoint import load_model
from posebh_cli.models.store import builtin_models
from posebh_cli.recipe import bundled_recipes

FRESH_SEED = 777_001                     # never used to train anything
# dataset -> (metric, floor). Scores on this zoo: the shipped four-stage model (its last two stages without mirrored
# crops, no flip test) 0.825, 0.843, 0.838, 1.000; its third stage 0.795, 0.792, 0.881, 0.911; its second stage
# (384x288) 0.617, 0.846, 0.878, 0.905; its first stage (256x192, step 23520) 0.647, 0.743, 0.815, 0.821; the
# earlier step 9000 0.573, 0.608, 0.500, 0.353; a random-weight model 0.012, 0, 0, 0 (test below)
FLOORS = {"mpii": ("PCKh", 0.45), "coco": ("AP50", 0.50), "ap10k": ("AP50", 0.50), "apt36k": ("AP50", 0.50)}
IMAGES = 100                             # training images per dataset; val gets 15 (MPII head boxes are in val only)


@pytest.fixture(scope="module")
def fresh_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh-zoo")
    synth_zoo(root / "native", seed=FRESH_SEED, sizes={name: IMAGES for name in FLOORS}, datasets=list(FLOORS),
              workers=1, progress=False)
    for name in FLOORS:
        prepare_dataset(name, root / "native" / name, root / "prepared" / name)
    return {name: open_prepared(root / "prepared" / name) for name in FLOORS}


@pytest.fixture(scope="module")
def shipped():
    folder = builtin_models().get("zoo-base")
    assert folder is not None, "the package ships no zoo-base model (posebh_cli/weights/zoo-base)"
    return folder


def scores(model, fresh_zoo, recipe: dict) -> dict[str, float]:
    torch.set_num_threads(1)
    return {name: evaluate_model(model, fresh_zoo[name], "val", name, recipe=recipe)[metric]
            for name, (metric, _) in FLOORS.items()}


def shipped_recipe(folder) -> dict:
    return json.loads((folder / "model.json").read_text())["recipe"]


def test_the_shipped_base_model_finds_keypoints_on_a_fresh_zoo(shipped, fresh_zoo):
    card = json.loads((shipped / "card.json").read_text())
    recipe = shipped_recipe(shipped)
    assert card["recipe"] == recipe["name"] and card["input"] == recipe["model"]["img_size"]   # the card tells it
    assert card["recipe"] in bundled_recipes() and card["samples_seen"] > 0
    got = scores(load_model(shipped), fresh_zoo, recipe)
    low = {name: value for name, value in got.items() if value < FLOORS[name][1]}
    assert not low, f"below the floors {FLOORS}: {got}"


def test_a_random_model_of_the_same_shape_stays_under_every_floor(shipped, fresh_zoo):
    model = load_model(shipped)
    torch.manual_seed(0)
    for module in model.modules():  # fresh weights, same architecture
        if hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()
    got = scores(model, fresh_zoo, shipped_recipe(shipped))
    assert all(value < FLOORS[name][1] for name, value in got.items()), got
