"""MPII PCKh@0.5 and PCKh@0.1, as the MPII evaluation (and mmpose 0.x / PoseBH) compute it.

The head size is the length of the head box diagonal times 0.6 (SC_BIAS); a labelled joint is correct when
its error divided by the head size is <= the threshold. Per-joint rates are pooled over people; the mean
leaves out pelvis and thorax and weights the other joints by their labelled counts. Per-part rows average
the left and right joints. Rates are fractions in [0, 1]; a row with no labelled joint is NaN.
Our prepared MPII keeps 0-based joints and predictions are 0-based, so no +1 shift is needed.
"""
from __future__ import annotations

import numpy as np

from posebh_cli.errors import PosebhError
from posebh_cli.skeletons import Skeleton

SC_BIAS = 0.6
THRESHOLDS = np.arange(0, 0.5 + 0.01, 0.01)  # the official grid; index 50 is 0.5, index 10 is 0.1
EXCLUDED = ("pelvis", "thorax")
PART_ROWS = {
    "Head": ("head_top",),
    "Shoulder": ("left_shoulder", "right_shoulder"),
    "Elbow": ("left_elbow", "right_elbow"),
    "Wrist": ("left_wrist", "right_wrist"),
    "Hip": ("left_hip", "right_hip"),
    "Knee": ("left_knee", "right_knee"),
    "Ankle": ("left_ankle", "right_ankle"),
}


def _joint_rates(scaled_error: np.ndarray, labelled: np.ndarray, threshold: float) -> np.ndarray:
    """Per-joint fraction of labelled joints within `threshold` head sizes (NaN errors count as misses)."""
    hits = ((scaled_error <= threshold) & labelled).sum(axis=0)
    counts = labelled.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / counts


def pckh(gt_xy: np.ndarray, labelled: np.ndarray, pred_xy: np.ndarray, head_boxes: np.ndarray,
         skeleton: Skeleton) -> dict[str, float]:
    """PCKh metrics for N people: `gt_xy`, `pred_xy` [N, K, 2] (NaN = not predicted), `labelled` [N, K] bool,
    `head_boxes` [N, 4] as x1, y1, x2, y2. Keys: PCKh, PCKh@0.1, PCKh/<part> for the seven part rows."""
    missing = [name for names in PART_ROWS.values() for name in names if name not in skeleton.keypoints]
    missing += [name for name in EXCLUDED if name not in skeleton.keypoints]
    if missing:
        raise PosebhError(f"PCKh needs the MPII joints; skeleton '{skeleton.name}' lacks {missing}")
    head_boxes = np.asarray(head_boxes, dtype=float).reshape(-1, 4)
    head_size = np.linalg.norm(head_boxes[:, 2:] - head_boxes[:, :2], axis=1) * SC_BIAS
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled_error = np.linalg.norm(pred_xy - gt_xy, axis=-1) / head_size[:, None]
    labelled = np.asarray(labelled, dtype=bool)

    counts = labelled.sum(axis=0).astype(float)
    counts[[skeleton.index(name) for name in EXCLUDED]] = 0
    weights = counts / counts.sum() if counts.sum() > 0 else counts

    def weighted_mean(rates: np.ndarray) -> float:
        return float(np.sum(np.nan_to_num(rates) * weights)) if counts.sum() > 0 else float("nan")

    at_half = _joint_rates(scaled_error, labelled, THRESHOLDS[50])
    metrics = {"PCKh": weighted_mean(at_half),
               "PCKh@0.1": weighted_mean(_joint_rates(scaled_error, labelled, THRESHOLDS[10]))}
    for row, names in PART_ROWS.items():
        metrics[f"PCKh/{row}"] = float(np.mean([at_half[skeleton.index(name)] for name in names]))
    return metrics
