"""`evaluate`'s result records against what mmpose 0.x evaluates, on small hand-built GT and predictions.

Reference: pycocotools' own COCOeval fed the results the way mmpose 0.x writes them (image_id, category_id,
keypoints, rescored score; no box, so loadRes takes the area from the keypoints' extent), after mmpose's rule of
rescoring and OKS-NMS at 0.9 written out here by hand.
"""
import copy
import io
from contextlib import redirect_stdout

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posebh_cli.evaluation import evaluate_predictions
from posebh_cli.inference.evaluate import _results_for_image, uses_oks_nms
from posebh_cli.skeletons import load_skeleton

COCO_SK = load_skeleton("coco")


def person(cx, cy, size, rng):
    """17 keypoints spread over a size x size square around (cx, cy)."""
    offsets = rng.uniform(-0.5, 0.5, (17, 2)) * size
    return np.concatenate([np.array([cx, cy]) + offsets, np.full((17, 1), 2.0)], axis=1)


def build_case(seed=0):
    rng = np.random.default_rng(seed)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in (1, 2, 3)]
    anns, instances = [], {1: [], 2: [], 3: []}
    ann_id = 1
    for image_id, sizes in ((1, (40, 150)), (2, (70, 120)), (3, (200,))):
        for n, size in enumerate(sizes):
            kp = person(100 + 220 * n, 200, size, rng)
            x0, y0 = kp[:, :2].min(0)
            x1, y1 = kp[:, :2].max(0)
            # medium (32^2..96^2) or large by the GT area; the crop box is 1.6x the keypoint extent
            anns.append({"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
                         "keypoints": kp.reshape(-1).tolist(), "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "area": float(size * size * 0.6)})
            pred = kp.copy()
            pred[:, :2] += rng.normal(0, 0.04 * size, (17, 2))
            pred[:, 2] = rng.uniform(0.1, 0.95, 17)
            box = [x0 - 0.3 * (x1 - x0), y0 - 0.3 * (y1 - y0), 1.6 * (x1 - x0), 1.6 * (y1 - y0)]
            inst = {"keypoints": pred, "bbox": box, "score": 0.0, "area": box[2] * box[3] * 1.25 ** 2}
            instances[image_id].append((inst, {"category_id": 1, "ann_id": ann_id}))
            # a near-duplicate (a second box on the same person) that OKS-NMS at 0.9 must remove
            dup = {**inst, "keypoints": pred + np.array([0.5, 0.5, -0.05])}
            instances[image_id].append((dup, {"category_id": 1, "ann_id": ann_id}))
            ann_id += 1
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person", "keypoints": COCO_SK.keypoints, "skeleton": []}]}
    return gt, instances


def mmpose_results(instances, sigmas):
    """mmpose 0.x's evaluate: rescoring (mean of keypoint scores > 0.2, x box score 1), then oks_nms(0.9)."""
    out = []
    for image_id, pairs in instances.items():
        kpts = []
        for inst, _ in pairs:
            s = inst["keypoints"][:, 2]
            kpt_score = s[s > 0.2].mean() if (s > 0.2).any() else 0.0
            kpts.append({"keypoints": inst["keypoints"], "score": kpt_score * 1.0, "area": inst["area"]})
        variances = (2 * np.asarray(sigmas)) ** 2
        order = list(np.array([k["score"] for k in kpts]).argsort()[::-1])
        keep = []
        while order:
            i = order.pop(0)
            keep.append(i)
            rest = []
            for j in order:
                d2 = ((kpts[i]["keypoints"][:, :2] - kpts[j]["keypoints"][:, :2]) ** 2).sum(1)
                e = d2 / variances / ((kpts[i]["area"] + kpts[j]["area"]) / 2 + np.spacing(1)) / 2
                if np.exp(-e).mean() <= 0.9:
                    rest.append(j)
            order = rest
        out += [{"image_id": image_id, "category_id": 1, "keypoints": kpts[k]["keypoints"].reshape(-1).tolist(),
                 "score": float(kpts[k]["score"])} for k in keep]
    return out


def pycocotools_stats(gt, results, sigmas):
    with redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        dt = coco.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def our_results(instances, protocol, sigmas):
    from posebh_cli.inference.nms import rescore

    out = []
    for image_id, pairs in instances.items():
        found = []
        for inst, _ in pairs:
            found.append({**inst, "score": float(rescore(inst["keypoints"][None, :, 2], np.array([1.0]))[0])})
        out += _results_for_image(image_id, found, [job for _, job in pairs], uses_oks_nms(protocol), sigmas)
    return out


def test_coco_metrics_equal_mmpose_including_apm_apl():
    gt, instances = build_case()
    ours = our_results(instances, "coco", COCO_SK.sigmas)
    assert len(ours) == 5 and all("bbox" not in r for r in ours)  # duplicates removed, no crop boxes
    metrics = evaluate_predictions(gt, ours, COCO_SK, "coco")
    expected = pycocotools_stats(gt, mmpose_results(instances, COCO_SK.sigmas), COCO_SK.sigmas)
    names = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
    assert [metrics[n] for n in names] == pytest.approx(list(expected), abs=1e-12)
    assert metrics["APm"] > 0 and metrics["APl"] > 0
    # Results carrying the crop box would take their area from it: the size split would differ.
    boxed = [{**r, "bbox": inst["bbox"]} for r, inst in
             zip(ours, [p[0] for pairs in instances.values() for p in pairs[::2]])]
    assert evaluate_predictions(gt, boxed, COCO_SK, "coco")["APm"] != pytest.approx(metrics["APm"])


@pytest.mark.parametrize("protocol,applies", [("coco", True), ("coco_noarea", True), ("wholebody", True),
                                              ("pckh", False), ("interhand", False)])
def test_oks_nms_on_every_oks_protocol_with_gt_boxes(protocol, applies):
    # mmpose 0.x's use_nms defaults to True on AIC, AP-10K, APT-36K, OCHuman, 3DPW and COCO-WholeBody too.
    assert uses_oks_nms(protocol) is applies
    _, instances = build_case()
    results = our_results(instances, protocol, COCO_SK.sigmas)
    assert len(results) == (5 if applies else 10)


def test_equal_scores_keep_the_later_instance_in_evaluation_as_mmpose():
    # Two identical poses with the same score: mmpose's argsort()[::-1] visits (and keeps) the second one.
    kp = np.concatenate([np.random.default_rng(1).uniform(0, 50, (17, 2)), np.full((17, 1), 0.1)], 1)
    found = [{"keypoints": kp, "score": 0.0, "area": 5000.0, "bbox": [0, 0, 50, 50]} for _ in range(2)]
    jobs = [{"category_id": 1, "ann_id": 1}, {"category_id": 1, "ann_id": 2}]
    [kept] = _results_for_image(1, found, jobs, True, COCO_SK.sigmas)
    assert kept["ann_id"] == 2
