"""Bad native input through `posebh prepare-data`: one line naming file/record/field, exit 2, no output folder."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import native_samples as ns  # noqa: E402

from posebh_cli.cli import app  # noqa: E402

runner = CliRunner()
COCO_VAL = "annotations/person_keypoints_val2017.json"


def run(tmp_path, *args):
    result = runner.invoke(app, ["prepare-data", *args, "--out", str(tmp_path / "out")])
    return result, " ".join(result.output.split())  # rich may wrap; compare whitespace-normalised


def fails(tmp_path, *args, expect: str) -> str:
    result, text = run(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert expect in text, text
    assert "Traceback" not in text
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]
    return text


def coco_with(tmp_path, change=None, path=COCO_VAL) -> Path:
    src = ns.coco_sample(tmp_path / "src")
    if change is not None:
        ns.edit_json(src / path, change)
    return src


def set_ann(field, value, index=0):
    def change(data):
        data["annotations"][index][field] = value
    return change


@pytest.mark.parametrize("change, expect", [
    (set_ann("keypoints", [1.0, 2.0, 2] * 16),
     f"{COCO_VAL}: record annotation id=2000: field 'keypoints': expected 51 values, got 48"),
    (set_ann("keypoints", [float("nan"), 2.0, 2] * 17), "record annotation id=2000: field 'keypoints': contains NaN"),
    (set_ann("bbox", [1.0, 2.0, float("inf"), 4.0]), "record annotation id=2000: field 'bbox': contains NaN or inf"),
    (set_ann("bbox", [1.0, 2.0, 0.0, 4.0]), "field 'bbox': box must have positive width and height"),
    (set_ann("bbox", [1.0, 2.0, 5.0, -4.0]), "field 'bbox': box must have positive width and height"),
    (set_ann("keypoints", [1.0, 2.0, 3] * 17), "field 'keypoints': visibility must be 0, 1 or 2, got 3"),
    (set_ann("id", 2001, index=0), "record annotation id=2001: field 'id': duplicate annotation id 2001"),
    (lambda d: d["images"][1].update(id=200), "record image id=200: field 'id': duplicate image id 200"),
    (set_ann("image_id", 999), "field 'image_id': refers to unknown image id 999"),
    (lambda d: d["images"][0].pop("width"), "record image id=200: field 'width': missing"),
    (lambda d: d.pop("annotations"), f"{COCO_VAL}: field 'annotations': missing or not a list"),
])
def test_bad_coco_records(tmp_path, change, expect):
    src = coco_with(tmp_path, change)
    fails(tmp_path, "coco", "--src", str(src), expect=expect)


def test_invalid_json(tmp_path):
    src = coco_with(tmp_path)
    (src / COCO_VAL).write_text('{"images": [')
    fails(tmp_path, "coco", "--src", str(src), expect=f"{COCO_VAL}: invalid JSON")


def test_missing_annotation_files(tmp_path):
    (tmp_path / "src").mkdir()
    fails(tmp_path, "coco", "--src", str(tmp_path / "src"),
          expect="annotations/person_keypoints_train2017.json: file not found")
    fails(tmp_path, "coco", "--src", str(tmp_path / "nowhere"), expect="nowhere: dataset folder not found")


def test_unknown_format(tmp_path):
    (tmp_path / "src").mkdir()
    fails(tmp_path, "cocoa", "--src", str(tmp_path / "src"), expect="unknown format 'cocoa'; known: coco, aic")


def test_missing_images_are_reported_or_skipped(tmp_path):
    src = coco_with(tmp_path)
    (src / "val2017/000000000200.jpg").unlink()
    fails(tmp_path, "coco", "--src", str(src),
          expect="record image id=200: field 'file_name': image not found")
    text = fails(tmp_path, "coco", "--src", str(src),
                 expect="1 of 2 images of split 'val' missing or unreadable; --skip-missing")
    assert "000000000200.jpg" in text

    result, text = run(tmp_path, "coco", "--src", str(src), "--skip-missing")
    assert result.exit_code == 0, result.output
    val = json.loads((tmp_path / "out/val.json").read_text())
    assert [im["id"] for im in val["images"]] == [201]
    assert {a["image_id"] for a in val["annotations"]} == {201}  # the missing image's people went with it
    dets = json.loads((tmp_path / "out/detections_val.json").read_text())
    assert [d["image_id"] for d in dets] == [201]  # and so did its detections
    assert "val │ 1 │ 1 │ 0 │ 1" in text  # images, annotations, outside → v=0, skipped


def test_no_check_images_keeps_missing_files(tmp_path):
    src = coco_with(tmp_path)
    (src / "val2017/000000000200.jpg").unlink()
    result, _ = run(tmp_path, "coco", "--src", str(src), "--no-check-images")
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "out/val.json").read_text())["images"]) == 2


def test_bad_detections(tmp_path):
    src = coco_with(tmp_path)
    dets = ns.write_json(tmp_path / "dets.json", [{"image_id": 5, "bbox": [0, 0, 5, 5], "score": 0.5}])
    fails(tmp_path, "coco", "--src", str(src), "--detections", str(dets),
          expect="dets.json: record detection 0: field 'image_id': unknown val image id 5")
    fails(tmp_path, "ap10k", "--src", str(src), "--detections", str(dets), expect="--detections applies to coco")


def test_output_folder_must_be_new(tmp_path):
    src = coco_with(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out/keep.txt").write_text("mine")
    result, text = run(tmp_path, "coco", "--src", str(src))
    assert result.exit_code == 2 and "already exists" in text
    assert (tmp_path / "out/keep.txt").read_text() == "mine"


@pytest.mark.parametrize("fmt, writer, target, expect", [
    ("mpii", ns.mpii_sample, "annotations/mpii_gt_val.mat", "mpii_gt_val.mat: file not found"),
    ("interhand", ns.interhand_sample, "annotations/val/InterHand2.6M_val_camera.json",
     "InterHand2.6M_val_camera.json: file not found"),
    ("aic", ns.aic_original_sample,
     "ai_challenger_keypoint_train_20170902/keypoint_train_images_20170902/train0001abcdef.jpg",
     "record image_id=train0001abcdef: field 'file_name': image not found"),
])
def test_missing_files_of_other_formats(tmp_path, fmt, writer, target, expect):
    src = writer(tmp_path / "src")
    (src / target).unlink()
    fails(tmp_path, fmt, "--src", str(src), expect=expect)


def test_bad_records_of_other_formats(tmp_path):
    src = ns.mpii_sample(tmp_path / "a")
    ns.edit_json(src / "annotations/mpii_val.json", lambda d: d[1].update(joints=d[1]["joints"][:15]))
    fails(tmp_path, "mpii", "--src", str(src), expect="record person 1: field 'joints': expected 32 values, got 30")

    src = ns.interhand_sample(tmp_path / "b")
    ns.edit_json(src / "annotations/train/InterHand2.6M_train_camera.json",
                 lambda d: d["7"]["focal"].update({"400262": [50.0]}))
    fails(tmp_path, "interhand", "--src", str(src),
          expect="record capture 7 camera 400262: field 'focal': expected 2 values, got 1")

    src = ns.apt36k_sample(tmp_path / "c")
    ns.edit_json(src / "annotations/apt36k_annotations.json", lambda d: d["images"][0].pop("video"))
    fails(tmp_path, "apt36k", "--src", str(src), expect="record image id=1: field 'video_id': missing (or 'video')")

    src = ns.pw3d_json_sample(tmp_path / "d")
    ns.edit_json(src / "annotations/3DPW_train.json",
                 lambda d: d["annotations"][0].update(smpl_joint_img=[[1, 2, 3]] * 23))
    fails(tmp_path, "3dpw", "--src", str(src), expect="record annotation id=10: field 'smpl_joint_img': expected 72")

    src = ns.coco_sample(tmp_path / "e")
    wb = ns.wholebody_sample(tmp_path / "e2")
    ns.edit_json(wb / "annotations/coco_wholebody_val_v1.0.json", lambda d: d["annotations"][0].pop("face_kpts"))
    fails(tmp_path, "coco_wholebody", "--src", str(wb), expect="record annotation id=2000: field 'face_kpts': missing")


def test_success_prints_the_summary_table(tmp_path):
    src = ns.apt36k_sample(tmp_path / "src")
    result, text = run(tmp_path, "apt36k", "--src", str(src), "--seed", "2")
    assert result.exit_code == 0, result.output
    assert "split by video with seed 2" in text and "train │ 28 │ 28 │ 0 │ 0" in text
