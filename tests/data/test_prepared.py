"""The prepared-dataset contract: atomic write, validated meta.yaml, instances, pycocotools compatibility."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import yaml
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posebh_cli.data.prepared import open_prepared, write_prepared
from posebh_cli.errors import PosebhError
from posebh_cli.skeletons import load_skeleton, skeleton_from_dict


def _split(num_keypoints: int = 16) -> dict:
    kps = [10.0, 12.0, 2] * num_keypoints
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48, "video_id": 7}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "keypoints": kps, "num_keypoints": num_keypoints,
             "bbox": [2.0, 3.0, 30.0, 40.0], "area": 1200.0, "iscrowd": 0, "head_box": [1.0, 2.0, 9.0, 12.0]},
            {"id": 2, "image_id": 1, "category_id": 1, "keypoints": [0] * (3 * num_keypoints), "num_keypoints": 0,
             "bbox": [20.0, 3.0, 30.0, 40.0], "area": 1200.0, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 1, "keypoints": [0] * (3 * num_keypoints), "num_keypoints": 0,
             "bbox": [0.0, 0.0, 60.0, 40.0], "area": 2000.0, "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "person"}],
    }


def _write(tmp_path, skeleton="mpii", **kwargs):
    counts = {"train": {"images": 1, "annotations": 3, "invisible_outside_image": 0, "skipped_missing": 0}}
    return write_prepared(tmp_path / "ds", name="toy", skeleton=skeleton, source_format="mpii",
                          image_root=tmp_path / "images", splits={"train": _split(), "val": _split()},
                          counts=counts, **kwargs)


def test_round_trip_keeps_fields_and_extras(tmp_path):
    out = _write(tmp_path, detections={"val": [{"image_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5, "category_id": 1}]})
    ds = open_prepared(out)
    assert (ds.name, ds.skeleton.name, ds.source_format) == ("toy", "mpii", "mpii")
    assert ds.image_root == tmp_path / "images"
    assert set(ds.splits) == {"train", "val"} and ds.counts["train"]["annotations"] == 3
    assert ds.load_detections("val")[0]["score"] == 0.5 and ds.load_detections("train") == []
    coco = ds.load_coco("val")
    assert coco["categories"][0]["keypoints"] == list(load_skeleton("mpii").keypoints)
    links = [[a + 1, b + 1] for a, b in load_skeleton("mpii").links]
    assert coco["categories"][0]["skeleton"] == links  # 1-based, as COCO stores them

    train = ds.instances("train")  # training drops crowd and unlabelled annotations
    assert [i.ann_id for i in train] == [1]
    inst = train[0]
    assert inst.image_path == tmp_path / "images" / "a.jpg"
    assert inst.keypoints.shape == (16, 3) and inst.keypoints.dtype == np.float32
    assert inst.bbox.tolist() == [2.0, 3.0, 30.0, 40.0]
    assert inst.extras["head_box"] == [1.0, 2.0, 9.0, 12.0] and inst.extras["video_id"] == 7
    assert [i.ann_id for i in ds.instances("val")] == [1, 2, 3]
    assert [i.ann_id for i in ds.instances("val", labelled_only=True)] == [1]


def test_pycocotools_opens_and_scores_every_split(tmp_path):
    ds = open_prepared(_write(tmp_path))
    for split, path in ds.splits.items():
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(path))
            anns = [a for a in gt.dataset["annotations"] if a["num_keypoints"] > 0]
            dt = gt.loadRes([{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
                             for a in anns])
            ev = COCOeval(gt, dt, "keypoints")
            ev.params.kpt_oks_sigmas = np.array(load_skeleton("mpii").sigmas)
            ev.evaluate(), ev.accumulate(), ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0), split


def test_custom_skeleton_is_copied_into_the_folder(tmp_path):
    data = load_skeleton("mpii").to_dict()
    data["name"] = "my_mpii"
    ds = open_prepared(_write(tmp_path, skeleton=skeleton_from_dict(data)))
    assert ds.skeleton.name == "my_mpii" and (ds.root / "skeleton.yaml").is_file()
    assert yaml.safe_load((ds.root / "meta.yaml").read_text())["skeleton"] == "skeleton.yaml"


def test_failed_write_leaves_nothing(tmp_path):
    bad = _split()
    bad["annotations"][0]["keypoints"] = [1.0] * 5
    with pytest.raises(PosebhError, match="expected 48 values, got 5"):
        write_prepared(tmp_path / "ds", "toy", "mpii", "mpii", tmp_path, {"train": _split(), "val": bad}, {})
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite(tmp_path):
    out = _write(tmp_path)
    with pytest.raises(PosebhError, match="already exists"):
        _write(tmp_path)
    assert open_prepared(out).name == "toy"


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("image_root"), "field 'image_root': missing"),
    (lambda m: m.update(skeleton="nope"), "field 'skeleton': unknown skeleton 'nope'"),
    (lambda m: m.update(splits={"val": "gone.json"}), "field 'splits.val': file not found"),
    (lambda m: m.update(colour="red"), "field 'colour': unknown key(s) ['colour']"),
    (lambda m: m.update(splits=["train.json"]), "field 'splits': expected a mapping"),
])
def test_meta_errors_name_the_key(tmp_path, change, message):
    out = _write(tmp_path)
    meta = yaml.safe_load((out / "meta.yaml").read_text())
    change(meta)
    (out / "meta.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(PosebhError) as exc:
        open_prepared(out)
    assert "meta.yaml" in str(exc.value) and message in str(exc.value)


def test_not_a_prepared_folder(tmp_path):
    with pytest.raises(PosebhError, match="not a prepared dataset"):
        open_prepared(tmp_path)
