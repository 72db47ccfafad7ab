"""Check and normalise COCO ground truth and COCO-style results before any metric runs.

Every problem becomes a one-line `PosebhError` naming the file, the record and the field. After these checks
the metric code can index fields without guarding: GT annotations carry `id, image_id, category_id, bbox,
keypoints (K*3)`, results carry `image_id, category_id, keypoints (K*3), score` (+ `bbox`, `ann_id`,
`<part>_score` when given). For COCO-WholeBody both sides are merged to the 133-point order.
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np

from posebh_cli.errors import input_error
from posebh_cli.skeletons import Skeleton

# COCO-WholeBody parts in merged order; the official files keep `keypoints` for the body and
# `<part>_kpts` for the others.
WHOLEBODY_PARTS = ("body", "foot", "face", "lefthand", "righthand")
_NUMBER_TYPES = (int, float, np.integer, np.floating)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _number_list(value, length: int | None, source, record, field) -> list[float]:
    if isinstance(value, (np.ndarray, tuple)):  # Python callers may hand over arrays ([K, 3] is fine)
        value = np.asarray(value).ravel().tolist()
    # Concrete types rather than numbers.Real: this runs over every keypoint of every record.
    if (not isinstance(value, list) or not all(isinstance(v, _NUMBER_TYPES) and not isinstance(v, bool) for v in value)
            or not np.isfinite(np.asarray(value, dtype=float)).all()):
        raise input_error(source, "expected a list of finite numbers", record=record, field=field)
    if length is not None and len(value) != length:
        raise input_error(source, f"expected {length} values, got {len(value)}", record=record, field=field)
    return value


def _merged_keypoints(record_dict: dict, skeleton: Skeleton, source, record) -> list[float]:
    """The flat K*3 keypoints in skeleton order; whole-body records may split them into part fields."""
    k = skeleton.num_keypoints
    keypoints = record_dict.get("keypoints")
    if keypoints is None:
        raise input_error(source, "missing", record=record, field="keypoints")
    if isinstance(keypoints, (np.ndarray, tuple)):
        keypoints = np.asarray(keypoints).ravel().tolist()
    if not isinstance(keypoints, list):
        raise input_error(source, "expected a list of numbers", record=record, field="keypoints")
    if len(keypoints) == 3 * k:
        return _number_list(keypoints, 3 * k, source, record, "keypoints")
    if skeleton.parts and tuple(skeleton.parts) == WHOLEBODY_PARTS:
        body_start, body_end = skeleton.parts["body"]
        if len(keypoints) == 3 * (body_end - body_start):
            merged = list(_number_list(keypoints, None, source, record, "keypoints"))
            for part in WHOLEBODY_PARTS[1:]:
                start, end = skeleton.parts[part]
                field = f"{part}_kpts"
                if field not in record_dict:
                    raise input_error(source, "missing (body-only 'keypoints' need all part fields)", record=record,
                                      field=field)
                merged += _number_list(record_dict[field], 3 * (end - start), source, record, field)
            return merged
        raise input_error(source, f"expected {3 * k} values (merged) or {3 * (body_end - body_start)} (body), "
                          f"got {len(keypoints)}", record=record, field="keypoints")
    raise input_error(source, f"expected {3 * k} values ({k} keypoints of '{skeleton.name}' x 3), got {len(keypoints)}",
                      record=record, field="keypoints")


def check_ground_truth(gt: dict, skeleton: Skeleton, source="<annotations>", need_area: bool = False) -> dict:
    """A normalised copy of a COCO keypoint GT dict: only the fields the metrics read, keypoints merged."""
    if not isinstance(gt, dict):
        raise input_error(source, "expected a COCO JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise input_error(source, "missing or not a list", field=key)
    images = []
    for i, image in enumerate(gt["images"]):
        if not isinstance(image, dict) or not _is_id(image.get("id")):
            raise input_error(source, "expected an integer", record=f"image #{i}", field="id")
        images.append({"id": image["id"], **{k: image[k] for k in ("width", "height", "file_name") if k in image}})
    categories = []
    for i, cat in enumerate(gt["categories"]):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")):
            raise input_error(source, "expected an integer", record=f"category #{i}", field="id")
        categories.append({"id": cat["id"], "name": str(cat.get("name", cat["id"]))})
    image_ids = {image["id"] for image in images}
    if len(image_ids) != len(images):
        seen: set = set()
        duplicate = next(image["id"] for image in images if image["id"] in seen or seen.add(image["id"]))
        raise input_error(source, f"duplicate image id {duplicate}", record=f"image id={duplicate}", field="id")
    category_ids = {cat["id"] for cat in categories}
    annotations, ann_ids = [], set()
    for i, ann in enumerate(gt["annotations"]):
        if not isinstance(ann, dict) or not _is_id(ann.get("id")):
            raise input_error(source, "expected an integer", record=f"annotation #{i}", field="id")
        record = f"annotation id={ann['id']}"
        if ann["id"] in ann_ids:  # pycocotools would silently merge them and score the wrong pairs
            raise input_error(source, f"duplicate annotation id {ann['id']}", record=record, field="id")
        ann_ids.add(ann["id"])
        if ann.get("image_id") not in image_ids:
            raise input_error(source, f"unknown image id {ann.get('image_id')!r}", record=record, field="image_id")
        category = ann.get("category_id", categories[0]["id"] if len(categories) == 1 else None)
        if category not in category_ids:
            raise input_error(source, f"unknown category id {category!r}", record=record, field="category_id")
        bbox = _number_list(ann.get("bbox"), 4, source, record, "bbox")
        out = {"id": ann["id"], "image_id": ann["image_id"], "category_id": category, "bbox": bbox,
               "keypoints": _merged_keypoints(ann, skeleton, source, record), "iscrowd": int(ann.get("iscrowd", 0) or 0)}
        if "num_keypoints" in ann:
            out["num_keypoints"] = ann["num_keypoints"]
        if "area" in ann:
            if not _is_number(ann["area"]):
                raise input_error(source, "expected a number", record=record, field="area")
            out["area"] = ann["area"]
        elif need_area:
            raise input_error(source, "missing (datasets without areas, like AIC, use --protocol coco_noarea)",
                              record=record, field="area")
        if "head_box" in ann:
            out["head_box"] = _number_list(ann["head_box"], 4, source, record, "head_box")
        annotations.append(out)
    return {"images": images, "annotations": annotations, "categories": categories}


def check_results(results: list, gt: dict, skeleton: Skeleton, source="<results>") -> list[dict]:
    """Normalised copies of COCO-style results, checked against the (already checked) GT."""
    if not isinstance(results, list):
        raise input_error(source, "expected a JSON list of results")
    image_ids = {image["id"] for image in gt["images"]}
    category_ids = {cat["id"] for cat in gt["categories"]}
    ann_ids = {ann["id"] for ann in gt["annotations"]}
    only_category = gt["categories"][0]["id"] if len(gt["categories"]) == 1 else None
    checked = []
    for i, res in enumerate(results):
        if not isinstance(res, dict):
            raise input_error(source, "expected an object", record=f"result #{i}")
        record = f"result #{i} (image_id={res.get('image_id')!r})"
        if res.get("image_id") not in image_ids:
            raise input_error(source, f"unknown image id {res.get('image_id')!r} (not in the annotations)",
                              record=record, field="image_id")
        category = res.get("category_id", only_category)
        if category not in category_ids:
            raise input_error(source, f"unknown category id {category!r} (annotations have {sorted(category_ids)})",
                              record=record, field="category_id")
        if not _is_number(res.get("score")):
            raise input_error(source, "missing or not a finite number", record=record, field="score")
        out = {"image_id": res["image_id"], "category_id": category, "score": res["score"],
               "keypoints": _merged_keypoints(res, skeleton, source, record)}
        if res.get("bbox") not in (None, []):
            out["bbox"] = _number_list(res["bbox"], 4, source, record, "bbox")
        if "ann_id" in res:
            if res["ann_id"] not in ann_ids:
                raise input_error(source, f"unknown annotation id {res['ann_id']!r}", record=record, field="ann_id")
            out["ann_id"] = res["ann_id"]
        for part in (*skeleton.parts, "wholebody"):
            key = f"{part}_score"
            if key in res:
                if not _is_number(res[key]):
                    raise input_error(source, "expected a finite number", record=record, field=key)
                out[key] = res[key]
        checked.append(out)
    return checked


def _centers_of_results(results: list[dict]) -> np.ndarray:
    """Box centres of results; a result without a box uses the box around its keypoints."""
    centers = []
    for res in results:
        if "bbox" in res:
            x, y, w, h = res["bbox"]
            centers.append((x + w / 2, y + h / 2))
        else:
            xy = np.asarray(res["keypoints"], dtype=float).reshape(-1, 3)[:, :2]
            centers.append(tuple((xy.min(0) + xy.max(0)) / 2))
    return np.asarray(centers, dtype=float).reshape(-1, 2)


def align_to_annotations(gt: dict, results: list[dict]) -> list[dict | None]:
    """For each GT annotation, the result that predicts it (None when there is none).

    Results carrying `ann_id` (written by the predictor when GT boxes are used) are matched by it, the
    highest score winning. Otherwise, per image, GT and results are paired greedily one-to-one by the
    distance between box centres, closest pair first.
    """
    if any("ann_id" in res for res in results):
        best: dict[int, dict] = {}
        for res in results:
            if "ann_id" in res and (res["ann_id"] not in best or res["score"] > best[res["ann_id"]]["score"]):
                best[res["ann_id"]] = res
        return [best.get(ann["id"]) for ann in gt["annotations"]]

    by_image: dict[int, list[dict]] = {}
    for res in results:
        by_image.setdefault(res["image_id"], []).append(res)
    aligned: list[dict | None] = [None] * len(gt["annotations"])
    gt_by_image: dict[int, list[int]] = {}
    for index, ann in enumerate(gt["annotations"]):
        gt_by_image.setdefault(ann["image_id"], []).append(index)
    for image_id, gt_indices in gt_by_image.items():
        candidates = by_image.get(image_id, [])
        if not candidates:
            continue
        boxes = np.asarray([gt["annotations"][j]["bbox"] for j in gt_indices], dtype=float)
        gt_centers = boxes[:, :2] + boxes[:, 2:] / 2
        distances = np.linalg.norm(gt_centers[:, None] - _centers_of_results(candidates)[None], axis=-1)
        for flat in np.argsort(distances, axis=None, kind="stable"):
            g, r = np.unravel_index(flat, distances.shape)
            if aligned[gt_indices[g]] is None and np.isfinite(distances[g, r]):
                aligned[gt_indices[g]] = candidates[r]
                distances[g, :] = np.inf
                distances[:, r] = np.inf
    return aligned


def aligned_arrays(gt: dict, results: list[dict], num_keypoints: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GT xy [N,K,2], GT labelled mask [N,K] and predicted xy [N,K,2] (NaN where no result) per annotation."""
    n = len(gt["annotations"])
    gt_kpts = np.asarray([ann["keypoints"] for ann in gt["annotations"]], dtype=float).reshape(n, num_keypoints, 3)
    pred_xy = np.full((n, num_keypoints, 2), np.nan)
    for index, res in enumerate(align_to_annotations(gt, results)):
        if res is not None:
            pred_xy[index] = np.asarray(res["keypoints"], dtype=float).reshape(num_keypoints, 3)[:, :2]
    return gt_kpts[..., :2], gt_kpts[..., 2] > 0, pred_xy
