"""What the zoo holds (one `DatasetSpec` per native dataset) and the small helpers every zoo module shares."""
from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    body_plan: str
    skeleton: str
    splits: tuple[str, ...]      # native splits; "all" = one file that the reader splits itself
    default_size: int            # training images at scale 1 (real imbalance, small)
    max_figures: int
    clip_length: int = 1         # frames per video / sequence / camera recording


DATASETS: dict[str, DatasetSpec] = {
    "coco": DatasetSpec("coco", "human", "coco", ("train", "val"), 1000, 3),
    "aic": DatasetSpec("aic", "human", "aic", ("train", "val"), 1500, 3),
    "mpii": DatasetSpec("mpii", "human", "mpii", ("train", "val"), 500, 3),
    "coco_wholebody": DatasetSpec("coco_wholebody", "human", "coco_wholebody", ("train", "val"), 300, 3),
    "ap10k": DatasetSpec("ap10k", "quadruped", "ap10k", ("train", "val", "test"), 200, 3),
    "apt36k": DatasetSpec("apt36k", "quadruped", "apt36k", ("all",), 300, 3, clip_length=10),
    "interhand": DatasetSpec("interhand", "hand", "interhand", ("train", "val", "test"), 300, 2, clip_length=10),
    "3dpw": DatasetSpec("3dpw", "human", "smpl24", ("train", "test"), 300, 2, clip_length=20),
}
HELD_OUT_FRACTION = 0.15   # val / test images per training image


def split_sizes(spec: DatasetSpec, train_size: int) -> dict[str, int]:
    """Images per native split for `train_size` training images."""
    held_out = max(1, round(train_size * HELD_OUT_FRACTION))
    if spec.splits == ("all",):
        return {"all": train_size + 2 * held_out}
    return {s: train_size if s == "train" else held_out for s in spec.splits}


def seeded_rng(*keys) -> np.random.Generator:
    """A generator seeded from ints and strings (strings through crc32, stable across runs and machines)."""
    return np.random.default_rng([k if isinstance(k, int) else zlib.crc32(str(k).encode()) for k in keys])


def hex_name(*keys) -> str:
    """A stable 40-hex-digit file stem, like AI Challenger's image names."""
    return hashlib.sha1("/".join(str(k) for k in keys).encode()).hexdigest()


def dump_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(data, fh, separators=(",", ":"))
