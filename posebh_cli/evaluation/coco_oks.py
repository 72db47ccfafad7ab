"""COCO keypoint AP/AR from OKS, on pycocotools' COCOeval, with any skeleton's sigmas.

Two rule sets share one evaluator:
- `coco`: exactly pycocotools (`num_keypoints == 0` marks a GT ignored, every result takes part).
- xtcocotools (`xtcoco=True`, used for AIC/3DPW without areas and for COCO-WholeBody parts): a GT is ignored
  when its keypoints have no label (v > 0), results without any positive keypoint score are dropped, a part may
  rank results by its own score key, and with `use_area=False` the GT area is `bbox_w * bbox_h * 0.53` both in
  the OKS and in the medium/large area ranges.
Both rules are applied by rewriting the GT and result records before COCOeval sees them, so pycocotools'
matching, accumulation and summary run unchanged. Only the OKS is overridden, vectorised over detections
with the same arithmetic.
"""
from __future__ import annotations

import io
from contextlib import redirect_stdout

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
NO_AREA_FACTOR = 0.53  # xtcocotools' stand-in for the segmentation area: bbox area x 0.53


class OksEval(COCOeval):
    """pycocotools' keypoint COCOeval whose OKS runs one numpy pass per GT instead of one per pair."""

    def __init__(self, coco_gt: COCO, coco_dt: COCO, sigmas):
        super().__init__(coco_gt, coco_dt, iouType="keypoints")
        self.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=float)

    def computeOks(self, imgId, catId):  # noqa: N802, N803 (pycocotools' names)
        gts = self._gts[imgId, catId]
        dts = self._dts[imgId, catId]
        order = np.argsort([-d["score"] for d in dts], kind="mergesort")
        dts = [dts[i] for i in order[: self.params.maxDets[-1]]]
        if not gts or not dts:
            return []
        variances = (self.params.kpt_oks_sigmas * 2) ** 2
        dt_kpts = np.array([d["keypoints"] for d in dts], dtype=float).reshape(len(dts), -1, 3)
        xd, yd = dt_kpts[..., 0], dt_kpts[..., 1]
        ious = np.zeros((len(dts), len(gts)))
        for j, gt in enumerate(gts):
            g = np.array(gt["keypoints"], dtype=float).reshape(-1, 3)
            visible = g[:, 2] > 0
            if visible.any():
                dx, dy = xd - g[:, 0], yd - g[:, 1]
            else:
                # No labelled keypoint: distance to a box twice the GT box (zero inside it).
                x, y, w, h = gt["bbox"]
                x0, x1, y0, y1 = x - w, x + w * 2, y - h, y + h * 2
                dx = np.maximum(0, x0 - xd) + np.maximum(0, xd - x1)
                dy = np.maximum(0, y0 - yd) + np.maximum(0, yd - y1)
            e = (dx ** 2 + dy ** 2) / variances / (gt["area"] + np.spacing(1)) / 2
            if visible.any():
                e = e[:, visible]
            ious[:, j] = np.sum(np.exp(-e), axis=1) / e.shape[1]
        return ious


def _flat_slice(keypoints: list, part: tuple[int, int] | None) -> list:
    return keypoints if part is None else keypoints[3 * part[0]: 3 * part[1]]


def _gt_view(ann: dict, part, xtcoco: bool, use_area: bool) -> dict:
    keypoints = _flat_slice(ann["keypoints"], part)
    labelled = int(np.count_nonzero(np.asarray(keypoints[2::3], dtype=float) > 0))
    x, y, w, h = ann["bbox"]
    return {
        "id": ann["id"], "image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": ann["bbox"],
        "iscrowd": ann["iscrowd"], "keypoints": keypoints,
        "num_keypoints": labelled if xtcoco else ann.get("num_keypoints", labelled),
        "area": ann["area"] if use_area else w * h * NO_AREA_FACTOR,
    }


def _result_areas(results: list[dict], area_part) -> list[float]:
    """Result areas as pycocotools' loadRes sets them: the box area when the first result has a box,
    otherwise the area of the box around the keypoints (those of `area_part` for whole-body results)."""
    if results and "bbox" in results[0]:
        return [r["bbox"][2] * r["bbox"][3] if "bbox" in r else 0.0 for r in results]
    areas = []
    for r in results:
        kp = _flat_slice(r["keypoints"], area_part)
        x, y = kp[0::3], kp[1::3]
        areas.append((np.max(x) - np.min(x)) * (np.max(y) - np.min(y)))
    return areas


def _result_views(results: list[dict], part, score_key: str, xtcoco: bool, area_part) -> list[dict]:
    views = []
    for index, (res, area) in enumerate(zip(results, _result_areas(results, area_part))):
        keypoints = _flat_slice(res["keypoints"], part)
        if xtcoco and not np.any(np.asarray(keypoints[2::3], dtype=float) > 0):
            continue  # xtcocotools skips results whose keypoints all have score 0
        views.append({"id": index + 1, "image_id": res["image_id"], "category_id": res["category_id"],
                      "keypoints": keypoints, "score": res.get(score_key, res["score"]), "area": area,
                      "iscrowd": 0})
    return views


def _coco(images: list, categories: list, annotations: list) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    coco.createIndex()
    return coco


def oks_ap(gt: dict, results: list[dict], sigmas, *, part: tuple[int, int] | None = None, score_key: str = "score",
           xtcoco: bool = False, use_area: bool = True, area_part: tuple[int, int] | None = None) -> dict[str, float]:
    """AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl over checked GT and results (see `inputs.py`).

    `part` = (start, end) evaluates only those keypoints (with the matching slice of `sigmas`);
    `area_part` picks the keypoints whose extent gives a box-less result its area.
    """
    sigmas = np.asarray(sigmas, dtype=float)
    if part is not None:
        sigmas = sigmas[part[0]: part[1]]
    gt_anns = [_gt_view(ann, part, xtcoco, use_area) for ann in gt["annotations"]]
    dt_anns = _result_views(results, part, score_key, xtcoco, area_part)
    with redirect_stdout(io.StringIO()):  # pycocotools prints progress and the summary table
        evaluator = OksEval(_coco(gt["images"], gt["categories"], gt_anns),
                            _coco(gt["images"], gt["categories"], dt_anns), sigmas)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}


def coco_ap(gt: dict, results: list[dict], sigmas) -> dict[str, float]:
    """The COCO keypoint protocol exactly as pycocotools computes it."""
    return oks_ap(gt, results, sigmas)


def coco_noarea_ap(gt: dict, results: list[dict], sigmas) -> dict[str, float]:
    """xtcocotools' `use_area=False` protocol (AIC, 3DPW): area = bbox w * h * 0.53."""
    return oks_ap(gt, results, sigmas, xtcoco=True, use_area=False)
