"""MPII PCKh and InterHand PCK/AUC/EPE on small cases computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from posebh_cli.evaluation import evaluate_predictions

# MPII order: 0 r_ank, 1 r_knee, 2 r_hip, 3 l_hip, 4 l_knee, 5 l_ank, 6 pelvis, 7 thorax, 8 upper_neck,
# 9 head_top, 10 r_wri, 11 r_elb, 12 r_sho, 13 l_sho, 14 l_elb, 15 l_wri.


def _coco(annotations: list[dict], num_keypoints: int) -> dict:
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "keypoints": [str(i) for i in range(num_keypoints)]}]}


def _ann(ann_id: int, xy: np.ndarray, visible: np.ndarray, bbox, **extra) -> dict:
    kpts = np.concatenate([np.where(visible[:, None], xy, 0.0), np.where(visible, 2, 0)[:, None]], 1)
    return {"id": ann_id, "image_id": 1, "category_id": 1, "bbox": list(bbox), "area": 1.0, "iscrowd": 0,
            "keypoints": kpts.ravel().tolist(), "num_keypoints": int(visible.sum()), **extra}


def _result(xy: np.ndarray, **extra) -> dict:
    kpts = np.concatenate([xy, np.ones((len(xy), 1))], 1)
    return {"image_id": 1, "category_id": 1, "keypoints": kpts.ravel().tolist(), "score": 0.9, **extra}


@pytest.fixture
def mpii_case():
    """Person A: head box 30 x 40 -> head size 50 * 0.6 = 30 px. Person B: 6 x 8 -> 6 px."""
    rng = np.random.default_rng(0)
    gt_a = rng.uniform(50, 150, size=(16, 2))
    gt_b = rng.uniform(300, 400, size=(16, 2))
    vis_a = np.ones(16, bool)
    vis_b = np.ones(16, bool)
    vis_b[[5, 7]] = False  # B: left ankle and thorax not labelled
    err_a = np.zeros(16)
    err_a[[9, 12, 13, 10, 6, 4]] = [15, 3, 16, 30, 100, 6]  # scaled: .5, .1, .533, 1, 3.33, .2
    err_b = np.zeros(16)
    err_b[[9, 2, 15]] = [6, 2.4, 3.0]  # scaled: 1, .4, .5
    gt = _coco([_ann(1, gt_a, vis_a, (40, 40, 120, 120), head_box=[10, 10, 40, 50]),
                _ann(2, gt_b, vis_b, (290, 290, 120, 120), head_box=[100, 100, 106, 108])], 16)
    pred_a = gt_a + np.stack([err_a, np.zeros(16)], 1)
    pred_b = gt_b + np.stack([np.zeros(16), err_b], 1)
    return gt, pred_a, pred_b


def test_pckh_by_hand(mpii_case):
    gt, pred_a, pred_b = mpii_case
    results = [_result(pred_b, ann_id=2), _result(pred_a, ann_id=1)]
    m = evaluate_predictions(gt, results, "mpii", "pckh")
    # 27 labelled joints outside pelvis/thorax; 24 within 0.5 head sizes (<= counts), 20 within 0.1.
    assert m["PCKh"] == pytest.approx(24 / 27)
    assert m["PCKh@0.1"] == pytest.approx(20 / 27)
    expected_rows = {"Head": 0.5, "Shoulder": 0.75, "Elbow": 1.0, "Wrist": 0.75, "Hip": 1.0, "Knee": 1.0, "Ankle": 1.0}
    for row, value in expected_rows.items():
        assert m[f"PCKh/{row}"] == pytest.approx(value), row


def test_pckh_matches_by_box_centre_without_ann_id(mpii_case):
    gt, pred_a, pred_b = mpii_case
    results = [_result(pred_b, bbox=[292, 288, 118, 121]), _result(pred_a, bbox=[38, 41, 121, 119])]
    by_centre = evaluate_predictions(gt, results, "mpii", "pckh")
    by_id = evaluate_predictions(gt, [_result(pred_a, ann_id=1), _result(pred_b, ann_id=2)], "mpii", "pckh")
    assert by_centre == by_id


def test_pckh_counts_an_unpredicted_person_as_missed(mpii_case):
    gt, pred_a, _ = mpii_case
    m = evaluate_predictions(gt, [_result(pred_a, ann_id=1)], "mpii", "pckh")
    # A hits 12 of its 14 counted joints (left shoulder and right wrist miss); B's 13 all count as missed.
    assert m["PCKh"] == pytest.approx(12 / 27)
    assert m["PCKh/Head"] == pytest.approx(0.5)


def test_interhand_by_hand():
    # Hand A: all 21 joints valid, tight box 100 x 50 -> PCK normaliser 100 px.
    gt_a = np.stack([np.linspace(200, 300, 21), np.linspace(200, 250, 21)], 1)
    # Hand B: joints 0..9 valid in a 10 x 40 box -> normaliser 40 px; invalid joints sit at (0, 0).
    gt_b = np.zeros((21, 2))
    gt_b[:10] = np.stack([np.linspace(400, 410, 10), np.linspace(100, 140, 10)], 1)
    valid_b = np.arange(21) < 10
    err_a = np.zeros(21)
    err_a[[0, 1, 2]] = [19.9, 20.0, 45.0]  # /100: .199 hit, .2 miss (strict <), .45 miss
    err_b = np.zeros(21)
    err_b[[0, 3]] = [10.0, 7.9]  # /40: .25 miss, .1975 hit
    gt = _coco([_ann(1, gt_a, np.ones(21, bool), (195, 195, 110, 60)),
                _ann(2, gt_b, valid_b, (395, 95, 20, 50))], 21)
    results = [_result(gt_a + np.stack([err_a, np.zeros(21)], 1), ann_id=1),
               _result(gt_b + np.stack([np.zeros(21), err_b], 1), ann_id=2)]
    m = evaluate_predictions(gt, results, "interhand", "interhand")

    assert m["PCK@0.2"] == pytest.approx((3 * 0.5 + 18) / 21)  # joints 0, 1, 2 at 1/2, the others perfect
    expected_auc = []
    for i in range(20):
        t = 30 * i / 20  # pixels
        joint0 = ((19.9 < t) + (10 < t)) / 2
        joint1 = ((20 < t) + (0 < t)) / 2
        joint2 = ((45 < t) + (0 < t)) / 2
        joint3 = ((0 < t) + (7.9 < t)) / 2
        expected_auc.append((joint0 + joint1 + joint2 + joint3 + 17 * (0 < t)) / 21)
    assert m["AUC"] == pytest.approx(np.mean(expected_auc))
    assert m["EPE"] == pytest.approx((19.9 + 20 + 45 + 10 + 7.9) / 31)
