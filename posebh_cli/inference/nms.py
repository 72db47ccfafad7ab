"""Pose post-processing for detector boxes: keypoint rescoring and OKS-based NMS.

Both follow the ViTPose / MMPose test settings: instance score = box score x mean of the keypoint scores
above 0.2, then greedy NMS with object keypoint similarity (threshold 0.9) where each instance's area is the
area of its padded (center, scale) box.
"""
from __future__ import annotations

import numpy as np


def rescore(keypoint_scores: np.ndarray, box_scores: np.ndarray, keypoint_thr: float = 0.2) -> np.ndarray:
    """Instance scores [N] from keypoint scores [N, K] and box scores [N].

    The keypoint term is the mean of the scores above `keypoint_thr`; an instance with none above it scores 0.
    """
    keypoint_scores = np.asarray(keypoint_scores, dtype=np.float64)
    confident = keypoint_scores > keypoint_thr
    count = confident.sum(axis=1)
    total = np.where(confident, keypoint_scores, 0.0).sum(axis=1)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return mean * np.asarray(box_scores, dtype=np.float64)


def oks_matrix(keypoints: np.ndarray, areas: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Pairwise OKS [N, N] between instances with keypoints [N, K, 2] (x, y) and areas [N].

    The scale of a pair is the mean of the two areas, as in the NMS of MMPose; every keypoint counts.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)[..., :2]
    areas = np.asarray(areas, dtype=np.float64)
    variances = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2                   # [K]
    sq_dist = ((keypoints[:, None] - keypoints[None, :]) ** 2).sum(-1)               # [N, N, K]
    pair_area = (areas[:, None] + areas[None, :]) / 2.0 + np.spacing(1)              # [N, N]
    e = sq_dist / variances / pair_area[..., None] / 2.0
    return np.exp(-e).mean(-1)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray,
            threshold: float = 0.9, later_first: bool = False) -> list[int]:
    """Indices of the instances kept by greedy OKS-NMS, best score first.

    Equal scores are visited in input order, or, with `later_first`, the later instance first as mmpose's
    `scores.argsort()[::-1]` does (evaluation uses that, to give mmpose's numbers).

    An instance is suppressed when its OKS with a higher-scoring kept instance is above `threshold`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return []
    oks = oks_matrix(keypoints, areas, sigmas)
    order = np.argsort(scores, kind="stable")[::-1] if later_first else np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(scores), dtype=bool)
    keep: list[int] = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= oks[i] > threshold
    return keep


def nms_instances(instances: list[dict], sigmas, threshold: float = 0.9, later_first: bool = False) -> list[int]:
    """OKS-NMS over predictor instances (dicts with `keypoints` [K, 3], `score`, `area`); kept indices."""
    if len(instances) < 2:
        return list(range(len(instances)))
    return oks_nms(np.stack([inst["keypoints"][:, :2] for inst in instances]),
                   np.array([inst["score"] for inst in instances]), np.array([inst["area"] for inst in instances]),
                   np.asarray(sigmas), threshold, later_first)


__all__ = ["rescore", "oks_matrix", "oks_nms", "nms_instances"]
