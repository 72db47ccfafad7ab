"""Generated COCO keypoint data for the evaluation tests: random people, noisy predictions, edge cases."""
from __future__ import annotations

import json

import numpy as np
import pytest


def make_coco(num_keypoints: int, seed: int = 0, num_images: int = 8, categories=(1,), with_area: bool = True,
              noise: float = 0.08) -> tuple[dict, list[dict]]:
    """GT dict and results list: several images, crowd and zero-keypoint GT, false positives, a missed image,
    a result whose keypoint scores are all 0 and an image without people but with a result."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    ann_id = 1
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 640, "height": 480})
        for _ in range(rng.integers(1, 5)):
            w, h = rng.uniform(15, 220, size=2)
            x, y = rng.uniform(0, 400), rng.uniform(0, 250)
            xy = np.stack([rng.uniform(x, x + w, num_keypoints), rng.uniform(y, y + h, num_keypoints)], 1)
            v = rng.choice([0, 1, 2], size=num_keypoints, p=[0.25, 0.25, 0.5])
            kind = rng.uniform()
            crowd = kind < 0.08
            if crowd or kind < 0.16:
                v[:] = 0  # crowd regions and people without any labelled keypoint
            kpts = np.concatenate([np.where(v[:, None] > 0, xy, 0), v[:, None]], 1)
            category = int(rng.choice(categories))
            ann = {"id": ann_id, "image_id": image_id, "category_id": category, "bbox": [x, y, w, h],
                   "keypoints": kpts.ravel().round(2).tolist(), "num_keypoints": int((v > 0).sum()),
                   "iscrowd": int(crowd)}
            if with_area:
                ann["area"] = float(w * h * rng.uniform(0.4, 0.9))
            annotations.append(ann)
            ann_id += 1
            if image_id == num_images:
                continue  # the last image has GT but no predictions
            for _ in range(1 if rng.uniform() < 0.8 else 2):  # sometimes a duplicate
                offsets = rng.normal(0, rng.uniform(0.2, noise * max(w, h)), size=xy.shape)
                scores = rng.uniform(0.05, 1.0, size=num_keypoints)
                pred = np.concatenate([xy + offsets, scores[:, None]], 1)
                results.append({"image_id": image_id, "category_id": category,
                                "keypoints": pred.ravel().round(3).tolist(), "score": float(rng.uniform(0.1, 1.0))})
        # a false positive in every other image
        if image_id % 2 == 0:
            xy = rng.uniform(0, 400, size=(num_keypoints, 2))
            pred = np.concatenate([xy, rng.uniform(0.05, 1, size=(num_keypoints, 1))], 1)
            results.append({"image_id": image_id, "category_id": int(categories[0]),
                            "keypoints": pred.ravel().round(3).tolist(), "score": float(rng.uniform(0.1, 0.9))})
    # a result whose keypoints all have score 0 (xtcocotools drops it; pycocotools keeps it)
    dead = list(results[0]["keypoints"])
    dead[2::3] = [0.0] * num_keypoints
    results.append({"image_id": 1, "category_id": int(categories[0]), "keypoints": dead, "score": 0.95})
    # an image without people that still gets a result
    images.append({"id": num_images + 1, "file_name": "empty.jpg", "width": 640, "height": 480})
    results.append({"image_id": num_images + 1, "category_id": int(categories[0]),
                    "keypoints": rng.uniform(0, 300, size=3 * num_keypoints).round(2).tolist(), "score": 0.5})
    cats = [{"id": c, "name": f"cat{c}", "supercategory": "thing", "keypoints": [f"k{i}" for i in range(num_keypoints)],
             "skeleton": []} for c in categories]
    return {"images": images, "annotations": annotations, "categories": cats}, results


@pytest.fixture
def coco_data():
    return make_coco


@pytest.fixture
def write_json(tmp_path):
    def write(name: str, data) -> str:
        path = tmp_path / name
        path.write_text(json.dumps(data))
        return str(path)

    return write
