"""COCO-WholeBody per-part AP: official and merged formats, the xtcocotools part rules, xtcocotools itself."""
from __future__ import annotations

import copy
import io
import json
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posebh_cli.evaluation import evaluate_predictions
from posebh_cli.evaluation.coco_oks import STAT_NAMES
from posebh_cli.skeletons import load_skeleton

SK = load_skeleton("coco_wholebody")
PARTS = ("body", "foot", "face", "lefthand", "righthand")


def split_official(record: dict) -> dict:
    """Merged 133-point keypoints -> the official layout: body in `keypoints`, the rest in `<part>_kpts`."""
    out = dict(record)
    merged = record["keypoints"]
    for part in PARTS:
        start, end = SK.parts[part]
        out["keypoints" if part == "body" else f"{part}_kpts"] = merged[3 * start: 3 * end]
    return out


@pytest.fixture
def wholebody(coco_data):
    gt, results = coco_data(133, seed=7, noise=0.03)
    rng = np.random.default_rng(8)
    for r in results:  # part scores on some results, the others fall back to `score`
        if rng.uniform() < 0.6:
            r.update({f"{part}_score": float(rng.uniform(0.1, 1)) for part in ("foot", "face", "lefthand", "wholebody")})
    # a result whose face has no positive score: xtcocotools drops it from the face evaluation only
    face = SK.parts["face"]
    results[1]["keypoints"][3 * face[0] + 2: 3 * face[1]: 3] = [0.0] * (face[1] - face[0])
    return gt, results


def test_official_and_merged_formats_agree(wholebody):
    gt, results = wholebody
    merged = evaluate_predictions(gt, results, SK, "wholebody")
    official_gt = {**gt, "annotations": [split_official(a) for a in gt["annotations"]]}
    official_results = [split_official(r) for r in results]
    assert evaluate_predictions(official_gt, official_results, SK, "wholebody") == merged
    assert set(merged) == {f"{p}/{s}" for p in (*PARTS, "wholebody") for s in STAT_NAMES} | {"AP", "AR"}
    assert (merged["AP"], merged["AR"]) == (merged["wholebody/AP"], merged["wholebody/AR"])
    assert 0.02 < merged["wholebody/AP"] < 0.95
    assert len({round(merged[f"{p}/AP"], 6) for p in PARTS}) == len(PARTS)  # parts are really separate


def part_reference(gt: dict, results: list[dict], part: str) -> dict[str, float]:
    """One part by hand: sliced keypoints and sigmas, labelled-count ignore, part score, all-zero results dropped,
    then stock pycocotools (results carry boxes, so both sides take the box area)."""
    start, end = (0, 133) if part == "wholebody" else SK.parts[part]
    score_key = "score" if part == "body" else f"{part}_score"
    gt = copy.deepcopy(gt)
    for ann in gt["annotations"]:
        ann["keypoints"] = ann["keypoints"][3 * start: 3 * end]
        ann["num_keypoints"] = int(np.count_nonzero(np.asarray(ann["keypoints"][2::3]) > 0))
    dts = []
    for r in results:
        kp = r["keypoints"][3 * start: 3 * end]
        if np.any(np.asarray(kp[2::3]) > 0):
            dts.append({"image_id": r["image_id"], "category_id": r["category_id"], "bbox": r["bbox"],
                        "keypoints": kp, "score": r.get(score_key, r["score"])})
    with redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dts), "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(SK.sigmas[start:end])
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return dict(zip(STAT_NAMES, ev.stats.tolist()))


def test_each_part_matches_the_xtcocotools_rules(wholebody):
    gt, results = wholebody
    for r in results:
        xy = np.asarray(r["keypoints"]).reshape(-1, 3)[:17, :2]
        r["bbox"] = [*xy.min(0).tolist(), *(xy.max(0) - xy.min(0) + 4).tolist()]
    ours = evaluate_predictions(gt, results, SK, "wholebody")
    for part in (*PARTS, "wholebody"):
        expected = part_reference(gt, results, part)
        for name in STAT_NAMES:
            assert ours[f"{part}/{name}"] == pytest.approx(expected[name], abs=1e-9), (part, name)


def test_each_part_matches_xtcocotools_itself(wholebody, tmp_path):
    xt_coco = pytest.importorskip("xtcocotools.coco")
    xt_eval = pytest.importorskip("xtcocotools.cocoeval")
    gt, results = wholebody
    official_gt = {**gt, "annotations": [split_official(a) for a in gt["annotations"]]}
    official_results = [split_official(r) for r in results]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(official_gt))
    ours = evaluate_predictions(gt, results, SK, "wholebody")
    for part in (*PARTS, "wholebody"):
        start, end = (0, 133) if part == "wholebody" else SK.parts[part]
        with redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # xtcocotools warns when a part score falls back to `score`
            coco_gt = xt_coco.COCO(str(path))
            coco_dt = coco_gt.loadRes(copy.deepcopy(official_results))
            ev = xt_eval.COCOeval(coco_gt, coco_dt, f"keypoints_{part}", np.array(SK.sigmas[start:end]), use_area=True)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        for name, value in zip(STAT_NAMES, ev.stats.tolist()):
            assert ours[f"{part}/{name}"] == pytest.approx(value, abs=1e-9), (part, name)

