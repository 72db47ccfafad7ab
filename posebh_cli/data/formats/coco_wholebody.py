"""COCO-WholeBody v1.0: body 17 + foot 6 + face 68 + left hand 21 + right hand 21 merged into the 133 order.

Part arrays and part boxes stay on each annotation as they were (evaluation reads them per part). In the merged
array a part point counts as labelled when its flag is > 0: the released face/hand flags are often float
confidences left from pseudo-labelling, which the dataset authors say to treat as valid when > 0.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from posebh_cli.data.formats.coco import read_coco_images_2017
from posebh_cli.data.formats.common import ReadOptions, ReadResult, as_keypoints, as_numbers, require
from posebh_cli.errors import input_error

# (annotation key, number of points, validity flag) in the 133-point order after the 17 body points.
PARTS = (("foot_kpts", 6, "foot_valid"), ("face_kpts", 68, "face_valid"),
         ("lefthand_kpts", 21, "lefthand_valid"), ("righthand_kpts", 21, "righthand_valid"))


def merged_keypoints(ann: dict, path: Path, where: str) -> np.ndarray:
    """The 133 x 3 array of one annotation; a part whose `*_valid` flag is false gets v=0."""
    body = as_keypoints(require(ann, "keypoints", path, where), 17, path, where)
    pieces = [body]
    for key, count, flag in PARTS:
        part = as_numbers(require(ann, key, path, where), count * 3, path, where, key).reshape(count, 3)
        if np.any(part[:, 2] < 0):
            raise input_error(path, "visibility must be >= 0", record=where, field=key)
        part = part.copy()
        part[:, 2] = np.where(part[:, 2] > 0, 2, 0)
        valid = ann.get(flag, True)
        if not isinstance(valid, (bool, int)):
            raise input_error(path, f"expected true or false, got {valid!r}", record=where, field=flag)
        if not valid:
            part[:, 2] = 0
        pieces.append(part)
    return np.concatenate(pieces, axis=0)


def read_coco_wholebody(src: Path, options: ReadOptions) -> ReadResult:
    """COCO-WholeBody: annotations under SRC/annotations/, images under SRC/{train,val}2017/."""
    return read_coco_images_2017(src, options, "coco_wholebody", "annotations/coco_wholebody_{split}_v1.0.json",
                                 keypoints_of=merged_keypoints)
