"""The training loop learns: a short CPU run on zoo images lifts AP far above the untrained model.

The set is small and scored on its own training images, so this checks that gradients, targets, the codec and
evaluation fit together (a geometry or masking bug keeps AP near zero); generalisation to held-out images needs
much longer runs and is measured by scripts/bench_mdt.py (docs/benchmarks.md).
"""
import json

import yaml

from posebh_cli.data.prepare import prepare_dataset
from posebh_cli.data.synth import synth_zoo
from posebh_cli.engine.trainer import train_mdt
from posebh_cli.inference.evaluate import evaluate_model
from posebh_cli.models.checkpoint import load_model


def test_short_run_lifts_ap_far_above_untrained(tmp_path):
    synth_zoo(tmp_path / "zoo", seed=3, sizes={"coco": 16}, datasets=["coco"], progress=False)
    prepared = tmp_path / "prepared"
    prepare_dataset("coco", tmp_path / "zoo" / "coco", prepared)
    meta = yaml.safe_load((prepared / "meta.yaml").read_text())
    meta["splits"]["val"] = meta["splits"]["train"]  # memorisation: score the training images
    (prepared / "meta.yaml").write_text(yaml.safe_dump(meta))

    recipe = {
        "name": "learns", "method": "multihead",
        "model": {"arch": "vit_pico", "img_size": [128, 96], "drop_path": 0.0, "head_channels": 32},
        "datasets": [{"name": "coco", "path": str(prepared), "codec": "udp", "half_body": False}],
        "train": {"batch_size": 16, "epochs": 300, "lr": 1e-3, "weight_decay": 0.0, "layer_decay": None,
                  "warmup_iters": 20, "num_workers": 0, "val_every_epochs": 0, "log_every_steps": 50,
                  "augmentation": {"flip": 0.0, "half_body": 0.0, "scale_factor": 0.0, "rot_factor": 0.0}},
        "stages": [{"name": "main", "epochs": [0, 300], "lr": 1e-3, "trainable": ["backbone", "heads"]}],
        "method_config": {"normalize": "batch", "heads": "own"},
    }
    path = tmp_path / "learns.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))

    run = train_mdt(path, out=tmp_path / "run", max_steps=1)
    untrained = evaluate_model(load_model(run), prepared, "val", "coco", flip=False)["AP"]
    run = train_mdt(path, out=tmp_path / "run2", max_steps=300)
    trained = evaluate_model(load_model(run), prepared, "val", "coco", flip=False)["AP"]
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]

    assert losses[-1] < 0.5 * losses[0]
    assert untrained < 0.05
    assert trained > untrained + 0.25, (untrained, trained)
