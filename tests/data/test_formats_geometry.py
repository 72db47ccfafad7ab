"""Readers that convert coordinates: MPII (1-based, center/scale boxes, head boxes), InterHand2.6M (3D → pixels,
one sample per valid hand) and 3DPW (ScoreHypo JSON and official pickles)."""
from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import native_samples as ns  # noqa: E402

from posebh_cli.data.prepare import prepare_dataset  # noqa: E402
from posebh_cli.data.prepared import open_prepared  # noqa: E402


def prepare(tmp_path, fmt, writer, **kwargs):
    src = writer(tmp_path / "src")
    summary = prepare_dataset(fmt, src, tmp_path / "out", **kwargs)
    return src, summary, open_prepared(tmp_path / "out")


def test_mpii_zero_based_boxes_and_head_boxes(tmp_path):
    src, summary, ds = prepare(tmp_path, "mpii", ns.mpii_sample)
    native = json.loads((src / "annotations/mpii_val.json").read_text())
    anns = ds.load_coco("val")["annotations"]
    assert len(anns) == ns.MPII_VAL_PEOPLE
    kps = np.asarray(anns[1]["keypoints"]).reshape(16, 3)
    joints, vis = np.asarray(native[1]["joints"]), np.asarray(native[1]["joints_vis"])
    assert np.allclose(kps[vis > 0, :2], joints[vis > 0] - 1)
    assert np.array_equal(kps[:, 2], np.where(vis > 0, 2, 0))
    # center (32, 22), scale 0.18: side 36 px, centre moved down 15/200*36 = 2.7 px, then -1 for 0-based.
    assert anns[0]["bbox"] == pytest.approx([31 - 18, 21 + 2.7 - 18, 36, 36])
    assert [a["head_box"] for a in anns] == [[19.0 + k, 4.0, 29.0 + k, 14.0] for k in range(3)]
    inst = ds.instances("val")[2]
    assert inst.extras["head_box"] == [21.0, 4.0, 31.0, 14.0]
    assert "head_box" not in ds.load_coco("train")["annotations"][0]
    # Two people share one image in train.
    assert summary["splits"]["train"]["images"] == 1 and summary["splits"]["train"]["annotations"] == 2


def test_interhand_projects_and_keeps_valid_hands(tmp_path):
    src, summary, ds = prepare(tmp_path, "interhand", ns.interhand_sample)
    joints = json.loads((src / "annotations/val/InterHand2.6M_val_joint_3d.json").read_text())
    world = np.asarray(joints["7"]["0"]["world_coord"])
    anns = [a for a in ds.load_coco("val")["annotations"] if a["image_id"] == 1]
    assert len(anns) == 1  # the left hand has only 11 valid joints: dropped
    ann = anns[0]
    assert ann["hand_type"] == "right" and ann["source_hand_type"] == "interacting"
    kps = np.asarray(ann["keypoints"]).reshape(21, 3)
    expected = world[:21, :2] / ns.DEPTH * ns.FOCAL + np.asarray(ns.PRINCPT)  # identity rotation, camera at 0
    assert np.allclose(kps[:, :2], expected, atol=1e-4) and np.all(kps[:, 2] == 2)
    x1, y1 = expected.min(0)
    x2, y2 = expected.max(0)
    assert ann["tight_bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-4)
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * 1.5, (y2 - y1) * 1.5
    assert ann["bbox"] == pytest.approx([cx - w / 2, cy - h / 2, w, h], abs=1e-4)
    assert ds.load_coco("val")["images"][0]["file_name"].startswith("val/Capture7/")
    assert ds.instances("val")[0].image_path.is_file()


def test_3dpw_scorehypo_visibility_rule(tmp_path):
    src, summary, ds = prepare(tmp_path, "3dpw", ns.pw3d_json_sample)
    assert ds.skeleton.name == "smpl24" and set(ds.splits) == {"train", "test"}
    coco = ds.load_coco("test")
    assert coco["images"][0]["file_name"] == "courtyard_test_00/image_00000.jpg"
    ann = coco["annotations"][0]
    kps = np.asarray(ann["keypoints"]).reshape(24, 3)
    assert kps[0, 2] == 0 and kps[1, 2] == 0 and np.all(kps[2:, 2] == 2)  # outside the image; behind the camera
    assert summary["splits"]["test"]["invisible_outside_image"] == 2
    assert "smpl_param" not in ann and "smpl_joint_img" not in ann  # bulky 3D fields are not copied


def test_3dpw_file_names_with_the_sequence_folder_are_not_prefixed_twice(tmp_path):
    src = ns.pw3d_json_sample(tmp_path / "src")
    ns.edit_json(src / "annotations/3DPW_test.json",
                 lambda d: d["images"][1].update(file_name="courtyard_test_00/image_00001.jpg"))
    prepare_dataset("3dpw", src, tmp_path / "out")
    names = [im["file_name"] for im in open_prepared(tmp_path / "out").load_coco("test")["images"]]
    assert names == ["courtyard_test_00/image_00000.jpg", "courtyard_test_00/image_00001.jpg"]


def test_3dpw_official_pickles(tmp_path):
    src, summary, ds = prepare(tmp_path, "3dpw", ns.pw3d_pickle_sample)
    assert any("sequence files" in note for note in summary["notes"])
    coco = ds.load_coco("train")
    assert [im["file_name"] for im in coco["images"]] == ["downtown_walk_00/image_00000.jpg",
                                                          "downtown_walk_00/image_00001.jpg"]
    assert len(coco["annotations"]) == 1  # frame 1 has an invalid camera pose
    with open(src / "sequenceFiles/train/downtown_walk_00.pkl", "rb") as f:
        world = pickle.load(f, encoding="latin1")["jointPositions"][0][0].reshape(24, 3)
    expected = world[:, :2] / world[:, 2:] * 50.0 + np.array([32.0, 24.0])
    kps = np.asarray(coco["annotations"][0]["keypoints"]).reshape(24, 3)
    assert np.allclose(kps[:, :2], expected) and np.all(kps[:, 2] == 2)
