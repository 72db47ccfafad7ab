"""COCO-OKS AP: `posebh evaluate --results` against pycocotools itself, and the xtcocotools no-area rule."""
from __future__ import annotations

import copy
import io
import json
from contextlib import redirect_stdout

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.evaluation import evaluate_predictions, protocol_for
from posebh_cli.evaluation.coco_oks import STAT_NAMES
from posebh_cli.skeletons import load_skeleton


def pycocotools_stats(gt: dict, results: list[dict], sigmas, iou_type="keypoints") -> dict[str, float]:
    """Stock pycocotools: COCO from the dict, loadRes, COCOeval with the skeleton's sigmas."""
    with redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=float)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(STAT_NAMES, ev.stats.tolist()))


def run_cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["evaluate", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("skeleton, categories, seed", [("coco", (1,), 0), ("coco", (1,), 1), ("ap10k", (1, 2, 3), 2)])
def test_results_mode_equals_pycocotools(skeleton, categories, seed, coco_data, write_json, tmp_path):
    sk = load_skeleton(skeleton)
    gt, results = coco_data(sk.num_keypoints, seed=seed, categories=categories)
    out = tmp_path / "metrics.json"
    code, text = run_cli("--results", write_json("res.json", results), "--annotations", write_json("gt.json", gt),
                         "--skeleton", skeleton, "--out", str(out))
    assert code == 0, text
    ours = json.loads(out.read_text())
    expected = pycocotools_stats(gt, results, sk.sigmas)
    assert set(ours) == set(STAT_NAMES)
    for name in STAT_NAMES:
        assert ours[name] == pytest.approx(expected[name], abs=1e-9), name
    assert 0.05 < ours["AP"] < 0.95  # the data exercise matching, not a degenerate all-or-nothing case
    assert "AP" in text


def test_results_with_boxes_use_box_area_like_pycocotools(coco_data):
    sk = load_skeleton("coco")
    gt, results = coco_data(17, seed=3)
    for r in results:
        xy = np.asarray(r["keypoints"]).reshape(-1, 3)[:, :2]
        r["bbox"] = [*(xy.min(0) - 5).tolist(), *((xy.max(0) - xy.min(0)) * 1.3).tolist()]
    ours = evaluate_predictions(gt, results, sk, "coco")
    expected = pycocotools_stats(gt, results, sk.sigmas)
    assert ours == pytest.approx(expected, abs=1e-9)


def test_numpy_results_from_python_callers(coco_data):
    gt, results = coco_data(17, seed=9)
    as_arrays = [{**r, "keypoints": np.asarray(r["keypoints"], dtype=np.float32).reshape(17, 3),
                  "image_id": np.int64(r["image_id"]), "score": np.float32(r["score"])} for r in results]
    rounded = [{**r, "keypoints": np.asarray(r["keypoints"], dtype=np.float32).astype(float).tolist(),
                "score": float(np.float32(r["score"]))} for r in results]
    assert evaluate_predictions(gt, as_arrays, "coco", "coco") == evaluate_predictions(gt, rounded, "coco", "coco")


def test_no_results_scores_zero(coco_data):
    gt, _ = coco_data(17, seed=4)
    metrics = evaluate_predictions(gt, [], "coco", "coco")
    assert metrics["AP"] == 0.0 and metrics["AR"] == 0.0


def noarea_reference(gt: dict, results: list[dict], sigmas) -> dict[str, float]:
    """The xtcocotools use_area=False rules applied by hand, then stock pycocotools (its own OKS loop)."""
    gt = copy.deepcopy(gt)
    for ann in gt["annotations"]:
        ann["area"] = ann["bbox"][2] * ann["bbox"][3] * 0.53
        ann["num_keypoints"] = int(np.count_nonzero(np.asarray(ann["keypoints"][2::3]) > 0))
        ann.setdefault("iscrowd", 0)
    # pycocotools numbers results before xtcocotools' _prepare drops the all-zero ones; ids only need order.
    kept = [r for r in results if np.any(np.asarray(r["keypoints"][2::3]) > 0)]
    return pycocotools_stats(gt, kept, sigmas)


def test_aic_noarea_matches_the_xtcocotools_rule(coco_data):
    sk = load_skeleton("aic")
    gt, results = coco_data(14, seed=5, with_area=False, noise=0.015)
    for ann in gt["annotations"]:
        del ann["iscrowd"]  # AIC annotations carry neither area nor iscrowd
    assert protocol_for("aic") == "coco_noarea"
    ours = evaluate_predictions(gt, results, sk, "coco_noarea")
    expected = noarea_reference(gt, results, sk.sigmas)
    assert ours == pytest.approx(expected, abs=1e-9)
    assert 0.05 < ours["AP"] < 0.95 and ours["APm"] > 0
    # the area rule matters: plain COCO on 0.8 x box areas gives different numbers
    with_area = copy.deepcopy(gt)
    for ann in with_area["annotations"]:
        ann["area"] = ann["bbox"][2] * ann["bbox"][3] * 0.8
    assert evaluate_predictions(with_area, results, sk, "coco")["AP"] != pytest.approx(ours["AP"], abs=1e-6)


def test_aic_noarea_matches_xtcocotools_itself(coco_data, tmp_path):
    xt_coco = pytest.importorskip("xtcocotools.coco")
    xt_eval = pytest.importorskip("xtcocotools.cocoeval")
    sk = load_skeleton("aic")
    gt, results = coco_data(14, seed=6, with_area=False, noise=0.015)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    with redirect_stdout(io.StringIO()):
        coco_gt = xt_coco.COCO(str(path))
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = xt_eval.COCOeval(coco_gt, coco_dt, "keypoints", np.array(sk.sigmas), use_area=False)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ours = evaluate_predictions(gt, results, sk, "coco_noarea")
    assert ours == pytest.approx(dict(zip(STAT_NAMES, ev.stats.tolist())), abs=1e-9)


def test_protocol_defaults():
    assert protocol_for("coco") == protocol_for("ap10k") == protocol_for("apt36k") == "coco"
    assert protocol_for("smpl24") == "coco_noarea"
    assert protocol_for("coco_wholebody") == "wholebody"
    assert protocol_for("mpii") == "pckh"
    assert protocol_for("interhand") == "interhand"
    assert protocol_for("my_lizard", "coco") == "coco"
    assert protocol_for("my_hand", "interhand") == "interhand"
