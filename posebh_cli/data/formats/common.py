"""Shared pieces of the native-format readers: strict JSON/field checks and the per-split builder.

Every reader turns a dataset's own files into COCO-style split dicts (in the dataset's own keypoint order) and
hands them to `write_prepared`. The checks here are the strict ones every real format needs: unique ids, keypoint
arrays of the right length, finite numbers, boxes with positive size, listed images that exist.
"""
from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from posebh_cli.errors import input_error
from posebh_cli.files import read_json
from posebh_cli.skeletons import Skeleton


@dataclass
class ReadOptions:
    """What `prepare_dataset` passes to every reader."""

    skip_missing: bool = False
    seed: int = 0
    check_images: bool = True
    verify_images: bool = False  # full decode of every image instead of the header and end-marker check
    detections: Path | None = None


@dataclass
class ReadResult:
    """What a reader returns: enough for `write_prepared` plus lines for the summary."""

    skeleton: Skeleton
    image_root: Path
    splits: dict[str, dict]
    counts: dict[str, dict]
    detections: dict[str, list] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def progress(items: Iterable, desc: str, total: int | None = None) -> Iterable:
    """A progress bar for long loops over records; silent when stderr is not a terminal."""
    return tqdm(items, desc=desc, total=total, leave=False, disable=None, dynamic_ncols=True)


def load_json(path: Path):
    """Parse a JSON file; a missing file or broken JSON becomes a one-line PosebhError."""
    return read_json(path)


def require(record: dict, key: str, path: Path, where: str):
    if not isinstance(record, dict):
        raise input_error(path, f"expected an object, got {type(record).__name__}", record=where)
    if key not in record:
        raise input_error(path, "missing", record=where, field=key)
    return record[key]


def require_list(data, key: str, path: Path) -> list:
    """`data[key]` as a list, for the top-level arrays of a COCO-style file."""
    if not isinstance(data, dict):
        raise input_error(path, f"expected a JSON object with '{key}', got {type(data).__name__}")
    value = data.get(key)
    if not isinstance(value, list):
        raise input_error(path, "missing or not a list", field=key)
    return value


def as_int_id(value, path: Path, where: str, key: str = "id") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise input_error(path, f"expected an integer, got {value!r}", record=where, field=key)
    return value


def as_numbers(values, count: int, path: Path, where: str, key: str) -> np.ndarray:
    """A flat (or nested) list of exactly `count` finite numbers as float64 (a string "12.5" is not a number)."""
    try:
        items = np.asarray(values, dtype=object).reshape(-1)
    except (TypeError, ValueError):
        raise input_error(path, "expected numbers", record=where, field=key) from None
    bad = next((v for v in items if isinstance(v, (bool, np.bool_))
                or not isinstance(v, (int, float, np.integer, np.floating))), None)
    if bad is not None:
        raise input_error(path, f"expected numbers, got {bad!r}", record=where, field=key)
    array = items.astype(np.float64)
    if array.size != count:
        raise input_error(path, f"expected {count} values, got {array.size}", record=where, field=key)
    if not np.all(np.isfinite(array)):
        raise input_error(path, "contains NaN or infinity", record=where, field=key)
    return array


def as_keypoints(values, num_keypoints: int, path: Path, where: str, key: str = "keypoints") -> np.ndarray:
    """COCO `[x, y, v] * K` → float64 [K, 3] with v in {0, 1, 2}."""
    kps = as_numbers(values, num_keypoints * 3, path, where, key).reshape(num_keypoints, 3)
    if not np.all(np.isin(kps[:, 2], (0, 1, 2))):
        bad = kps[~np.isin(kps[:, 2], (0, 1, 2)), 2][0]
        raise input_error(path, f"visibility must be 0, 1 or 2, got {bad:g}", record=where, field=key)
    return kps


def as_box(values, path: Path, where: str, key: str = "bbox") -> list[float]:
    """An `[x, y, w, h]` box with finite values and positive size."""
    box = as_numbers(values, 4, path, where, key)
    if box[2] <= 0 or box[3] <= 0:
        raise input_error(path, f"box must have positive width and height, got {box.tolist()}", record=where, field=key)
    return [float(v) for v in box]


def box_of_points(points: np.ndarray, padding: float = 1.0) -> list[float] | None:
    """Tight `[x, y, w, h]` box of 2D points, scaled by `padding` about its centre; None when empty or flat."""
    if len(points) == 0:
        return None
    x1, y1 = points.min(axis=0)
    x2, y2 = points.max(axis=0)
    w, h = (x2 - x1) * padding, (y2 - y1) * padding
    if w <= 0 or h <= 0:
        return None
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return [float(cx - w / 2), float(cy - h / 2), float(w), float(h)]


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image, read from the PNG/JPEG header when possible (datasets hold 10^5 images)."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n":
                width, height = struct.unpack(">II", head[16:24])
                return int(width), int(height)
            if head[:2] == b"\xff\xd8":
                size = _jpeg_size(f)
                if size is not None:
                    return size
    except OSError:
        return None
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return None if image is None else (int(image.shape[1]), int(image.shape[0]))


def image_problem(path: Path, verify: bool = False) -> str | None:
    """Why an image file cannot be used ("not found", "cannot be decoded", ...), or None when it can.

    The default check reads the header and the format's end marker (catches 0-byte, non-image and truncated
    PNG/JPEG files at a few bytes per image); `verify` decodes the whole image.
    """
    if not path.is_file():
        return "not found"
    if verify:
        return None if cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None else "cannot be decoded"
    if image_size(path) is None:
        return "is not a readable image"
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(0, os.fstat(f.fileno()).st_size - 12))
            tail = f.read()
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if head[:8] == b"\x89PNG\r\n\x1a\n" and not tail.endswith(b"IEND\xaeB`\x82"):
        return "is truncated (no PNG end chunk)"
    if head[:2] == b"\xff\xd8" and b"\xff\xd9" not in tail:
        return "is truncated (no JPEG end marker)"
    return None


def check_image_files(paths: list[Path], verify: bool, desc: str) -> list[str | None]:
    """`image_problem` of every path, in order, on a few threads (file IO and OpenCV release the GIL)."""
    workers = min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(workers) as pool:
        return list(progress(pool.map(lambda p: image_problem(p, verify), paths), desc, total=len(paths)))


def _jpeg_size(f) -> tuple[int, int] | None:
    # Walk the JPEG markers to the first start-of-frame (SOF0..SOF15 except DHT/JPG/DAC), which holds H and W.
    f.seek(2)
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":
            byte = f.read(1)
        while byte == b"\xff":
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            return None
        length = struct.unpack(">H", length_bytes)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            data = f.read(5)
            if len(data) < 5:
                return None
            height, width = struct.unpack(">HH", data[1:5])
            return int(width), int(height)
        f.seek(length - 2, 1)


def to_coco_keypoints(kps: np.ndarray) -> list[float]:
    """[K, 3] → flat list with integer visibility, as COCO files store it."""
    out = []
    for x, y, v in kps.tolist():
        out.extend((float(x), float(y), int(v)))
    return out


def category(skeleton: Skeleton, cat_id: int = 1, name: str | None = None, supercategory: str | None = None) -> dict:
    """A COCO category carrying the skeleton's keypoint names and 1-based links."""
    return {"id": cat_id, "name": name or skeleton.name, "supercategory": supercategory or skeleton.body_plan,
            "keypoints": list(skeleton.keypoints), "skeleton": [[a + 1, b + 1] for a, b in skeleton.links]}


class SplitBuilder:
    """Collects one split's images and annotations with the checks every format shares.

    Duplicate ids are errors. Images whose file is missing or unreadable (`image_problem`) are errors unless
    `skip_missing`, which drops them with their annotations and counts them. Labelled keypoints outside the
    image are kept, marked v=0, counted.
    """

    def __init__(self, split: str, source: Path, image_root: Path, options: ReadOptions):
        self.split, self.source, self.image_root, self.options = split, source, image_root, options
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self._image_by_id: dict[int, dict] = {}
        self._ann_ids: set[int] = set()
        self._missing: list[tuple[dict, str, str]] = []  # (image, record name for the message, problem)
        self._to_check: list[tuple[dict, str]] = []  # images whose file is checked in finish(), in parallel
        self._outside_by_ann: dict[int, int] = {}
        self.skipped_ids: set[int] = set()  # ids of images dropped as missing, known after finish()

    def add_image(self, image: dict, where: str) -> bool:
        """Add an image record (`id`, `file_name`, optional `width`/`height`); False when skipped as missing.

        When width/height are None the image header is read, so such formats always need the file.
        """
        image_id = as_int_id(image.get("id"), self.source, where)
        if image_id in self._image_by_id:
            raise input_error(self.source, f"duplicate image id {image_id}", record=where, field="id")
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise input_error(self.source, "expected a non-empty string", record=where, field="file_name")
        path = self.image_root / file_name
        self._image_by_id[image_id] = image
        if image.get("width") is None or image.get("height") is None:
            size = image_size(path) if path.is_file() else None
            if size is None:
                self._missing.append((image, where, "not found" if not path.is_file() else "is not a readable image"))
                return False
            image["width"], image["height"] = size
        if self.options.check_images:
            self._to_check.append((image, where))
        for key in ("width", "height"):
            value = image[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != int(value):
                raise input_error(self.source, f"expected a positive integer, got {value!r}", record=where, field=key)
            image[key] = int(value)
        self.images.append(image)
        return True

    def add_annotation(self, ann: dict, kps: np.ndarray, where: str) -> None:
        """Add an annotation whose keypoints are already parsed ([K, 3]); fills num_keypoints, area, iscrowd."""
        ann_id = as_int_id(ann.get("id"), self.source, where)
        if ann_id in self._ann_ids:
            raise input_error(self.source, f"duplicate annotation id {ann_id}", record=where, field="id")
        self._ann_ids.add(ann_id)
        image_id = as_int_id(ann.get("image_id"), self.source, where, "image_id")
        if image_id not in self._image_by_id:
            raise input_error(self.source, f"refers to unknown image id {image_id}", record=where, field="image_id")
        image = self._image_by_id[image_id]
        ann["bbox"] = as_box(ann.get("bbox"), self.source, where)
        kps = kps.copy()
        if image.get("width") is not None:  # None only for images already dropped as missing
            self._outside_by_ann[ann_id] = mark_outside(kps, image["width"], image["height"])
        ann["keypoints"] = to_coco_keypoints(kps)
        ann["num_keypoints"] = int((kps[:, 2] > 0).sum())
        ann.setdefault("iscrowd", 0)
        ann.setdefault("category_id", 1)
        if ann.get("area") is None:
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
        self.annotations.append(ann)

    def finish(self, categories: list[dict]) -> tuple[dict, dict]:
        """The COCO dict of the split and its counts; raises on missing or unreadable images unless skip_missing."""
        if self._to_check:
            paths = [self.image_root / image["file_name"] for image, _ in self._to_check]
            problems = check_image_files(paths, self.options.verify_images, f"checking {self.split} images")
            self._missing += [(image, where, problem)
                              for (image, where), problem in zip(self._to_check, problems) if problem]
            self._to_check = []
        total = len(self._image_by_id)
        if self._missing and not self.options.skip_missing:
            image, where, problem = self._missing[0]
            raise input_error(self.source, f"image {problem}: {self.image_root / image['file_name']} "
                              f"({len(self._missing)} of {total} images of split '{self.split}' missing or "
                              f"unreadable; --skip-missing drops them)", record=where, field="file_name")
        missing_ids = self.skipped_ids = {image["id"] for image, _, _ in self._missing}
        images = [image for image in self.images if image["id"] not in missing_ids]
        annotations = [a for a in self.annotations if a["image_id"] not in missing_ids]
        outside = sum(self._outside_by_ann.get(a["id"], 0) for a in annotations)
        coco = {"images": images, "annotations": annotations, "categories": categories}
        unreadable = sum(problem != "not found" for _, _, problem in self._missing)
        counts = {"images": len(images), "annotations": len(annotations), "invisible_outside_image": outside,
                  "skipped_missing": len(self._missing) - unreadable, "skipped_unreadable": unreadable}
        return coco, counts


def mark_outside(kps: np.ndarray, width: int, height: int) -> int:
    """Set v=0 on labelled keypoints outside [0, W) x [0, H); return how many were changed."""
    labelled = kps[:, 2] > 0
    inside = (kps[:, 0] >= 0) & (kps[:, 0] < width) & (kps[:, 1] >= 0) & (kps[:, 1] < height)
    outside = labelled & ~inside
    kps[outside, 2] = 0
    return int(outside.sum())

