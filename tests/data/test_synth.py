"""The synthetic skeleton zoo: determinism, native files, agreement with the hidden ground truth, rendering."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from pycocotools.coco import COCO
from typer.testing import CliRunner

from posebh_cli.commands import synth as synth_command
from posebh_cli.data.synth import render as synth_render
from posebh_cli.data.synth import zoo as synth
from posebh_cli.data.synth.writers import MIN_LABELLED_PART_PX
from posebh_cli.data.synth.zoo import DATASETS, ImageJob, make_image, synth_zoo
from posebh_cli.errors import PosebhError
from posebh_cli.skeletons import load_skeleton

SIZE = (160, 120)
TINY = {name: 3 for name in DATASETS}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zoo") / "zoo"
    synth_zoo(out, seed=0, sizes=TINY, image_size=SIZE, workers=1, progress=False)
    return out


def _json(path: Path):
    return json.loads(path.read_text())


def _gt(zoo: Path, name: str) -> dict:
    return _json(zoo / name / ".zoo_groundtruth.json")


def _match(gt_figures: list[dict], bbox: list[float]) -> dict:
    """The ground-truth figure whose box equals the annotation's box."""
    found = [f for f in gt_figures if np.allclose(f["bbox"], bbox, atol=0.01)]
    assert len(found) == 1
    return found[0]


def test_same_seed_same_bytes_other_seed_other_images(zoo, tmp_path):
    again = tmp_path / "again"
    synth_zoo(again, seed=0, sizes={"coco": 3, "interhand": 3}, image_size=SIZE, datasets=["coco", "interhand"],
              workers=2, progress=False)   # other process count, same bytes
    for name in ("coco", "interhand"):
        files = sorted(p.relative_to(zoo / name) for p in (zoo / name).rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(again / name) for p in (again / name).rglob("*") if p.is_file())
        for rel in files:
            assert (zoo / name / rel).read_bytes() == (again / name / rel).read_bytes(), rel
    other = tmp_path / "other"
    synth_zoo(other, seed=1, sizes={"coco": 3}, image_size=SIZE, datasets=["coco"], workers=1, progress=False)
    image = "train2017/000000000001.jpg"
    assert (zoo / "coco" / image).read_bytes() != (other / "coco" / image).read_bytes()
    assert not list(tmp_path.glob(".*tmp*")), "temporary folders are renamed or removed"


def test_a_larger_zoo_of_the_same_seed_starts_with_the_same_images(zoo, tmp_path):
    """Every image is seeded by (seed, dataset, split, index), so a smaller zoo holds the first images of a larger
    one: what `scripts/train_zoo_base.py --train-gap` relies on to score a model on its own training images."""
    larger = tmp_path / "larger"
    synth_zoo(larger, seed=0, sizes={"coco": 5, "aic": 5}, image_size=SIZE, datasets=["coco", "aic"], workers=1,
              progress=False)
    for name in ("coco", "aic"):
        small = sorted(p.relative_to(zoo / name) for p in (zoo / name).rglob("*.jpg"))
        large = {p.relative_to(larger / name) for p in (larger / name).rglob("*.jpg")}
        assert small and set(small) < large
        for rel in small:
            assert (zoo / name / rel).read_bytes() == (larger / name / rel).read_bytes(), rel


def test_coco_native_files_and_ground_truth(zoo):
    sk = load_skeleton("coco")
    gt = _gt(zoo, "coco")
    assert gt["body_plan"] == "human"
    assert set(gt["skeletons"]) == {"coco", "aic", "mpii", "coco_wholebody", "smpl24", "coco_mpii21"}
    for split in ("train", "val"):
        path = zoo / "coco" / "annotations" / f"person_keypoints_{split}2017.json"
        data = _json(path)
        assert data["categories"][0]["keypoints"] == list(sk.keypoints)
        assert min(min(link) for link in data["categories"][0]["skeleton"]) == 1
        COCO(str(path))
        for image in data["images"]:
            assert (zoo / "coco" / f"{split}2017" / image["file_name"]).is_file()
            assert set(image) >= {"file_name", "id", "height", "width"}
        for ann in data["annotations"]:
            assert set(ann) >= {"keypoints", "num_keypoints", "bbox", "area", "iscrowd", "segmentation", "image_id",
                                "category_id", "id"}
            kps = np.array(ann["keypoints"]).reshape(-1, 3)
            assert len(kps) == 17 and ann["num_keypoints"] == int((kps[:, 2] > 0).sum())
            file_name = next(i["file_name"] for i in data["images"] if i["id"] == ann["image_id"])
            truth = np.array(_match(gt["images"][file_name], ann["bbox"])["keypoints"]["coco"])
            labelled = truth[:, 2] > 0
            assert np.array_equal(kps[:, 2], truth[:, 2])
            assert np.allclose(kps[labelled, :2], truth[labelled, :2], atol=0.01)
            assert np.all(kps[~labelled] == 0)
    dets = _json(zoo / "coco" / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json")
    assert dets and all(set(d) == {"image_id", "category_id", "bbox", "score"} for d in dets)


def test_aic_has_no_area_or_iscrowd(zoo):
    for split, folder in (("train", "ai_challenger_keypoint_train_20170902/keypoint_train_images_20170902"),
                          ("val", "ai_challenger_keypoint_validation_20170911/keypoint_validation_images_20170911")):
        data = _json(zoo / "aic" / "annotations" / f"aic_{split}.json")
        assert all((zoo / "aic" / folder / i["file_name"]).is_file() for i in data["images"])
        for ann in data["annotations"]:
            assert "area" not in ann and "iscrowd" not in ann and len(ann["keypoints"]) == 14 * 3


def test_mpii_is_one_based_and_the_mat_file_matches(zoo):
    gt = _gt(zoo, "mpii")
    for split in ("train", "val"):
        people = _json(zoo / "mpii" / "annotations" / f"mpii_{split}.json")
        assert isinstance(people, list) and people
        for person in people:
            assert set(person) == {"image", "center", "scale", "joints", "joints_vis"}
            assert len(person["joints"]) == 16 and len(person["joints_vis"]) == 16
            assert (zoo / "mpii" / "images" / person["image"]).is_file()
            figures = gt["images"][person["image"]]
            truth = [np.array(f["keypoints"]["mpii"]) for f in figures]
            joints, vis = np.array(person["joints"]), np.array(person["joints_vis"])
            hits = [t for t in truth if np.array_equal(t[:, 2] > 0, vis > 0)
                    and np.allclose(joints[vis > 0], t[vis > 0, :2] + 1, atol=0.01)]
            assert hits, "joints are the ground truth plus one (Matlab coordinates)"
    mat = scipy.io.loadmat(zoo / "mpii" / "annotations" / "mpii_gt_val.mat")
    n = len(_json(zoo / "mpii" / "annotations" / "mpii_val.json"))
    assert mat["jnt_missing"].shape == (16, n)
    assert mat["pos_gt_src"].shape == (16, 2, n)
    assert mat["headboxes_src"].shape == (2, 2, n)
    names = [str(np.ravel(x)[0]) for x in mat["dataset_joints"].ravel()]
    assert names[0] == "rank" and names[9] == "head" and len(names) == 16
    assert np.all(mat["headboxes_src"][1] > mat["headboxes_src"][0])


def test_coco_wholebody_parts(zoo):
    gt = _gt(zoo, "coco_wholebody")
    data = _json(zoo / "coco_wholebody" / "annotations" / "coco_wholebody_train_v1.0.json")
    lengths = {"keypoints": 51, "foot_kpts": 18, "face_kpts": 204, "lefthand_kpts": 63, "righthand_kpts": 63}
    for ann in data["annotations"]:
        for key, n in lengths.items():
            assert len(ann[key]) == n
        for key in ("face_box", "lefthand_box", "righthand_box"):
            assert len(ann[key]) == 4
        for key in ("face_valid", "lefthand_valid", "righthand_valid", "foot_valid"):
            assert isinstance(ann[key], bool)
        file_name = next(i["file_name"] for i in data["images"] if i["id"] == ann["image_id"])
        truth = np.array(_match(gt["images"][file_name], ann["bbox"])["keypoints"]["coco_wholebody"])
        merged = np.concatenate([np.array(ann[k]).reshape(-1, 3) for k in lengths])
        assert np.array_equal(merged[:23, 2], truth[:23, 2])  # body and feet: every visible point
        for part, (a, b) in (("face", (23, 91)), ("lefthand", (91, 112)), ("righthand", (112, 133))):
            visible = truth[a:b, 2] > 0
            extent = np.ptp(truth[a:b][visible, :2], axis=0).max() if visible.any() else 0.0
            # labelled only when clear enough to annotate, as in COCO-WholeBody; else all zeros
            assert ann[f"{part}_valid"] == (extent >= MIN_LABELLED_PART_PX)
            expected = truth[a:b, 2] if ann[f"{part}_valid"] else np.zeros(b - a)
            assert np.array_equal(merged[a:b, 2], expected)
            assert ann[f"{part}_valid"] or (ann[f"{part}_box"] == [0, 0, 0, 0] and not any(ann[f"{part}_kpts"]))


def test_coco_wholebody_labels_faces_and_hands_only_when_large_enough(tmp_path):
    """The zoo's 256x192 figures have faces and hands of 5-20 px: none is labelled. At 4x the resolution the
    larger ones are, so both branches of the rule are exercised on real renders."""
    out = tmp_path / "zoo"
    synth_zoo(out, seed=3, sizes={"coco_wholebody": 12}, image_size=(1024, 768), workers=1, progress=False,
              datasets=["coco_wholebody"])
    anns = _json(out / "coco_wholebody" / "annotations" / "coco_wholebody_train_v1.0.json")["annotations"]
    valid = [ann[f"{part}_valid"] for ann in anns for part in ("face", "lefthand", "righthand")]
    assert any(valid) and not all(valid)


def test_ap10k_and_apt36k(zoo):
    for split in ("train", "val", "test"):
        data = _json(zoo / "ap10k" / "annotations" / f"ap10k-{split}-split1.json")
        assert all("background" in i and (zoo / "ap10k" / "data" / i["file_name"]).is_file() for i in data["images"])
        species = {c["id"] for c in data["categories"]}
        assert all(a["category_id"] in species and len(a["keypoints"]) == 51 for a in data["annotations"])
    data = _json(zoo / "apt36k" / "annotations" / "apt36k_annotations.json")
    assert all({"video_id", "frame_id"} <= set(i) for i in data["images"])
    assert all((zoo / "apt36k" / "images" / i["file_name"]).is_file() for i in data["images"])
    gt = _gt(zoo, "apt36k")
    # consecutive frames of a video show the same animals, moved a little
    first, second = (data["images"][0]["file_name"], data["images"][1]["file_name"])
    assert data["images"][0]["video_id"] == data["images"][1]["video_id"]
    a, b = gt["images"][first], gt["images"][second]
    assert len(a) == len(b)
    for fa, fb in zip(a, b):
        pa, pb = np.array(fa["keypoints"]["apt36k"])[:, :2], np.array(fb["keypoints"]["apt36k"])[:, :2]
        assert 0 < np.median(np.linalg.norm(pa - pb, axis=1)) < 0.1 * SIZE[0]


def test_interhand_world_joints_project_onto_the_ground_truth(zoo):
    gt = _gt(zoo, "interhand")
    for split in ("train", "val", "test"):
        folder = zoo / "interhand" / "annotations" / split
        data = _json(folder / f"InterHand2.6M_{split}_data.json")
        cameras = _json(folder / f"InterHand2.6M_{split}_camera.json")
        joints = _json(folder / f"InterHand2.6M_{split}_joint_3d.json")
        for image, ann in zip(data["images"], data["annotations"]):
            assert (zoo / "interhand" / "images" / split / image["file_name"]).is_file()
            assert len(ann["joint_valid"]) == 42 and ann["hand_type"] in ("right", "left", "interacting")
            cap, cam = str(image["capture"]), str(image["camera"])
            entry = joints[cap][str(image["frame_idx"])]
            world = np.array(entry["world_coord"])
            R, pos = np.array(cameras[cap]["camrot"][cam]), np.array(cameras[cap]["campos"][cam])
            xyz = (world - pos) @ R.T
            uv = xyz[:, :2] / xyz[:, 2:] * np.array(cameras[cap]["focal"][cam]) + np.array(cameras[cap]["princpt"][cam])
            truth = gt["images"][image["file_name"]]
            sides = ["right", "left"] if ann["hand_type"] == "interacting" else [ann["hand_type"]]
            assert len(truth) == len(sides)
            for side, figure in zip(sides, truth):
                lo = 0 if side == "right" else 21
                kps = np.array(figure["keypoints"]["interhand"])
                assert np.allclose(uv[lo:lo + 21], kps[:, :2], atol=0.6)
                assert np.array_equal(np.array(ann["joint_valid"][lo:lo + 21]), (kps[:, 2] > 0).astype(int))


def test_3dpw_smpl_joints(zoo):
    gt = _gt(zoo, "3dpw")
    for split in ("train", "test"):
        data = _json(zoo / "3dpw" / "annotations" / f"3DPW_{split}.json")
        images = {i["id"]: i for i in data["images"]}
        for ann in data["annotations"]:
            image = images[ann["image_id"]]
            key = f"{image['sequence']}/{image['file_name']}"
            assert (zoo / "3dpw" / "imageFiles" / key).is_file()
            joint_img = np.array(ann["smpl_joint_img"])
            assert joint_img.shape == (24, 3) and np.array(ann["smpl_joint_cam"]).shape == (24, 3)
            truth = np.array(_match(gt["images"][key], ann["bbox"])["keypoints"]["smpl24"])
            assert np.allclose(joint_img[:, :2], truth[:, :2], atol=0.01)
            assert np.all(joint_img[:, 2] > 0)


def test_visible_keypoints_lie_on_the_drawn_figure(tmp_path):
    width, height = SIZE
    diffs = []
    for dataset in ("coco", "ap10k", "interhand"):
        for index in range(3):
            job = ImageJob(dataset, "train", index, 0, width, height, str(tmp_path / f"{dataset}{index}.jpg"))
            record = make_image(job)
            image = cv2.imread(job.path).astype(np.float32)
            scene = synth.seeded_rng(0, dataset, "train", index // DATASETS[dataset].clip_length)
            synth._camera(scene, width, height)          # the background is drawn right after the camera
            background, _ = synth_render.render_background(scene, width, height)
            for figure in record["figures"]:
                kps = figure["keypoints"][DATASETS[dataset].skeleton]
                for x, y, v in kps[kps[:, 2] == 2]:
                    diffs.append(np.abs(image[int(y), int(x)] - background[int(y), int(x)]).max())
    diffs = np.array(diffs)
    assert len(diffs) > 20
    assert (diffs > 25).mean() > 0.8


def test_truncated_figures_get_v0_outside_the_image():
    width, height = SIZE
    rng = np.random.default_rng(3)
    camera = synth._camera(rng, width, height)
    actor = synth.sample_actor("human", rng, width, height, center=np.array([0.0, height / 2]))
    figure = synth.actor_figure(actor, camera, 0, rng)
    labels = synth_render.draw_figures(np.zeros((height, width, 3), np.float32), [figure], camera)
    kps = synth_render.keypoints_with_visibility([figure], camera, np.zeros((height, width), bool), width, height)[0]
    assert labels.any()
    for name, points in kps.items():
        outside = (points[:, 0] < 0) | (points[:, 0] >= width) | (points[:, 1] < 0) | (points[:, 1] >= height)
        assert np.array_equal(points[:, 2] == 0, outside), name
    assert (kps["coco"][:, 2] == 0).any() and (kps["coco"][:, 2] > 0).any()


@pytest.mark.parametrize("seed", range(4))
def test_a_face_is_visible_from_the_front_and_occluded_from_behind(seed):
    rng = np.random.default_rng(seed)
    camera = synth._camera(rng, *SIZE)
    actor = synth.sample_actor("human", rng, *SIZE, center=np.array([SIZE[0] / 2, SIZE[1] / 2]))
    actor.angles[:] = 0
    actor.amplitude[:] = 0
    visibility = {}
    for yaw in (0.0, 180.0):
        actor.orientation = np.array([0.0, yaw, 0.0])
        figure = synth.actor_figure(actor, camera, 0, rng)
        visibility[yaw] = synth_render.keypoints_with_visibility([figure], camera, np.zeros(SIZE[::-1], bool), *SIZE)[0]
    for name in ("coco", "mpii", "aic", "smpl24"):        # nothing hides anything in a frontal rest pose
        assert not np.any(visibility[0.0][name][:, 2] == 1), name
    assert np.all(visibility[180.0]["coco"][:3, 2] == 1)  # nose and eyes are behind the head


def test_bad_options_raise_user_errors(tmp_path):
    with pytest.raises(PosebhError, match="unknown dataset"):
        synth_zoo(tmp_path / "a", datasets=["nope"], progress=False)
    with pytest.raises(PosebhError, match="--sizes"):
        synth_command.parse_sizes("coco=lots")
    with pytest.raises(PosebhError, match="--image-size"):
        synth_command.parse_image_size("256by192")
    (tmp_path / "b" / "coco").mkdir(parents=True)
    with pytest.raises(PosebhError, match="already exist"):
        synth_zoo(tmp_path / "b", datasets=["coco"], sizes={"coco": 1}, workers=1, progress=False)


def test_cli_synth(tmp_path):
    from posebh_cli.cli import app

    runner = CliRunner()
    out = tmp_path / "zoo"
    result = runner.invoke(app, ["synth", "--out", str(out), "--datasets", "mpii", "--sizes", "mpii=2",
                                 "--image-size", "128x96", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert (out / "mpii" / "annotations" / "mpii_gt_val.mat").is_file()
    result = runner.invoke(app, ["synth", "--out", str(out), "--datasets", "mpii", "--sizes", "mpii=x"])
    assert result.exit_code == 2


@pytest.mark.skipif(importlib.util.find_spec("posebh_cli.data.prepare") is None,
                    reason="posebh_cli/data/prepare.py (the native readers) is not in this checkout yet")
def test_prepare_data_reads_every_synthetic_dataset(zoo, tmp_path):
    from posebh_cli.data.prepare import prepare_dataset
    from posebh_cli.data.prepared import open_prepared

    for name, spec in DATASETS.items():
        summary = prepare_dataset(name, zoo / name, tmp_path / name)
        prepared = open_prepared(tmp_path / name)
        assert prepared.skeleton.name == spec.skeleton
        truth = _gt(zoo, name)["images"]
        for split in prepared.splits:
            coco = COCO(str(prepared.split_path(split)))
            assert len(coco.getImgIds()) == summary["splits"][split]["images"]
            for instance in prepared.instances(split, labelled_only=False):
                # every prepared instance is one of the image's figures, in the same 0-based pixels
                path = instance.image_path.as_posix()
                (key,) = [k for k in truth if path.endswith("/" + k)]
                labelled = instance.keypoints[:, 2] > 0
                assert any(np.array_equal(labelled, _annotatable(name, f, labelled))
                           and np.allclose(instance.keypoints[labelled, :2],
                                           np.array(f["keypoints"][spec.skeleton])[labelled, :2], atol=0.05)
                           for f in truth[key]), (name, key)


def _annotatable(name: str, figure: dict, labelled: np.ndarray) -> np.ndarray:
    """The figure's visible points that its dataset labels: all of them, except COCO-WholeBody's faces and hands,
    which are labelled only when clear enough (see test_coco_wholebody_parts)."""
    visible = np.array(figure["keypoints"][DATASETS[name].skeleton])[:, 2] > 0
    if name == "coco_wholebody":
        visible[23:] &= labelled[23:]
    return visible


def test_figures_whose_written_box_is_empty_get_no_annotation():
    from posebh_cli.data.synth.writers import _annotated_box

    assert _annotated_box({"bbox": [10.0, 5.0, 20.0, 30.0], "area": 600.0}) == [10.0, 5.0, 20.0, 30.0]
    assert _annotated_box({"bbox": [191.996, 5.0, 0.004, 30.0], "area": 0.1}) is None  # rounds to zero width
    assert _annotated_box({"bbox": [10.0, 5.0, 20.0, 30.0], "area": 0.0}) is None
