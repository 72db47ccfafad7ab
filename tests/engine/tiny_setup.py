"""A tiny two-dataset training setup written on the fly: a few noise images, COCO-17 and MPII-16 skeletons."""
from pathlib import Path

import yaml

from builders import make_prepared  # tests/builders.py


def tiny_recipe(tmp_path: Path, **train) -> Path:
    """vit_pico at 32x32, two datasets of 6 instances, batch 4: 3 steps per epoch, 2 epochs in 2 stages."""
    data = tmp_path / "data"
    if not data.exists():
        make_prepared(data / "coco", "coco", "coco", seed=1)
        make_prepared(data / "mpii", "mpii", "mpii", seed=2)
    recipe = {
        "name": "tiny", "method": "multihead",
        "model": {"arch": "vit_pico", "img_size": [32, 32], "drop_path": 0.1},
        "datasets": [{"name": "coco", "path": str(data / "coco"), "codec": "udp"},
                     {"name": "mpii", "path": str(data / "mpii"), "codec": "msra", "half_body": False}],
        "train": {"batch_size": 4, "epochs": 2, "lr": 1e-3, "layer_decay": 0.75, "warmup_iters": 2,
                  "num_workers": 0, "checkpoint_every_steps": 2, "val_every_epochs": 0, "log_every_steps": 1,
                  **train},
        "stages": [{"name": "heads", "epochs": [0, 1], "lr": 1e-3, "trainable": ["heads"]},
                   {"name": "all", "epochs": [1, 2], "lr": 5e-4, "trainable": ["backbone", "heads"]}],
        "method_config": {"normalize": "batch", "heads": "own"},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path
