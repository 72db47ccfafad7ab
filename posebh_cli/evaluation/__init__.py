"""Evaluation metrics: COCO-OKS AP (custom sigmas, no-area mode, whole-body parts), MPII PCKh, InterHand PCK/AUC/EPE.

`evaluate_predictions(gt, results, skeleton, protocol)` scores COCO-style results against a COCO keypoint GT
dict and returns flat metrics. `protocol_for(skeleton_name, source_format)` picks a dataset's protocol.
AP/AR and all rates are fractions in [0, 1] (AP/AR are -1 for an area range without GT, as in pycocotools);
EPE is in pixels.
"""
from __future__ import annotations

from posebh_cli.errors import PosebhError, input_error
from posebh_cli.evaluation.coco_oks import coco_ap, coco_noarea_ap
from posebh_cli.evaluation.hand import hand_metrics
from posebh_cli.evaluation.inputs import WHOLEBODY_PARTS, aligned_arrays, check_ground_truth, check_results
from posebh_cli.evaluation.pckh import pckh
from posebh_cli.evaluation.wholebody import wholebody_ap
from posebh_cli.skeletons import Skeleton, load_skeleton

PROTOCOLS = ("coco", "coco_noarea", "wholebody", "pckh", "interhand")

# The metric a run reports first and selects checkpoints by.
PRIMARY_METRIC = {"coco": "AP", "coco_noarea": "AP", "wholebody": "AP", "pckh": "PCKh", "interhand": "AUC"}

_BY_NAME = {"aic": "coco_noarea", "smpl24": "coco_noarea", "3dpw": "coco_noarea",
            "coco_wholebody": "wholebody", "mpii": "pckh", "interhand": "interhand", "interhand2.6m": "interhand"}


def protocol_for(skeleton_name: str, source_format: str | None = None) -> str:
    """The default protocol of a dataset: by skeleton first, then by source format, else COCO AP."""
    for name in (skeleton_name, source_format):
        if name and name.lower() in _BY_NAME:
            return _BY_NAME[name.lower()]
    return "coco"


def evaluate_predictions(gt: dict, results: list[dict], skeleton: Skeleton | str, protocol: str,
                         gt_name: str = "<annotations>", results_name: str = "<results>") -> dict[str, float]:
    """Flat metrics of `results` (COCO results format) against `gt` (COCO keypoint dict) under `protocol`.

    PCKh and InterHand pair each non-crowd GT annotation with one result: by `ann_id` when results carry it,
    else by the nearest box centre in the same image. `gt_name`/`results_name` name the inputs in errors.
    """
    if protocol not in PROTOCOLS:
        raise PosebhError(f"unknown protocol '{protocol}'; choose one of {', '.join(PROTOCOLS)}")
    if isinstance(skeleton, str):
        skeleton = load_skeleton(skeleton)
    if protocol == "wholebody" and tuple(skeleton.parts) != WHOLEBODY_PARTS:
        raise PosebhError(f"protocol 'wholebody' needs a skeleton with parts {list(WHOLEBODY_PARTS)}; "
                          f"'{skeleton.name}' has {list(skeleton.parts) or 'none'}")

    gt = check_ground_truth(gt, skeleton, gt_name, need_area=protocol in ("coco", "wholebody"))
    results = check_results(results, gt, skeleton, results_name)
    if protocol == "coco":
        return coco_ap(gt, results, skeleton.sigmas)
    if protocol == "coco_noarea":
        return coco_noarea_ap(gt, results, skeleton.sigmas)
    if protocol == "wholebody":
        return wholebody_ap(gt, results, skeleton)

    gt = {**gt, "annotations": [ann for ann in gt["annotations"] if not ann["iscrowd"]]}
    gt_xy, labelled, pred_xy = aligned_arrays(gt, results, skeleton.num_keypoints)
    if protocol == "interhand":
        return hand_metrics(gt_xy, labelled, pred_xy)
    for ann in gt["annotations"]:
        if "head_box" not in ann:
            raise input_error(gt_name, "missing (PCKh needs the MPII head box [x1, y1, x2, y2])",
                              record=f"annotation id={ann['id']}", field="head_box")
    head_boxes = [ann["head_box"] for ann in gt["annotations"]]
    return pckh(gt_xy, labelled, pred_xy, head_boxes, skeleton)


__all__ = ["PROTOCOLS", "PRIMARY_METRIC", "evaluate_predictions", "protocol_for"]
