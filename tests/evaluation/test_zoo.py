"""Cross-skeleton scoring through the zoo's hidden ground truth (posebh_cli/evaluation/zoo.py, posebh_cli/inference/zoo.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from posebh_cli.data.prepare import prepare_dataset
from posebh_cli.data.prepared import open_prepared
from posebh_cli.data.synth import synth_zoo
from posebh_cli.errors import PosebhError
from posebh_cli.evaluation import evaluate_predictions
from posebh_cli.skeletons import load_skeleton
from posebh_cli.evaluation.zoo import box_iou, cross_ground_truth, find_groundtruth, load_groundtruth
from posebh_cli.evaluation.zoo import match_figures as _match
from posebh_cli.inference.zoo import cross_skeleton_scores, score_head_on


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    synth_zoo(root / "zoo", seed=3, sizes={"coco": 8, "aic": 8, "ap10k": 8}, image_size=(96, 72),
              datasets=["coco", "aic", "ap10k"], workers=1, progress=False)
    return {name: open_prepared(_prepare(name, root)) for name in ("coco", "aic", "ap10k")}


def _prepare(name, root):
    prepare_dataset(name, root / "zoo" / name, root / "prepared" / name)
    return root / "prepared" / name


def test_box_iou():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 10, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 5, 5]) == 0.0
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0


def test_match_is_one_to_one_and_needs_overlap():
    anns = [{"id": 1, "bbox": [0, 0, 10, 10]}, {"id": 2, "bbox": [1, 0, 10, 10]}, {"id": 3, "bbox": [50, 50, 5, 5]}]
    figs = [{"bbox": [0, 0, 10, 10], "n": "a"}, {"bbox": [100, 100, 4, 4], "n": "far"}]
    out = _match(anns, figs)
    assert {k: v["n"] for k, v in out.items()} == {1: "a"}   # 2 loses the only close figure to the better 1


def test_own_skeleton_ground_truth_equals_the_prepared_annotations(zoo):
    ds = zoo["coco"]
    gt = cross_ground_truth(ds, "train", ds.skeleton)
    prepared = {a["id"]: a for a in ds.load_coco("train")["annotations"]}
    assert gt["annotations"], "no annotation matched a hidden figure"
    assert len(gt["annotations"]) == len(prepared)
    for ann in gt["annotations"]:
        mine = np.array(ann["keypoints"]).reshape(-1, 3)
        theirs = np.array(prepared[ann["id"]]["keypoints"]).reshape(-1, 3)
        labelled = theirs[:, 2] > 0
        np.testing.assert_array_equal(mine[:, 2] > 0, labelled)
        np.testing.assert_allclose(mine[labelled, :2], theirs[labelled, :2], atol=0.02)


def test_other_skeleton_ground_truth_and_perfect_predictions_score_one(zoo):
    aic = load_skeleton("aic")
    gt = cross_ground_truth(zoo["coco"], "train", aic)
    assert gt["categories"][0]["keypoints"] == list(aic.keypoints)
    assert all(len(a["keypoints"]) == 3 * aic.num_keypoints for a in gt["annotations"])
    results = [{"image_id": a["image_id"], "category_id": 1, "score": 1.0, "bbox": a["bbox"],
                "keypoints": a["keypoints"]} for a in gt["annotations"]]
    metrics = evaluate_predictions(gt, results, aic, "coco_noarea")
    assert metrics["AP"] == pytest.approx(1.0)


def test_a_skeleton_of_another_body_plan_is_refused(zoo):
    with pytest.raises(PosebhError, match="no 'coco' points"):
        cross_ground_truth(zoo["ap10k"], "train", load_skeleton("coco"))


def test_groundtruth_is_found_from_the_prepared_folder(zoo):
    path = find_groundtruth(zoo["aic"])
    assert path.name == ".zoo_groundtruth.json"
    assert load_groundtruth(path)["dataset"] == "aic"


def test_a_dataset_not_made_by_synth_is_refused(zoo, tmp_path):
    meta = zoo["coco"].root / "meta.yaml"
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in zoo["coco"].root.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    images = tmp_path / "images"
    images.mkdir()
    (copy / "meta.yaml").write_text(meta.read_text().replace(str(zoo["coco"].image_root), str(images)))
    with pytest.raises(PosebhError, match="zoo_groundtruth"):
        find_groundtruth(open_prepared(copy))


def test_bad_groundtruth_file_names_the_field(tmp_path):
    path = tmp_path / ".zoo_groundtruth.json"
    path.write_text(json.dumps({"images": {}}))
    with pytest.raises(PosebhError, match="skeletons"):
        load_groundtruth(path)


def test_scores_every_head_on_the_other_datasets_of_its_body_plan(zoo):
    from posebh_cli.models.pose_model import PoseModel

    torch.manual_seed(0)
    names = ["coco", "aic", "ap10k"]
    model = PoseModel("vit_pico", names, [zoo[n].skeleton for n in names], img_size=(64, 48))
    scores = cross_skeleton_scores(model, zoo, split="train", flip=False, batch_size=8)
    assert set(scores) == {"coco@aic", "aic@coco"}   # no human head on animals, and no second animal set
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    single = score_head_on(model, "coco", zoo["aic"], split="train", flip=False, batch_size=8)
    assert single["AP"] == pytest.approx(scores["coco@aic"])


def test_a_union_head_is_scored_as_the_datasets_it_covers(zoo):
    """The distill student (one coco_mpii21 head) is read as COCO on AIC images through keypoint names."""
    from posebh_cli.models.pose_model import PoseModel

    torch.manual_seed(0)
    union = load_skeleton("coco_mpii21")
    student = PoseModel("vit_pico", ["coco_mpii21"], [union], img_size=(64, 48))
    scores = cross_skeleton_scores(student, zoo, split="train", flip=False, batch_size=8, heads=["coco"])
    assert set(scores) == {"coco@aic"}
    single = score_head_on(student, "coco", zoo["aic"], split="train", flip=False, batch_size=8)
    assert single["AP"] == pytest.approx(scores["coco@aic"])
