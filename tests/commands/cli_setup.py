"""Small models and datasets for the CLI tests of issue #15: a vit_pico PoseBH model with COCO and AP-10K heads,
a prepared SMPL-24 ("3dpw") dataset with train/test splits, and a folder of photos."""
from pathlib import Path

import cv2
import numpy as np
import torch

from posebh_cli.data.prepared import write_prepared
from posebh_cli.models.checkpoint import save_checkpoint
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import load_skeleton


def make_model(out: Path, datasets=("coco", "ap10k"), embedding: bool = True, img_size=(64, 48)) -> Path:
    """A random vit_pico model saved as our run folder (model.safetensors + model.json)."""
    torch.manual_seed(0)
    model = PoseModel("vit_pico", list(datasets), [load_skeleton(d) for d in datasets], with_embedding=embedding,
                      img_size=img_size)
    recipe = {"model": {"img_size": list(img_size)},
              "datasets": [{"name": d, "codec": "udp" if d == "coco" else "msra"} for d in datasets]}
    return save_checkpoint(model, out, recipe=recipe)


def make_dataset(out: Path, name: str = "3dpw", skeleton: str = "smpl24", splits=("train", "test"),
                 num_images: int = 3, seed: int = 0) -> Path:
    """A prepared dataset of noise images with two figures each, the same annotations in every split."""
    rng = np.random.default_rng(seed)
    images_dir = out.parent / f"{out.name}-images"
    images_dir.mkdir(parents=True)
    k = load_skeleton(skeleton).num_keypoints
    images, annotations = [], []
    for i in range(num_images):
        cv2.imwrite(str(images_dir / f"{i}.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 64, "height": 64})
        for j in range(2):
            x, y = 4 + 28 * j, 6
            points = np.stack([rng.uniform(x, x + 24, k), rng.uniform(y, y + 50, k), np.full(k, 2.0)], 1)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1,
                                "keypoints": points.round(2).reshape(-1).tolist(), "num_keypoints": k,
                                "bbox": [x, y, 24.0, 50.0], "area": 1200.0, "iscrowd": 0})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": name, "keypoints": list(load_skeleton(skeleton).keypoints)}]}
    counts = {"images": len(images), "annotations": len(annotations)}
    return write_prepared(out, name, skeleton, "coco", str(images_dir.resolve()),
                          {s: coco for s in splits}, {s: counts for s in splits})


def make_photos(folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        cv2.imwrite(str(folder / f"photo{i}.jpg"), rng.integers(0, 255, (80, 60, 3), dtype=np.uint8))
    return folder
