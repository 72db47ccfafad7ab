"""A tiny two-dataset training setup written on the fly: a few noise images, COCO-17 and MPII-16 skeletons."""
from pathlib import Path

import cv2
import numpy as np
import yaml

from posebh_cli.data.prepared import write_prepared
from posebh_cli.skeletons import load_skeleton


def make_prepared(root: Path, name: str, skeleton: str, num_images: int = 3, per_image: int = 2, seed: int = 0) -> Path:
    """A prepared dataset with train and val splits of `num_images` 64x64 images."""
    rng = np.random.default_rng(seed)
    images_dir = root / f"{name}-images"
    images_dir.mkdir(parents=True)
    k = load_skeleton(skeleton).num_keypoints
    images, annotations = [], []
    for i in range(num_images):
        cv2.imwrite(str(images_dir / f"{i}.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 64, "height": 64})
        for j in range(per_image):
            x, y = 4 + 28 * j, 6
            points = np.stack([rng.uniform(x, x + 24, k), rng.uniform(y, y + 50, k), np.full(k, 2.0)], 1)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1,
                                "keypoints": points.round(2).reshape(-1).tolist(), "num_keypoints": k,
                                "bbox": [x, y, 24.0, 50.0], "area": 1200.0, "iscrowd": 0})
            if skeleton == "mpii":  # PCKh normalises by the head box
                annotations[-1]["head_box"] = [x + 8.0, y, x + 16.0, y + 8.0]
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": name}]}
    counts = {"images": len(images), "annotations": len(annotations)}
    return write_prepared(root / name, name, skeleton, "coco", str(images_dir.resolve()),
                          {"train": coco, "val": coco}, {"train": counts, "val": counts})


def tiny_recipe(tmp_path: Path, **train) -> Path:
    """vit_pico at 32x32, two datasets of 6 instances, batch 4: 3 steps per epoch, 2 epochs in 2 stages."""
    data = tmp_path / "data"
    if not data.exists():
        make_prepared(data, "coco", "coco", seed=1)
        make_prepared(data, "mpii", "mpii", seed=2)
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
