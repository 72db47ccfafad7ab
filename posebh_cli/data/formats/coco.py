"""COCO keypoints (`person_keypoints_{train,val}2017.json`) and the COCO-style reader the other formats reuse."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from posebh_cli.data.formats.common import (ReadOptions, ReadResult, SplitBuilder, as_box, as_int_id, as_keypoints,
                                            as_numbers, category, load_json, progress, require, require_list)
from posebh_cli.errors import input_error
from posebh_cli.skeletons import Skeleton, load_skeleton

DETECTIONS_FILE = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"

KeypointsFn = Callable[[dict, Path, str], np.ndarray]


def read_coco_style(path: Path, split: str, skeleton: Skeleton, image_root: Path, options: ReadOptions,
                    file_prefix: str = "", keypoints_of: KeypointsFn | None = None,
                    fix_image: Callable[[dict], None] | None = None,
                    fix_annotation: Callable[[dict], None] | None = None,
                    skipped_ids: set[int] | None = None) -> tuple[dict, dict]:
    """Read one COCO-style keypoint file into a prepared split dict and its counts.

    `file_prefix` is prepended to every file_name so that names are relative to `image_root`.
    `keypoints_of(ann, path, where)` parses an annotation's keypoints (default: `keypoints`, K*3 values);
    `fix_image`/`fix_annotation` repair format quirks in place before validation. `skipped_ids`, when given,
    receives the ids of images dropped as missing (their detections are dropped too).
    """
    data = load_json(path)
    return coco_dict_to_split(data, path, split, skeleton, image_root, options, file_prefix, keypoints_of,
                              fix_image, fix_annotation, skipped_ids)


def coco_dict_to_split(data: dict, path: Path, split: str, skeleton: Skeleton, image_root: Path,
                       options: ReadOptions, file_prefix: str = "", keypoints_of: KeypointsFn | None = None,
                       fix_image: Callable[[dict], None] | None = None,
                       fix_annotation: Callable[[dict], None] | None = None,
                       skipped_ids: set[int] | None = None) -> tuple[dict, dict]:
    """`read_coco_style` on an already parsed (or already filtered) COCO dict."""
    images = require_list(data, "images", path)
    annotations = require_list(data, "annotations", path)
    keypoints_of = keypoints_of or (lambda ann, p, where: as_keypoints(
        require(ann, "keypoints", p, where), skeleton.num_keypoints, p, where))
    builder = SplitBuilder(split, path, image_root, options)
    for index, raw in enumerate(progress(images, f"{split} images")):
        where = f"image id={raw.get('id')}" if isinstance(raw, dict) else f"images[{index}]"
        require(raw, "file_name", path, where)
        image = dict(raw)
        if fix_image is not None:
            fix_image(image)
        if isinstance(image["file_name"], str):
            image["file_name"] = file_prefix + image["file_name"]
        for key in ("width", "height"):
            require(image, key, path, where)
        builder.add_image(image, where)
    for index, raw in enumerate(progress(annotations, f"{split} annotations")):
        where = f"annotation id={raw.get('id')}" if isinstance(raw, dict) else f"annotations[{index}]"
        require(raw, "bbox", path, where)
        ann = dict(raw)
        if fix_annotation is not None:
            fix_annotation(ann)
        kps = keypoints_of(ann, path, where)
        if "iscrowd" in ann and ann["iscrowd"] not in (0, 1, True, False):
            raise input_error(path, f"expected 0 or 1, got {ann['iscrowd']!r}", record=where, field="iscrowd")
        ann["iscrowd"] = int(ann.get("iscrowd", 0))
        if ann.get("area") is not None:
            ann["area"] = float(as_numbers([ann["area"]], 1, path, where, "area")[0])
        builder.add_annotation(ann, kps, where)
    result = builder.finish(categories_of(data, path, skeleton))
    if skipped_ids is not None:
        skipped_ids.update(builder.skipped_ids)
    return result


def categories_of(data: dict, path: Path, skeleton: Skeleton) -> list[dict]:
    """The file's categories (species for animals) with the skeleton's names and links; one category if absent."""
    raw = data.get("categories") or []
    if not isinstance(raw, list):
        raise input_error(path, "expected a list", field="categories")
    out = []
    for index, cat in enumerate(raw):
        where = f"categories[{index}]"
        cat_id = as_int_id(require(cat, "id", path, where), path, where)
        out.append(category(skeleton, cat_id, str(cat.get("name", skeleton.name)), cat.get("supercategory")))
    return out or [category(skeleton)]


def read_detections(path: Path, val_split: dict, skipped_ids: set[int]) -> list[dict]:
    """A COCO detection results list ({image_id, bbox xywh, score, category_id}) for the val images.

    Detections on images dropped as missing (`skipped_ids`) are dropped with them.
    """
    data = load_json(path)
    if not isinstance(data, list):
        raise input_error(path, f"expected a list of detections, got {type(data).__name__}")
    image_ids = {image["id"] for image in val_split["images"]}
    out = []
    for index, det in enumerate(progress(data, "detections")):
        where = f"detection {index}"
        image_id = as_int_id(require(det, "image_id", path, where), path, where, "image_id")
        if image_id in skipped_ids:
            continue
        if image_id not in image_ids:
            raise input_error(path, f"unknown val image id {image_id}", record=where, field="image_id")
        bbox = as_box(require(det, "bbox", path, where), path, where)
        score = float(as_numbers([require(det, "score", path, where)], 1, path, where, "score")[0])
        cat_id = as_int_id(det.get("category_id", 1), path, where, "category_id")
        out.append({"image_id": image_id, "bbox": bbox, "score": score, "category_id": cat_id})
    return out


def attach_detections(src: Path, options: ReadOptions, result: ReadResult, default_name: str,
                      skipped_ids: set[int]) -> None:
    """Validate and keep the val detections: `--detections FILE`, else the official file when present."""
    path = options.detections or (src / default_name)
    if options.detections is None and not path.is_file():
        return
    if "val" not in result.splits:
        raise input_error(path, "detections need the val split, which was not found")
    result.detections["val"] = read_detections(path, result.splits["val"], skipped_ids)
    result.notes.append(f"detections: {len(result.detections['val'])} boxes from {path}")


def split_files(src: Path, pattern: str, splits: tuple[str, ...]) -> dict[str, Path]:
    """The split files that exist; a missing dataset (none of them) is an error naming the first expected file."""
    found = {split: src / pattern.format(split=split) for split in splits}
    found = {split: path for split, path in found.items() if path.is_file()}
    if not found:
        raise input_error(src / pattern.format(split=splits[0]), "file not found (no split file of this format)")
    return found


def read_coco(src: Path, options: ReadOptions) -> ReadResult:
    """COCO 2017 keypoints: images under SRC/{train,val}2017/, optional val person detections."""
    return read_coco_images_2017(src, options, "coco", "annotations/person_keypoints_{split}2017.json")


def read_coco_images_2017(src: Path, options: ReadOptions, skeleton_name: str, pattern: str,
                          keypoints_of=None) -> ReadResult:
    """A COCO-2017-image dataset (COCO, COCO-WholeBody): train/val files matching `pattern`, images under
    SRC/{split}2017/, val person detections attached when present."""
    skeleton = load_skeleton(skeleton_name)
    files = split_files(src, pattern, ("train", "val"))
    result = ReadResult(skeleton=skeleton, image_root=src, splits={}, counts={})
    skipped_val: set[int] = set()
    for split, path in files.items():
        coco, counts = read_coco_style(path, split, skeleton, src, options, file_prefix=f"{split}2017/",
                                       keypoints_of=keypoints_of,
                                       skipped_ids=skipped_val if split == "val" else None)
        result.splits[split], result.counts[split] = coco, counts
    attach_detections(src, options, result, DETECTIONS_FILE, skipped_val)
    return result
