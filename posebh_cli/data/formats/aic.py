"""AI Challenger keypoints (14 points), from either the mmpose COCO-style conversion or the original files.

mmpose's `aic_{train,val}.json` has no `area` and no `iscrowd`: we store iscrowd 0 and area = w*h, and leave the
no-area OKS rule (xtcocotools use_area=False) to evaluation. The original challenger files list people per image
with string image ids, [x1, y1, x2, y2] boxes and visibility 1 visible / 2 occluded / 3 unlabelled.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from posebh_cli.data.formats.coco import read_coco_style
from posebh_cli.data.formats.common import (ReadOptions, ReadResult, SplitBuilder, as_numbers, category, load_json,
                                            progress, require)
from posebh_cli.errors import input_error
from posebh_cli.skeletons import Skeleton, load_skeleton

# split -> (release folder, image folder, original annotation file prefix)
FOLDERS = {
    "train": ("ai_challenger_keypoint_train_20170902", "keypoint_train_images_20170902", "keypoint_train_annotations_"),
    "val": ("ai_challenger_keypoint_validation_20170911", "keypoint_validation_images_20170911",
            "keypoint_validation_annotations_"),
}
# Original visibility code -> COCO v.
AIC_TO_COCO_V = {1: 2, 2: 1, 3: 0}


def _original_file(src: Path, split: str) -> Path | None:
    release, _, prefix = FOLDERS[split]
    found = sorted((src / release).glob(f"{prefix}*.json"))
    return found[0] if found else None


def read_original_split(path: Path, split: str, skeleton: Skeleton, image_root: Path,
                        options: ReadOptions) -> tuple[dict, dict]:
    """One original challenger annotation file (a list of images with their people) → prepared split."""
    data = load_json(path)
    if not isinstance(data, list):
        raise input_error(path, f"expected a list of images, got {type(data).__name__}")
    builder = SplitBuilder(split, path, image_root, options)
    ann_id = 0
    for index, record in enumerate(progress(data, f"{split} images")):
        where = f"image {index}"
        name = require(record, "image_id", path, where)
        if not isinstance(name, str) or not name:
            raise input_error(path, f"expected a non-empty string, got {name!r}", record=where, field="image_id")
        where = f"image_id={name}"
        boxes = require(record, "human_annotations", path, where)
        keypoints = require(record, "keypoint_annotations", path, where)
        for key, value in (("human_annotations", boxes), ("keypoint_annotations", keypoints)):
            if not isinstance(value, dict):
                raise input_error(path, "expected an object {humanN: ...}", record=where, field=key)
        if set(boxes) != set(keypoints):
            raise input_error(path, "people differ from those of 'human_annotations'", record=where,
                              field="keypoint_annotations")
        image_id = index + 1
        # Width/height are not in the file: the builder reads them from the image header.
        if not builder.add_image({"id": image_id, "file_name": f"{name}.jpg", "width": None, "height": None,
                                  "aic_image_id": name}, where):
            continue
        for human in sorted(boxes):
            person = f"{where} {human}"
            x1, y1, x2, y2 = as_numbers(boxes[human], 4, path, person, "human_annotations")
            kps = as_numbers(keypoints[human], skeleton.num_keypoints * 3, path, person, "keypoint_annotations")
            kps = kps.reshape(-1, 3).copy()
            codes = kps[:, 2]
            if not np.all(np.isin(codes, list(AIC_TO_COCO_V))):
                bad = codes[~np.isin(codes, list(AIC_TO_COCO_V))][0]
                raise input_error(path, f"visibility must be 1, 2 or 3, got {bad:g}", record=person,
                                  field="keypoint_annotations")
            kps[:, 2] = [AIC_TO_COCO_V[int(c)] for c in codes]
            kps[kps[:, 2] == 0, :2] = 0
            ann_id += 1
            ann = {"id": ann_id, "image_id": image_id, "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0,
                   "category_id": 1, "human": human}
            builder.add_annotation(ann, kps, person)
    return builder.finish([category(skeleton, 1, "person")])


def read_aic(src: Path, options: ReadOptions) -> ReadResult:
    """Per split, the mmpose `annotations/aic_{split}.json` when present, else the original challenger file."""
    skeleton = load_skeleton("aic")
    result = ReadResult(skeleton=skeleton, image_root=src, splits={}, counts={})
    for split, (release, image_folder, _) in FOLDERS.items():
        image_root = src / release / image_folder
        mmpose_file = src / "annotations" / f"aic_{split}.json"
        original = _original_file(src, split)
        if mmpose_file.is_file():
            coco, counts = read_coco_style(mmpose_file, split, skeleton, src, options,
                                           file_prefix=f"{release}/{image_folder}/")
            result.notes.append(f"{split}: mmpose COCO-style file {mmpose_file}")
        elif original is not None:
            coco, counts = read_original_split(original, split, skeleton, image_root, options)
            for image in coco["images"]:
                image["file_name"] = f"{release}/{image_folder}/{image['file_name']}"
            result.notes.append(f"{split}: original challenger file {original}")
        else:
            continue
        result.splits[split], result.counts[split] = coco, counts
    if not result.splits:
        raise input_error(src / "annotations" / "aic_train.json",
                          "file not found (nor the original ai_challenger_keypoint_* annotation files)")
    return result
