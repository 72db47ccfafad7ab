"""Small models and datasets for the CLI tests of issue #15: a vit_pico PoseBH model with COCO and AP-10K heads,
a prepared SMPL-24 ("3dpw") dataset with train/test splits, and a folder of photos."""
from pathlib import Path

import cv2
import numpy as np

from builders import make_model, make_prepared  # tests/builders.py  # noqa: F401 (make_model: re-exported)


def make_dataset(out: Path, name: str = "3dpw", skeleton: str = "smpl24", splits=("train", "test"),
                 num_images: int = 3, seed: int = 0) -> Path:
    """A prepared SMPL-24 ("3dpw") dataset by default, with its train and test splits (`builders.make_prepared`)."""
    return make_prepared(out, name, skeleton, splits=splits, num_images=num_images, seed=seed)


def make_photos(folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        cv2.imwrite(str(folder / f"photo{i}.jpg"), rng.integers(0, 255, (80, 60, 3), dtype=np.uint8))
    return folder
