"""fit-prototypes on the synthetic zoo scores above chance: fitted prototypes beat random ones (slow: a few minutes)."""
import pytest
import torch
import yaml

from posebh_cli.data.prepare import prepare_dataset
from posebh_cli.data.synth import synth_zoo
from posebh_cli.engine.trainer import train_mdt
from posebh_cli.commands.transfer import fit_prototypes_run
from posebh_cli.inference.evaluate import evaluate_model
from posebh_cli.inference.predictor import load_checkpoint

pytestmark = pytest.mark.slow


def test_fitted_prototypes_beat_random_prototypes_on_zoo_hands(tmp_path):
    sizes = {"coco": 60, "interhand": 60}
    synth_zoo(tmp_path / "native", seed=0, sizes=sizes, image_size=(96, 128), datasets=list(sizes), workers=1,
              progress=False)
    for name in sizes:
        prepare_dataset(name, tmp_path / "native" / name, tmp_path / name)
    recipe = {
        "name": "zoo-source", "method": "posebh",
        "model": {"arch": "vit_pico", "img_size": [64, 48]},
        "datasets": [{"name": "coco", "path": str(tmp_path / "coco"), "val_split": None}],
        "train": {"batch_size": 16, "epochs": 3, "lr": 1e-3, "warmup_iters": 5, "val_every_epochs": 0},
        "stages": [{"name": "all", "epochs": [0, 3], "trainable": ["backbone", "heads", "embedding"],
                    "prototypes": "update", "losses": ["heatmap", "proto", "proto_heatmap"]}],
        "method_config": {"momentum": 0.99},
    }
    (tmp_path / "source.yaml").write_text(yaml.safe_dump(recipe))
    source = train_mdt(tmp_path / "source.yaml", out=tmp_path / "source")

    fit, fitted = fit_prototypes_run(source, tmp_path / "interhand", out=tmp_path / "fit", progress=False)
    model, recipe = load_checkpoint(fit)
    rows = model.prototypes.prototypes[model.num_global_keypoints:]
    rows.copy_(torch.nn.functional.normalize(torch.randn_like(rows), dim=-1))  # same model, random prototypes
    chance = evaluate_model(model, tmp_path / "interhand", "val", "interhand", source="prototypes", recipe=recipe)
    assert fitted["AUC"] > chance["AUC"] + 0.03, (fitted, chance)
    assert fitted["PCK@0.2"] > chance["PCK@0.2"] and fitted["EPE"] < chance["EPE"], (fitted, chance)
