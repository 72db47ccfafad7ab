"""InterHand2.6M 2D metrics as mmpose 0.x reports them: PCK@0.2, AUC over 0-30 px, EPE.

- PCK@0.2: a valid joint is correct when its error / max(w, h) of the tight box around the person's valid GT
  joints is < 0.2 (strict, as mmpose). The rate is computed per joint over people, then averaged over joints
  that have any valid sample. Hands whose tight box is a single point are left out.
- AUC: the same per-joint PCK with a fixed 30 px normaliser at thresholds i/20 (i = 0..19), averaged.
- EPE: mean pixel error over all valid joints of predicted people.
Rates are fractions in [0, 1]. A GT hand without a prediction counts as wrong in PCK and AUC and is left out
of EPE (its error is undefined).
"""
from __future__ import annotations

import numpy as np

PCK_THRESHOLD = 0.2
AUC_NORMALISER = 30.0
AUC_STEPS = 20


def _mean_joint_pck(errors: np.ndarray, valid: np.ndarray, threshold: float) -> float:
    """Per-joint rate of `errors < threshold` over valid entries, averaged over joints with any (NaN = miss)."""
    counts = valid.sum(axis=0)
    hits = ((errors < threshold) & valid).sum(axis=0)
    has_samples = counts > 0
    return float(np.mean(hits[has_samples] / counts[has_samples])) if has_samples.any() else 0.0


def hand_metrics(gt_xy: np.ndarray, valid: np.ndarray, pred_xy: np.ndarray) -> dict[str, float]:
    """PCK@0.2, AUC and EPE for N hands: `gt_xy`, `pred_xy` [N, K, 2] (NaN = not predicted), `valid` [N, K]."""
    gt_xy = np.asarray(gt_xy, dtype=float)
    pred_xy = np.asarray(pred_xy, dtype=float)
    valid = np.asarray(valid, dtype=bool)
    error = np.linalg.norm(pred_xy - gt_xy, axis=-1)

    # Tight box of the valid joints per person; invalid joints must not widen it.
    lo = np.where(valid[..., None], gt_xy, np.inf).min(axis=1)
    hi = np.where(valid[..., None], gt_xy, -np.inf).max(axis=1)
    with np.errstate(invalid="ignore"):
        size = np.max(hi - lo, axis=1)  # -inf for a hand without valid joints
    box_ok = size > 0
    pck_valid = valid & box_ok[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        pck = _mean_joint_pck(error / np.where(box_ok, size, 1.0)[:, None], pck_valid, PCK_THRESHOLD)
    auc = float(np.mean([_mean_joint_pck(error / AUC_NORMALISER, valid, i / AUC_STEPS) for i in range(AUC_STEPS)]))
    predicted = valid & np.isfinite(error)
    epe = float(error[predicted].mean()) if predicted.any() else float("nan")
    return {"PCK@0.2": pck, "AUC": auc, "EPE": epe}
