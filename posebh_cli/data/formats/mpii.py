"""MPII Human Pose in mmpose's JSON form, with head boxes for PCKh from `mpii_gt_val.mat`.

`mpii_{train,val}.json` is a list of people: {image, center [x, y], scale (person height / 200),
joints 16 x [x, y], joints_vis 16}, in 1-based Matlab pixel coordinates. We store 0-based coordinates.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from posebh_cli.data.formats.common import (ReadOptions, ReadResult, SplitBuilder, as_numbers, category, load_json,
                                            progress, require)
from posebh_cli.errors import input_error
from posebh_cli.skeletons import Skeleton, load_skeleton

# Pixel size of scale == 1 (MPII's scale is the person height divided by 200).
PIXEL_STD = 200.0


def box_from_center_scale(center: np.ndarray, scale: float) -> list[float]:
    """The person box mmpose 1.x derives from MPII's center/scale (0-based output).

    The centre moves down by 15/200 of the box height so that the feet are not cut off, as mmpose does; the box is
    a square of side scale*200 px (the top-down transform later pads it by 1.25 and fixes the aspect ratio).
    Both shifts (down, then -1 for 1-based → 0-based) follow mmpose's MpiiDataset.
    """
    side = scale * PIXEL_STD
    cx, cy = float(center[0]), float(center[1])
    if cx > 0:
        cy += 15.0 / PIXEL_STD * side
    cx, cy = cx - 1.0, cy - 1.0
    return [cx - side / 2, cy - side / 2, side, side]


def read_head_boxes(path: Path) -> np.ndarray:
    """`headboxes_src` of mpii_gt_val.mat as [N, 4] (x1, y1, x2, y2), 0-based like the keypoints."""
    if not path.is_file():
        raise input_error(path, "file not found (the val head boxes needed for PCKh)")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several unrelated types on a broken file
        raise input_error(path, f"cannot read MATLAB file ({exc})") from None
    for key in ("dataset_joints", "jnt_missing", "pos_gt_src", "headboxes_src"):
        if key not in mat:
            raise input_error(path, "missing", field=key)
    boxes = np.asarray(mat["headboxes_src"], dtype=np.float64)
    if boxes.ndim != 3 or boxes.shape[:2] != (2, 2):
        raise input_error(path, f"expected shape [2, 2, N], got {list(boxes.shape)}", field="headboxes_src")
    if not np.all(np.isfinite(boxes)):
        raise input_error(path, "contains NaN or infinity", field="headboxes_src")
    # headboxes_src[corner, xy, person] -> [person, (x1, y1, x2, y2)]
    return boxes.transpose(2, 0, 1).reshape(-1, 4) - 1.0


def read_mpii_split(path: Path, split: str, skeleton: Skeleton, image_root: Path, options: ReadOptions,
                    head_boxes: np.ndarray | None) -> tuple[dict, dict]:
    data = load_json(path)
    if not isinstance(data, list):
        raise input_error(path, f"expected a list of people, got {type(data).__name__}")
    if head_boxes is not None and len(head_boxes) != len(data):
        raise input_error(path, f"{len(data)} people but mpii_gt_val.mat has {len(head_boxes)} head boxes")
    builder = SplitBuilder(split, path, image_root, options)
    image_ids: dict[str, int] = {}
    num = skeleton.num_keypoints
    for index, person in enumerate(progress(data, f"{split} people")):
        where = f"person {index}"
        name = require(person, "image", path, where)
        if not isinstance(name, str) or not name:
            raise input_error(path, f"expected a non-empty string, got {name!r}", record=where, field="image")
        center = as_numbers(require(person, "center", path, where), 2, path, where, "center")
        scale = float(as_numbers([require(person, "scale", path, where)], 1, path, where, "scale")[0])
        if scale <= 0:
            raise input_error(path, f"must be positive, got {scale:g}", record=where, field="scale")
        joints = as_numbers(require(person, "joints", path, where), num * 2, path, where, "joints").reshape(num, 2)
        vis = as_numbers(require(person, "joints_vis", path, where), num, path, where, "joints_vis")
        if name not in image_ids:
            image_ids[name] = len(image_ids) + 1
            # MPII's JSON has no image size: the builder reads it from the image header.
            builder.add_image({"id": image_ids[name], "file_name": name, "width": None, "height": None}, where)
        kps = np.zeros((num, 3))
        kps[:, :2] = joints - 1.0
        kps[:, 2] = np.where(vis > 0, 2, 0)
        ann = {"id": index + 1, "image_id": image_ids[name], "bbox": box_from_center_scale(center, scale),
               "iscrowd": 0, "category_id": 1}
        if head_boxes is not None:
            ann["head_box"] = [float(v) for v in head_boxes[index]]
        builder.add_annotation(ann, kps, where)
    return builder.finish([category(skeleton, 1, "person")])


def read_mpii(src: Path, options: ReadOptions) -> ReadResult:
    """MPII: SRC/annotations/mpii_{train,val}.json (+ mpii_gt_val.mat for val), images in SRC/images/."""
    skeleton = load_skeleton("mpii")
    result = ReadResult(skeleton=skeleton, image_root=src / "images", splits={}, counts={})
    for split in ("train", "val"):
        path = src / "annotations" / f"mpii_{split}.json"
        if not path.is_file():
            continue
        head_boxes = read_head_boxes(src / "annotations" / "mpii_gt_val.mat") if split == "val" else None
        coco, counts = read_mpii_split(path, split, skeleton, src / "images", options, head_boxes)
        result.splits[split], result.counts[split] = coco, counts
    if not result.splits:
        raise input_error(src / "annotations" / "mpii_train.json", "file not found (nor mpii_val.json)")
    return result
