"""Readers of the COCO-style formats on hand-written native files: COCO, AIC (both flavours), AP-10K, APT-36K,
COCO-WholeBody; each round-trips through open_prepared and pycocotools."""
from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

sys.path.insert(0, str(Path(__file__).parent))
import native_samples as ns  # noqa: E402

from posebh_cli.data.prepare import prepare_dataset  # noqa: E402
from posebh_cli.data.prepared import open_prepared  # noqa: E402


def prepare(tmp_path, fmt, writer, **kwargs):
    src = writer(tmp_path / "src")
    summary = prepare_dataset(fmt, src, tmp_path / "out", **kwargs)
    ds = open_prepared(tmp_path / "out")
    for split, path in ds.splits.items():
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
        assert len(coco.getImgIds()) == summary["splits"][split]["images"]
        for inst in ds.instances(split):
            assert inst.image_path.is_file()
    return summary, ds


def test_coco(tmp_path):
    summary, ds = prepare(tmp_path, "coco", ns.coco_sample)
    assert ds.skeleton.name == "coco" and ds.source_format == "coco"
    assert summary["splits"]["val"] == {"images": 2, "annotations": 3, "invisible_outside_image": 1,
                                        "skipped_missing": 0, "skipped_unreadable": 0}
    val = ds.load_coco("val")
    first = next(a for a in val["annotations"] if a["id"] == 2000)
    assert first["keypoints"][:3] == [70.0, first["keypoints"][1], 0]  # kept, marked invisible
    assert first["num_keypoints"] == sum(1 for v in first["keypoints"][2::3] if v > 0)
    assert val["images"][0]["file_name"] == "val2017/000000000200.jpg"
    assert len(ds.instances("train")) == 2 and len(ds.instances("val")) == 3  # crowd dropped in train only
    assert [d["image_id"] for d in ds.load_detections("val")] == [200, 201]


def test_coco_detections_option_replaces_the_default_file(tmp_path):
    dets = ns.write_json(tmp_path / "dets.json", [{"image_id": 201, "bbox": [1, 1, 5, 5], "score": 0.7}])
    _, ds = prepare(tmp_path, "coco", ns.coco_sample, detections=dets)
    assert ds.load_detections("val") == [{"image_id": 201, "bbox": [1.0, 1.0, 5.0, 5.0], "score": 0.7,
                                          "category_id": 1}]


def test_aic_mmpose_style(tmp_path):
    summary, ds = prepare(tmp_path, "aic", ns.aic_mmpose_sample)
    ann = ds.load_coco("train")["annotations"][0]
    assert ann["iscrowd"] == 0 and ann["area"] == 50.0 * 40.0
    assert ds.load_coco("train")["images"][0]["file_name"].startswith(
        "ai_challenger_keypoint_train_20170902/keypoint_train_images_20170902/")
    assert any("mmpose" in note for note in summary["notes"])


def test_aic_original_files(tmp_path):
    summary, ds = prepare(tmp_path, "aic", ns.aic_original_sample)
    assert any("original challenger" in note for note in summary["notes"])
    coco = ds.load_coco("val")
    assert [im["width"] for im in coco["images"]] == [ns.W, ns.W]  # read from the JPEG headers
    assert len(coco["annotations"]) == 3
    ann = coco["annotations"][0]
    expected = ns.keypoints(14, 10 * 0 + 0)
    assert ann["keypoints"][2::3] == expected[2::3]  # codes 1/2/3 became 2/1/0
    assert ann["bbox"] == [4.0, 3.0, 50.0, 40.0]  # [x1, y1, x2, y2] became xywh


def test_ap10k_keeps_species_categories(tmp_path):
    summary, ds = prepare(tmp_path, "ap10k", ns.ap10k_sample)
    assert set(ds.splits) == {"train", "val", "test"}
    coco = ds.load_coco("test")
    assert [c["id"] for c in coco["categories"]] == [1, 2]
    assert all(c["keypoints"] == list(ds.skeleton.keypoints) for c in coco["categories"])
    assert coco["annotations"][0]["category_id"] == 2 and coco["images"][0]["background"] == 1


def test_apt36k_splits_by_video(tmp_path):
    summary, ds = prepare(tmp_path, "apt36k", ns.apt36k_sample, seed=3)
    videos = {}
    for split in ds.splits:
        coco = ds.load_coco(split)
        videos[split] = {im["video_id"] for im in coco["images"]}
        assert all("\\" not in im["file_name"] and not im["file_name"].startswith("D:") for im in coco["images"])
        assert all("is_crowd" not in a and a["iscrowd"] == 0 for a in coco["annotations"])
    assert not (videos["train"] & videos["val"] or videos["train"] & videos["test"] or videos["val"] & videos["test"])
    # 10 videos per category: 7 / 1 / 2 in each of the two categories.
    assert [len(videos[s]) for s in ("train", "val", "test")] == [14, 2, 4]
    assert "seed 3" in summary["notes"][-1]

    _, again = prepare(tmp_path / "again", "apt36k", ns.apt36k_sample, seed=3)
    assert again.load_coco("val")["images"] == ds.load_coco("val")["images"]
    seed0, seed1 = (prepare(tmp_path / f"s{seed}", "apt36k", ns.apt36k_sample, seed=seed)[1] for seed in (0, 1))
    assert seed0.load_coco("val")["images"] != seed1.load_coco("val")["images"]


def test_coco_wholebody_merges_133(tmp_path):
    _, ds = prepare(tmp_path, "coco_wholebody", ns.wholebody_sample)
    assert ds.skeleton.num_keypoints == 133
    anns = {a["id"]: a for a in ds.load_coco("train")["annotations"]}
    first, second = anns[1000], anns[1001]
    kps = np.asarray(first["keypoints"]).reshape(133, 3)
    foot = np.asarray(ns.keypoints(6, 30)).reshape(6, 3)
    assert np.allclose(kps[17:23, :2], foot[:, :2])
    assert np.all(kps[23:91, 2] == 2)  # face valid for the first person; flag 1.5 → labelled
    assert np.all(kps[91:112, 2] == 2)  # float confidence 0.4 > 0 → labelled
    assert np.all(kps[112:133, 2] == 0)  # righthand_valid false → v=0
    kps2 = np.asarray(second["keypoints"]).reshape(133, 3)
    assert np.all(kps2[23:91, 2] == 0)  # face_valid false
    assert first["lefthand_kpts"] == [20.0, 20.0, 0.4] * 21 and first["face_box"] == [0, 0, 10, 10]
    assert ds.instances("train")[0].extras["foot_kpts"] == ns.keypoints(6, 30)
