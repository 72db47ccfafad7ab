"""The prepared dataset: the one on-disk form everything downstream of `prepare-data` reads.

A folder holding `meta.yaml` (name, skeleton, source_format, image_root, splits, counts, optional detections) and
one COCO keypoint JSON per split, in the dataset's own keypoint order; pycocotools opens every split file. Extra
per-format fields (MPII head_box, InterHand hand_type, video ids, whole-body part arrays) stay on the records.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from posebh_cli.errors import PosebhError, input_error, fault_point
from posebh_cli.files import atomic_folder, read_json, read_yaml
from posebh_cli.skeletons import Skeleton, list_skeletons, load_skeleton

META_FILE = "meta.yaml"
SKELETON_FILE = "skeleton.yaml"
REQUIRED_KEYS = ("name", "skeleton", "source_format", "image_root", "splits")
OPTIONAL_KEYS = ("counts", "detections", "notes")
# Annotation fields that Instance holds directly; everything else goes to Instance.extras.
CORE_ANN_KEYS = {"id", "image_id", "bbox", "keypoints", "segmentation"}
CORE_IMAGE_KEYS = {"id", "file_name"}


@dataclass
class Instance:
    """One annotated person/animal/hand: what a top-down sample is cut from."""

    image_path: Path
    image_id: int
    ann_id: int
    bbox: np.ndarray  # [4] x, y, w, h
    keypoints: np.ndarray  # [K, 3] float32 x, y, v
    extras: dict = field(default_factory=dict)


@dataclass
class PreparedDataset:
    root: Path
    name: str
    skeleton: Skeleton
    source_format: str
    image_root: Path
    splits: dict[str, Path]
    counts: dict[str, dict] = field(default_factory=dict)
    detections: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def split_path(self, split: str) -> Path:
        if split not in self.splits:
            raise input_error(self.root / META_FILE, f"no split '{split}'; splits: {', '.join(self.splits)}",
                              field="splits")
        return self.splits[split]

    def load_coco(self, split: str) -> dict:
        """The raw COCO dict of a split."""
        return read_json(self.split_path(split), "split file")

    def load_detections(self, split: str) -> list[dict]:
        """Detected boxes stored for a split ([{image_id, bbox xywh, score, category_id}]); [] when none."""
        if split not in self.detections:
            return []
        return read_json(self.detections[split], "detections file")

    def instances(self, split: str, labelled_only: bool | None = None) -> list[Instance]:
        """One Instance per annotation of a split.

        `labelled_only` (default: True for the split named 'train') drops crowd annotations and those without
        any labelled keypoint, which carry no training signal; evaluation splits keep every annotation.
        """
        if labelled_only is None:
            labelled_only = split == "train"
        path = self.split_path(split)
        coco = self.load_coco(split)
        images = {image["id"]: image for image in coco.get("images", [])}
        num = self.skeleton.num_keypoints
        out = []
        for index, ann in enumerate(coco.get("annotations", [])):
            where = f"annotation id={ann.get('id')}" if isinstance(ann, dict) else f"annotation #{index}"
            if not isinstance(ann, dict):
                raise input_error(path, "expected an object", record=where)
            for key in ("id", "image_id", "keypoints", "bbox"):
                if key not in ann:
                    raise input_error(path, "missing", record=where, field=key)
            keypoints = _numbers(ann["keypoints"], num * 3, path, where, "keypoints").reshape(num, 3)
            bbox = _numbers(ann["bbox"], 4, path, where, "bbox")
            if not (bbox[2] > 0 and bbox[3] > 0):
                raise input_error(path, f"box must have positive width and height, got {bbox.tolist()}",
                                  record=where, field="bbox")
            if labelled_only and (ann.get("iscrowd", 0) or not np.any(keypoints[:, 2] > 0)):
                continue
            image = images.get(ann["image_id"])
            if image is None:
                raise input_error(path, f"refers to unknown image id {ann['image_id']}",
                                  record=f"annotation id={ann.get('id')}", field="image_id")
            extras = {k: v for k, v in image.items() if k not in CORE_IMAGE_KEYS}
            extras.update({k: v for k, v in ann.items() if k not in CORE_ANN_KEYS})
            out.append(Instance(image_path=self.image_root / image["file_name"], image_id=int(ann["image_id"]),
                                ann_id=int(ann["id"]), bbox=bbox,
                                keypoints=keypoints, extras=extras))
        return out


def _numbers(values, count: int, path: Path, where: str, key: str) -> np.ndarray:
    """Exactly `count` finite numbers (not strings, not booleans) as float32."""
    items = values if isinstance(values, list) else [values]
    bad = next((v for v in items if isinstance(v, bool) or not isinstance(v, (int, float))), None)
    if bad is not None or not isinstance(values, list):
        raise input_error(path, f"expected a list of {count} numbers, got {bad if bad is not None else values!r}",
                          record=where, field=key)
    if len(values) != count:
        raise input_error(path, f"expected {count} values, got {len(values)}", record=where, field=key)
    array = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise input_error(path, "contains NaN or infinity", record=where, field=key)
    return array


def _read_meta(root: Path) -> dict:
    meta_path = root / META_FILE
    if not meta_path.is_file():
        raise input_error(root, f"not a prepared dataset (no {META_FILE})")
    meta = read_yaml(meta_path)
    if not isinstance(meta, dict):
        raise input_error(meta_path, "expected a mapping")
    for key in REQUIRED_KEYS:
        if key not in meta:
            raise input_error(meta_path, "missing", field=key)
    unknown = set(meta) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS)
    if unknown:
        raise input_error(meta_path, f"unknown key(s) {sorted(unknown)}", field=sorted(unknown)[0])
    for key in ("name", "skeleton", "source_format", "image_root"):
        if not isinstance(meta[key], str) or not meta[key]:
            raise input_error(meta_path, f"expected a non-empty string, got {meta[key]!r}", field=key)
    for key in ("splits", "detections", "counts"):
        if key in meta and not isinstance(meta[key], dict):
            raise input_error(meta_path, f"expected a mapping, got {type(meta[key]).__name__}", field=key)
    if not meta["splits"]:
        raise input_error(meta_path, "no splits", field="splits")
    return meta


def _files(root: Path, mapping: dict, key: str) -> dict[str, Path]:
    out = {}
    for split, name in mapping.items():
        if not isinstance(name, str) or not (root / name).is_file():
            raise input_error(root / META_FILE, f"file not found: {root / str(name)}", field=f"{key}.{split}")
        out[str(split)] = root / name
    return out


def open_prepared(path: str | Path) -> PreparedDataset:
    """Open and validate a prepared dataset folder."""
    root = Path(path)
    meta = _read_meta(root)
    meta_path = root / META_FILE
    skeleton_ref = meta["skeleton"]
    if skeleton_ref in list_skeletons():
        skeleton = load_skeleton(skeleton_ref)
    elif skeleton_ref.endswith((".yaml", ".yml")):
        skeleton = load_skeleton(root / skeleton_ref)  # its own errors name the YAML file and key
    else:
        raise input_error(meta_path, f"unknown skeleton '{skeleton_ref}'; built-in: {', '.join(list_skeletons())}, "
                          "or a YAML file in the folder", field="skeleton")
    image_root = Path(meta["image_root"])
    if not image_root.is_absolute():
        image_root = root / image_root
    return PreparedDataset(root=root, name=meta["name"], skeleton=skeleton, source_format=meta["source_format"],
                           image_root=image_root, splits=_files(root, meta["splits"], "splits"),
                           counts=dict(meta.get("counts") or {}),
                           detections=_files(root, meta.get("detections") or {}, "detections"),
                           notes=list(meta.get("notes") or []))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _dump_json(data, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, default=_json_default, separators=(",", ":"))


def _category(skeleton: Skeleton, cat: dict | None = None) -> dict:
    cat = dict(cat or {"id": 1, "name": skeleton.name, "supercategory": skeleton.body_plan})
    cat["keypoints"] = list(skeleton.keypoints)
    cat["skeleton"] = [[a + 1, b + 1] for a, b in skeleton.links]  # COCO links are 1-based
    return cat


def _check_split(split: str, coco: dict, skeleton: Skeleton) -> None:
    for key in ("images", "annotations"):
        if not isinstance(coco.get(key), list):
            raise PosebhError(f"split '{split}': '{key}' must be a list")
    expected = skeleton.num_keypoints * 3
    for ann in coco["annotations"]:
        if len(ann.get("keypoints", ())) != expected:
            raise input_error(f"split '{split}'", f"expected {expected} values, got {len(ann.get('keypoints', ()))}",
                              record=f"annotation id={ann.get('id')}", field="keypoints")


def write_prepared(out_dir: str | Path, name: str, skeleton: str | Path | Skeleton, source_format: str,
                   image_root: str | Path, splits: dict[str, dict], counts: dict[str, dict],
                   detections: dict[str, list] | None = None, notes: list[str] | None = None) -> Path:
    """Write a prepared dataset atomically: everything goes to a temporary sibling folder renamed at the end.

    `skeleton` is a built-in name, a YAML path or a Skeleton; anything but an unchanged built-in is copied into
    the folder as skeleton.yaml. `image_root` is stored as given (relative paths are relative to `out_dir`).
    Every category gets the skeleton's keypoint names and 1-based links, so pycocotools and viewers agree.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PosebhError(f"{out}: already exists and is not empty; remove it or choose another output folder")
    sk = skeleton if isinstance(skeleton, Skeleton) else load_skeleton(skeleton)
    builtin = sk.name in list_skeletons() and load_skeleton(sk.name) == sk
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(out) as tmp:
        meta = {"name": name, "skeleton": sk.name if builtin else SKELETON_FILE, "source_format": source_format,
                "image_root": str(image_root), "splits": {}, "counts": {}}
        if not builtin:
            (tmp / SKELETON_FILE).write_text(yaml.safe_dump(sk.to_dict(), sort_keys=False), encoding="utf-8")
        for split, coco in splits.items():
            _check_split(split, coco, sk)
            coco = dict(coco)
            coco["categories"] = [_category(sk, cat) for cat in coco.get("categories") or [None]]
            _dump_json(coco, tmp / f"{split}.json")
            fault_point("prepare.split_written")
            meta["splits"][split] = f"{split}.json"
            meta["counts"][split] = {k: int(v) for k, v in (counts.get(split) or {}).items()}
        if detections:
            meta["detections"] = {}
            for split, dets in detections.items():
                _dump_json(dets, tmp / f"detections_{split}.json")
                meta["detections"][split] = f"detections_{split}.json"
        if notes:
            meta["notes"] = list(notes)
        (tmp / META_FILE).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    return out


__all__ = ["Instance", "PreparedDataset", "open_prepared", "write_prepared", "META_FILE"]
