"""InterHand2.6M (2D): one sample per valid hand, projected from the 3D world joints with the capture cameras.

Files per split: `InterHand2.6M_{split}_{data,camera,joint_3d}.json` under SRC/annotations/<split>/ or
SRC/annotations/all/; images under SRC/images/<split>/. A hand is kept, as in mmpose's InterHand2D dataset, when
its wrist is valid and more than 11 of its 21 joints are valid. Its box is the tight box of the valid joints scaled
by 1.5 about the centre; the tight box is kept as `tight_bbox` (PCK@0.2 is normalised by its longer side).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from posebh_cli.data.formats.common import (ReadOptions, ReadResult, SplitBuilder, as_int_id, as_numbers, box_of_points,
                                            category, load_json, progress, require, require_list)
from posebh_cli.errors import input_error
from posebh_cli.skeletons import load_skeleton

SPLITS = ("train", "val", "test")
HANDS = (("right", 0), ("left", 21))  # joints 0-20 right, 21-41 left; the wrist is the last of each 21
WRIST = 20
MIN_VALID = 11  # a hand needs more than this many valid joints
BOX_PADDING = 1.5


def _files(src: Path, split: str) -> dict[str, Path] | None:
    for folder in (split, "all"):
        base = src / "annotations" / folder
        files = {kind: base / f"InterHand2.6M_{split}_{kind}.json" for kind in ("data", "camera", "joint_3d")}
        if files["data"].is_file():
            return files
    return None


class Projector:
    """World (mm) → camera → pixel for one split's cameras: cam = R·(world − campos), x = f·X/Z + c."""

    def __init__(self, cameras: dict, path: Path):
        self.cameras, self.path = cameras, path
        if not isinstance(cameras, dict):
            raise input_error(path, f"expected an object keyed by capture id, got {type(cameras).__name__}")

    def project(self, world: np.ndarray, capture: str, camera: str) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates [N, 2] and camera depth [N]."""
        where = f"capture {capture} camera {camera}"
        params = self.cameras.get(capture)
        if not isinstance(params, dict):
            raise input_error(self.path, "capture not found", record=f"capture {capture}")
        values = {}
        for key, count in (("campos", 3), ("camrot", 9), ("focal", 2), ("princpt", 2)):
            table = require(params, key, self.path, f"capture {capture}")
            if not isinstance(table, dict) or camera not in table:
                raise input_error(self.path, "camera not found", record=where, field=key)
            values[key] = as_numbers(table[camera], count, self.path, where, key)
        cam = (values["camrot"].reshape(3, 3) @ (world - values["campos"]).T).T
        depth = cam[:, 2]
        safe = np.where(np.abs(depth) > 1e-9, depth, 1e-9)
        pixels = cam[:, :2] / safe[:, None] * values["focal"] + values["princpt"]
        return pixels, depth


def read_interhand_split(files: dict[str, Path], split: str, image_root: Path, options: ReadOptions):
    skeleton = load_skeleton("interhand")
    data_path = files["data"]
    data = load_json(data_path)
    for kind in ("camera", "joint_3d"):
        if not files[kind].is_file():
            raise input_error(files[kind], "file not found")
    projector = Projector(load_json(files["camera"]), files["camera"])
    joints_path = files["joint_3d"]
    joints = load_json(joints_path)
    if not isinstance(joints, dict):
        raise input_error(joints_path, f"expected an object keyed by capture id, got {type(joints).__name__}")

    builder = SplitBuilder(split, data_path, image_root, options)
    images = {}
    for index, raw in enumerate(progress(require_list(data, "images", data_path), f"{split} images")):
        where = f"image id={raw.get('id')}" if isinstance(raw, dict) else f"images[{index}]"
        for key in ("file_name", "width", "height", "capture", "camera", "frame_idx"):
            require(raw, key, data_path, where)
        image = dict(raw)
        image["file_name"] = f"{split}/{image['file_name']}" if isinstance(image["file_name"], str) else None
        builder.add_image(image, where)
        images[image["id"]] = image

    next_id = 1
    for index, raw in enumerate(progress(require_list(data, "annotations", data_path), f"{split} hands")):
        where = f"annotation id={raw.get('id')}" if isinstance(raw, dict) else f"annotations[{index}]"
        image_id = as_int_id(require(raw, "image_id", data_path, where), data_path, where, "image_id")
        image = images.get(image_id)
        if image is None:
            raise input_error(data_path, f"refers to unknown image id {image_id!r}", record=where, field="image_id")
        valid = as_numbers(require(raw, "joint_valid", data_path, where), 42, data_path, where, "joint_valid") > 0
        capture, frame, camera = str(image["capture"]), str(image["frame_idx"]), str(image["camera"])
        frame_joints = joints.get(capture, {}).get(frame) if isinstance(joints.get(capture), dict) else None
        if not isinstance(frame_joints, dict):
            raise input_error(joints_path, "frame not found", record=f"capture {capture} frame {frame}")
        world = as_numbers(require(frame_joints, "world_coord", joints_path, f"capture {capture} frame {frame}"),
                           42 * 3, joints_path, f"capture {capture} frame {frame}", "world_coord").reshape(42, 3)
        pixels, depth = projector.project(world, capture, camera)
        for hand, start in HANDS:
            hand_valid = valid[start:start + 21] & (depth[start:start + 21] > 0)
            if not hand_valid[WRIST] or hand_valid.sum() <= MIN_VALID:
                continue
            points = pixels[start:start + 21]
            box = box_of_points(points[hand_valid], BOX_PADDING)
            tight = box_of_points(points[hand_valid])
            if box is None:
                continue
            kps = np.zeros((21, 3))
            kps[hand_valid, :2] = points[hand_valid]
            kps[hand_valid, 2] = 2
            ann = {"id": next_id, "image_id": image_id, "bbox": box, "tight_bbox": tight, "iscrowd": 0,
                   "category_id": 1, "hand_type": hand, "source_annotation_id": raw.get("id"),
                   "source_hand_type": raw.get("hand_type")}
            builder.add_annotation(ann, kps, f"{where} {hand} hand")
            next_id += 1
    return builder.finish([category(skeleton, 1, "hand")])


def read_interhand(src: Path, options: ReadOptions) -> ReadResult:
    skeleton = load_skeleton("interhand")
    result = ReadResult(skeleton=skeleton, image_root=src / "images", splits={}, counts={})
    for split in SPLITS:
        files = _files(src, split)
        if files is None:
            continue
        coco, counts = read_interhand_split(files, split, src / "images", options)
        result.splits[split], result.counts[split] = coco, counts
        result.notes.append(f"{split}: {files['data'].parent}")
    if not result.splits:
        raise input_error(src / "annotations" / "all" / "InterHand2.6M_train_data.json",
                          "file not found (nor annotations/<split>/ files)")
    return result
