"""APT-36K: one COCO-style file for the whole dataset, split 7:1:2 by video within each category.

The released file stores Windows paths (backslashes, sometimes absolute), calls the crowd flag `is_crowd`, and
names the video `video_id` (some copies: `video`). No video crosses splits, so frames of one clip never leak from
train into val/test. Images live under SRC/images/.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from posebh_cli.data.formats.coco import coco_dict_to_split
from posebh_cli.data.formats.common import ReadOptions, ReadResult, as_int_id, load_json, require, require_list
from posebh_cli.errors import input_error
from posebh_cli.skeletons import load_skeleton

SPLITS = ("train", "val", "test")


def repair_file_name(name: str) -> str:
    """Backslashes → '/', and an absolute Windows path keeps its last three parts (category/clip/frame)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if re.match(r"^[A-Za-z]:", name) or name.startswith(("/", "\\")):
        parts = parts[-3:]
    if parts and parts[0] == "images":
        parts = parts[1:]
    return "/".join(parts)


def video_of(image: dict, path: Path, where: str):
    for key in ("video_id", "video"):
        if key in image:
            value = image[key]
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                return value
            raise input_error(path, f"expected a string or integer, got {value!r}", record=where, field=key)
    raise input_error(path, "missing (or 'video')", record=where, field="video_id")


def split_videos(video_category: dict, seed: int) -> dict:
    """video → split, 7:1:2 by video within each category, shuffled with `seed`.

    Per category of n videos the cuts are int((n+1)*0.7) and int((n+1)*0.8), the rounding of PoseBH's own
    preprocessing script (so small categories still give train its share).
    """
    rng = np.random.default_rng(seed)
    by_category = defaultdict(list)
    for video, cat in video_category.items():
        by_category[cat].append(video)
    assignment = {}
    for cat in sorted(by_category, key=str):
        videos = sorted(by_category[cat], key=str)
        order = rng.permutation(len(videos))
        n = len(videos)
        cut_train, cut_val = int((n + 1) * 0.7), int((n + 1) * 0.8)
        for rank, i in enumerate(order):
            assignment[videos[i]] = "train" if rank < cut_train else "val" if rank < cut_val else "test"
    return assignment


def read_apt36k(src: Path, options: ReadOptions) -> ReadResult:
    skeleton = load_skeleton("apt36k")
    path = src / "annotations" / "apt36k_annotations.json"
    data = load_json(path)
    images = require_list(data, "images", path)
    annotations = require_list(data, "annotations", path)

    video_by_image = {}
    for index, image in enumerate(images):
        where = f"image id={image.get('id')}" if isinstance(image, dict) else f"images[{index}]"
        image_id = as_int_id(require(image, "id", path, where), path, where)
        if image_id in video_by_image:
            raise input_error(path, f"duplicate image id {image_id}", record=where, field="id")
        video_by_image[image_id] = video_of(image, path, where)
    # A video's category is the most common category of its animals (every clip shows one species).
    categories_of_video = defaultdict(Counter)
    ann_ids = set()
    for index, ann in enumerate(annotations):
        where = f"annotation id={ann.get('id')}" if isinstance(ann, dict) else f"annotations[{index}]"
        ann_id = as_int_id(require(ann, "id", path, where), path, where)
        if ann_id in ann_ids:  # checked here too: duplicates may land in different splits
            raise input_error(path, f"duplicate annotation id {ann_id}", record=where, field="id")
        ann_ids.add(ann_id)
        image_id = as_int_id(require(ann, "image_id", path, where), path, where, "image_id")
        if image_id not in video_by_image:
            raise input_error(path, f"refers to unknown image id {image_id}", record=where, field="image_id")
        category_id = as_int_id(ann.get("category_id", 1), path, where, "category_id")
        categories_of_video[video_by_image[image_id]][category_id] += 1
    video_category = {video: (categories_of_video[video].most_common(1)[0][0] if categories_of_video[video] else None)
                      for video in set(video_by_image.values())}
    split_of_video = split_videos(video_category, options.seed)

    def fix_image(image: dict) -> None:
        if isinstance(image.get("file_name"), str):
            image["file_name"] = repair_file_name(image["file_name"])
        if "video_id" not in image:
            image["video_id"] = image.pop("video")

    def fix_annotation(ann: dict) -> None:
        if "is_crowd" in ann and "iscrowd" not in ann:
            ann["iscrowd"] = ann.pop("is_crowd")

    result = ReadResult(skeleton=skeleton, image_root=src / "images", splits={}, counts={})
    for split in SPLITS:
        part = dict(data)
        part["images"] = [im for im in images if split_of_video[video_by_image[im["id"]]] == split]
        part["annotations"] = [a for a in annotations if split_of_video[video_by_image[a["image_id"]]] == split]
        coco, counts = coco_dict_to_split(part, path, split, skeleton, src / "images", options,
                                          fix_image=fix_image, fix_annotation=fix_annotation)
        result.splits[split], result.counts[split] = coco, counts
    videos = Counter(split_of_video.values())
    result.notes.append(f"split by video with seed {options.seed}: "
                        + ", ".join(f"{s} {videos.get(s, 0)} videos / {result.counts[s]['images']} images / "
                                    f"{result.counts[s]['annotations']} annotations" for s in SPLITS))
    return result
