"""Scores on the synthetic zoo that need a model run: cross-skeleton AP and the union head's extra points.

The ground truth comes from `evaluation/zoo.py` (hidden figures matched to the prepared annotations by image and
box IoU, one matcher for both scores); this module runs the Predictor on the GT boxes and scores the results.
"""
from __future__ import annotations

from pathlib import Path

from posebh_cli.data.prepared import PreparedDataset, open_prepared
from posebh_cli.evaluation import evaluate_predictions
from posebh_cli.evaluation.coco_oks import coco_ap
from posebh_cli.evaluation.zoo import (cross_ground_truth, find_groundtruth, load_groundtruth, select_points)
from posebh_cli.inference.evaluate import gt_boxes, predict_split
from posebh_cli.inference.predictor import Predictor, resolve_target
from posebh_cli.skeletons import Skeleton, load_skeleton

EXTRA_POINTS = ("pelvis", "thorax", "upper_neck", "head_top")  # coco_mpii21 points COCO does not label


def score_head_on(model, head: str, prepared: PreparedDataset | str | Path, split: str = "val",
                  flip: bool | None = None, batch_size: int = 32, max_images: int | None = None,
                  device: str | None = None, groundtruth: dict | None = None) -> dict[str, float]:
    """OKS AP (no-area rule) of `model`'s head `head` on another zoo dataset's images, against hidden points."""
    if not isinstance(prepared, PreparedDataset):
        prepared = open_prepared(prepared)
    was_training = model.training
    try:
        predictor = Predictor(model, dataset=head, device=device, batch_size=batch_size, flip=flip)
        gt = cross_ground_truth(prepared, split, predictor.skeleton, groundtruth, max_images)
        if not gt["annotations"]:
            return {}
        results = predict_split(predictor, prepared, split, gt["images"], gt_boxes(gt), use_nms=False)
    finally:
        model.train(was_training)
    return evaluate_predictions(gt, results, predictor.skeleton, "coco_noarea",
                                gt_name=f"{prepared.root} (zoo ground truth as {head})", results_name="<predictions>")


def cross_skeleton_scores(model, prepared: dict[str, PreparedDataset | str | Path], split: str = "val",
                          flip: bool | None = None, batch_size: int = 32, max_images: int | None = None,
                          device: str | None = None, heads: list[str] | None = None) -> dict[str, float]:
    """AP of every head of `model` on every OTHER dataset in `prepared` whose zoo figures have its skeleton.

    `prepared` maps dataset names (the model's head names) to prepared zoo datasets. `heads` names what to
    predict when it is not the model's heads: datasets a union-skeleton head covers, read through their
    keypoint names (method distill). Returns {"<head>@<dataset>": AP}; pairs of different body plans are skipped.
    """
    opened = {name: p if isinstance(p, PreparedDataset) else open_prepared(p) for name, p in prepared.items()}
    truths = {name: load_groundtruth(find_groundtruth(p)) for name, p in opened.items()}
    wanted = model.datasets if heads is None else heads
    scores = {}
    for head in wanted:
        skeleton = resolve_target(model, head).skeleton
        for name, ds in opened.items():
            if name == head or skeleton.name not in truths[name]["skeletons"]:
                continue
            metrics = score_head_on(model, head, ds, split, flip, batch_size, max_images, device, truths[name])
            if "AP" in metrics:
                scores[f"{head}@{name}"] = metrics["AP"]
    return scores




def score_extra_points(model, prepared, split: str = "val", points: tuple[str, ...] = EXTRA_POINTS,
                       skeleton: str | Skeleton = "coco_mpii21", groundtruth: str | Path | None = None,
                       flip: bool | None = None, batch_size: int = 32, max_images: int | None = None,
                       device: str | None = None) -> dict[str, float]:
    """OKS AP of the `points` a union head predicts beyond a dataset's labels, against the zoo's hidden GT.

    Predicts `skeleton` (the head with that skeleton) on the GT boxes of `split`, matches each box to a hidden
    figure (`evaluation/zoo.py`) and scores only `points` with the skeleton's sigmas (COCO AP keys). The Halpe
    protocol of seed 003 on the synthetic zoo.
    """
    if not isinstance(prepared, PreparedDataset):
        prepared = open_prepared(prepared)
    union = skeleton if isinstance(skeleton, Skeleton) else load_skeleton(skeleton)
    hidden = load_groundtruth(groundtruth if groundtruth is not None else find_groundtruth(prepared))
    gt = cross_ground_truth(prepared, split, union, hidden, max_images)
    was_training = model.training
    try:
        predictor = Predictor(model, skeleton=union, device=device, batch_size=batch_size, flip=flip)
        results = predict_split(predictor, prepared, split, gt["images"], gt_boxes(gt), use_nms=False)
    finally:
        model.train(was_training)
    gt, results = select_points(gt, results, union, tuple(points))
    return coco_ap(gt, results, [union.sigmas[union.index(p)] for p in points])


__all__ = ["EXTRA_POINTS", "cross_skeleton_scores", "score_extra_points", "score_head_on"]
