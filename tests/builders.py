"""THE builders of the tests' small inputs: prepared datasets of noise images with a few figures, random models.

Every test module can import them (`from builders import make_prepared, make_model`): pytest puts tests/ on sys.path for the
top-level conftest.py.
"""
from pathlib import Path

import cv2
import numpy as np
import torch

from posebh_cli.data.prepared import write_prepared
from posebh_cli.models.checkpoint import save_checkpoint
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import load_skeleton


def make_prepared(out: Path, name: str, skeleton: str, splits=("train", "val"), num_images: int = 3,
                  per_image: int = 2, seed: int = 0) -> Path:
    """A prepared dataset at `out` whose splits all hold the same `num_images` 64x64 images (under `<out>-images`).

    The figures stand side by side, 24x50 px, every keypoint labelled; MPII annotations get the head box PCKh needs.
    """
    rng = np.random.default_rng(seed)
    images_dir = out.parent / f"{out.name}-images"
    images_dir.mkdir(parents=True)
    names = list(load_skeleton(skeleton).keypoints)
    k = len(names)
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
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": name, "keypoints": names}]}
    counts = {"images": len(images), "annotations": len(annotations)}
    return write_prepared(out, name, skeleton, "coco", str(images_dir.resolve()),
                          {s: coco for s in splits}, {s: counts for s in splits})


def make_model(out: Path, datasets=("coco", "ap10k"), embedding: bool = True, img_size=(64, 48)) -> Path:
    """A random vit_pico model saved as our run folder (model.safetensors + model.json)."""
    torch.manual_seed(0)
    model = PoseModel("vit_pico", list(datasets), [load_skeleton(d) for d in datasets], with_embedding=embedding,
                      img_size=img_size)
    recipe = {"model": {"img_size": list(img_size)},
              "datasets": [{"name": d, "codec": "udp" if d == "coco" else "msra"} for d in datasets]}
    return save_checkpoint(model, out, recipe=recipe)
