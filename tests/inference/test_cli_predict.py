import json

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.inference import io
from posebh_cli.models.checkpoint import save_checkpoint
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import load_skeleton

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = PoseModel("vit_pico", ["coco", "ap10k"], [load_skeleton("coco"), load_skeleton("ap10k")],
                      with_embedding=True, img_size=(64, 48))
    recipe = {"model": {"img_size": [64, 48]},
              "datasets": [{"name": "coco", "codec": "udp"}, {"name": "ap10k", "codec": "msra"}]}
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "run", recipe=recipe)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    io.write_image(folder / "000000000001.jpg", skimage.data.astronaut()[::4, ::4])
    io.write_image(folder / "cat.png", skimage.data.chelsea()[::3, ::3])
    (folder / "broken.jpg").write_bytes(b"\x00not a jpeg")
    return folder


def _predict(*args):
    result = runner.invoke(app, ["predict", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


def test_folder_whole_image_mode(checkpoint, photos, tmp_path):
    out = tmp_path / "out"
    result = _predict(photos, "--checkpoint", checkpoint, "--out", out, "--batch-size", 2)
    assert "broken.jpg" in result.output and "skipped" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["000000000001.json", "000000000001.overlay.jpg", "cat.json",
                                                     "cat.overlay.jpg", "results.json"]
    record = json.loads((out / "cat.json").read_text())
    assert record["file_name"] == "cat.png" and record["skeleton"] == "coco"
    # Two inputs with one stem keep apart by their full names.
    (tmp_path / "twins").mkdir()
    for name in ("cat.jpg", "cat.png"):
        io.write_image(tmp_path / "twins" / name, skimage.data.chelsea()[::6, ::6])
    _predict(tmp_path / "twins", "--checkpoint", checkpoint, "--out", tmp_path / "twins_out", "--no-flip")
    assert {"cat.jpg.json", "cat.png.json"} <= {p.name for p in (tmp_path / "twins_out").iterdir()}
    assert record["keypoint_names"] == list(load_skeleton("coco").keypoints)
    [pred] = record["predictions"]
    assert len(pred["keypoints"]) == 17 * 3 and pred["bbox"] == [0, 0, 151, 100] and "score" in pred
    assert json.loads((out / "000000000001.json").read_text())["predictions"][0]["image_id"] == 1
    assert io.read_image(out / "cat.overlay.jpg").shape == (100, 151, 3)
    assert not list(tmp_path.glob(".out.tmp-*")), "the temp folder is gone"


def test_boxes_mode_matches_by_file_name_and_image_id(checkpoint, photos, tmp_path):
    boxes = tmp_path / "dets.json"
    boxes.write_text(json.dumps([
        {"image_id": 1, "category_id": 1, "bbox": [10, 5, 60, 100], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [10, 5, 60, 100], "score": 0.8},   # duplicate: OKS-NMS drops it
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.01},      # under --bbox-thr
        {"file_name": "cat.png", "image_id": 99, "category_id": 1, "bbox": [20, 10, 100, 80], "score": 0.7},
    ]))
    out = tmp_path / "out"
    _predict(photos / "cat.png", "--checkpoint", checkpoint, "--boxes", boxes, "--out", out, "--dataset", "ap10k",
             "--bbox-thr", 0.05)
    _predict(photos / "000000000001.jpg", "--checkpoint", checkpoint, "--boxes", boxes, "--out", out, "--no-flip",
             "--bbox-thr", 0.05)
    cat = json.loads((out / "cat.json").read_text())
    assert cat["skeleton"] == "ap10k" and [p["bbox"] for p in cat["predictions"]] == [[20, 10, 100, 80]]
    person = json.loads((out / "000000000001.json").read_text())["predictions"]
    assert len(person) == 1 and person[0]["box_score"] == 0.9


def test_video_and_prototype_heatmaps(checkpoint, tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (80, 60))
    frame = cv2.resize(cv2.cvtColor(skimage.data.chelsea(), cv2.COLOR_RGB2BGR), (80, 60))
    for shift in range(3):
        writer.write(np.roll(frame, shift * 5, axis=1))
    writer.release()
    out = tmp_path / "out"
    _predict(video, "--checkpoint", checkpoint, "--out", out, "--prototypes", "ap10k", "--batch-size", 2)
    record = json.loads((out / "clip.json").read_text())
    assert record["source"] == "prototypes" and record["skeleton"] == "ap10k"
    assert [f["frame"] for f in record["frames"]] == [0, 1, 2]
    assert len(record["frames"][2]["predictions"][0]["keypoints"]) == 17 * 3
    capture, info = io.open_video(out / "clip.overlay.avi")
    assert len(list(io.iter_frames(capture))) == 3 and (info.width, info.height) == (80, 60)


def test_user_mistakes_exit_2_and_leave_nothing(checkpoint, photos, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(photos), "--checkpoint", str(checkpoint), "--out", str(out),
                                 "--skeleton", "mpii"])
    assert result.exit_code == 2 and "mpii" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"image_id": 1, "bbox": [1, 2, 3]}]))
    result = runner.invoke(app, ["predict", str(photos), "--checkpoint", str(checkpoint), "--out", str(out),
                                 "--boxes", str(bad)])
    assert result.exit_code == 2 and "bad.json: record #0: field 'bbox'" in result.output
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))
