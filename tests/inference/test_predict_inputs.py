"""`posebh predict` with several inputs: files, folders (--recursive) and videos mixed, unique output names, every
bad input reported before anything runs; --draw-heatmap, --radius and --thickness."""
import json

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.errors import PosebhError
from posebh_cli.inference import draw, io
from posebh_cli.models.checkpoint import save_checkpoint
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import load_skeleton

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = PoseModel("vit_pico", ["coco"], [load_skeleton("coco")], img_size=(64, 48))
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "run",
                           recipe={"model": {"img_size": [64, 48]}, "datasets": [{"name": "coco", "codec": "udp"}]})


def _photo(path, step=6):
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_image(path, skimage.data.astronaut()[::step, ::step])


def _video(path, frames=2):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
    frame = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (64, 48))
    for shift in range(frames):
        writer.write(np.roll(frame, shift * 4, axis=1))
    writer.release()


def _predict(checkpoint, *args, code=0):
    result = runner.invoke(app, ["predict", *map(str, args), "--checkpoint", str(checkpoint), "--no-flip"])
    assert result.exit_code == code, result.output
    return result


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_mixed_inputs_recursive_keep_subfolders_and_every_instance(checkpoint, tmp_path):
    _photo(tmp_path / "a.jpg")
    for name in ("dir/b.jpg", "dir/b.png", "dir/sub/c.jpg", "dir/sub/deeper/a.jpg"):
        _photo(tmp_path / name)
    _video(tmp_path / "clip.avi")
    out = tmp_path / "out"
    _predict(checkpoint, tmp_path / "a.jpg", tmp_path / "dir", tmp_path / "clip.avi", "--recursive", "--out", out,
             "--batch-size", 3)
    assert _files(out) == ["a.json", "a.overlay.jpg", "clip.json", "clip.overlay.avi",
                           "dir/b.jpg.json", "dir/b.jpg.overlay.jpg", "dir/b.png.json", "dir/b.png.overlay.jpg",
                           "dir/sub/c.json", "dir/sub/c.overlay.jpg", "dir/sub/deeper/a.json",
                           "dir/sub/deeper/a.overlay.jpg", "results.json"]
    results = json.loads((out / "results.json").read_text())
    assert [(r["file_name"], r.get("frame")) for r in results] == [
        ("a.jpg", None), ("dir/b.jpg", None), ("dir/b.png", None), ("dir/sub/c.jpg", None),
        ("dir/sub/deeper/a.jpg", None), ("clip.avi", 0), ("clip.avi", 1)]
    assert json.loads((out / "dir/sub/c.json").read_text())["file_name"] == "dir/sub/c.jpg"
    assert not list(tmp_path.glob(".out.tmp-*"))
    # Into the existing folder again, without --recursive: files move in one by one beside what is there.
    (out / "dir/sub/c.json").unlink()
    _predict(checkpoint, tmp_path / "dir", tmp_path / "a.jpg", "--out", out)
    assert not (out / "dir/sub/c.json").exists() and (out / "dir/b.png.json").exists()
    assert {r["file_name"] for r in json.loads((out / "results.json").read_text())} == {
        "dir/b.jpg", "dir/b.png", "a.jpg"}


def test_one_folder_writes_straight_into_out_as_before(checkpoint, tmp_path):
    _photo(tmp_path / "imgs/1.jpg")
    _photo(tmp_path / "imgs/sub/2.jpg")
    _predict(checkpoint, tmp_path / "imgs", "--out", tmp_path / "flat")
    assert _files(tmp_path / "flat") == ["1.json", "1.overlay.jpg", "results.json"]
    _predict(checkpoint, tmp_path / "imgs", "-r", "--out", tmp_path / "deep")
    assert _files(tmp_path / "deep") == ["1.json", "1.overlay.jpg", "results.json", "sub/2.json",
                                         "sub/2.overlay.jpg"]
    # --out inside the folder read with --recursive: a second run does not predict the first one's overlays.
    for _ in range(2):
        _predict(checkpoint, tmp_path / "imgs", "-r", "--out", tmp_path / "imgs/pred")
    assert _files(tmp_path / "imgs/pred") == ["1.json", "1.overlay.jpg", "results.json", "sub/2.json",
                                              "sub/2.overlay.jpg"]


def test_clashing_names_get_unique_outputs(checkpoint, tmp_path):
    for name in ("x/a.jpg", "y/a.jpg", "z/results.jpg", "one/a.jpg", "two/one/a.jpg"):
        _photo(tmp_path / name)
    out = tmp_path / "out"
    _predict(checkpoint, tmp_path / "x/a.jpg", tmp_path / "y/a.jpg", tmp_path / "z/results.jpg", "--out", out)
    assert _files(out) == ["a-2.json", "a-2.overlay.jpg", "a.json", "a.overlay.jpg", "results.jpg.json",
                           "results.jpg.overlay.jpg", "results.json"]
    assert [json.loads((out / n).read_text())["file_name"] for n in ("a.json", "a-2.json")] == ["a.jpg", "a.jpg"]
    assert len(json.loads((out / "results.json").read_text())) == 3  # results.jpg did not overwrite it
    # Two folders of one name: the second one's outputs get -2.
    _predict(checkpoint, tmp_path / "one", tmp_path / "two/one", "--out", tmp_path / "twins")
    assert [p for p in _files(tmp_path / "twins") if p.endswith(".json")] == ["one/a-2.json", "one/a.json",
                                                                            "results.json"]


def test_output_stems_rule():
    assert io.output_stems(["a.jpg", "b.png"]) == ["a", "b"]
    assert io.output_stems(["x.jpg", "x.png", "x.jpg"]) == ["x.jpg", "x.png", "x.jpg-2"]
    assert io.output_stems(["x.jpg", "X.jpg", "x-2.jpg"]) == ["x", "X-3", "x-2"]  # never takes another's stem
    assert io.output_stems(["results.jpg", "sub/results.png"], reserved=["results"]) == ["results.jpg", "sub/results"]


def test_every_bad_input_is_one_line_and_nothing_is_written(checkpoint, tmp_path):
    _photo(tmp_path / "a.jpg")
    (tmp_path / "empty/sub").mkdir(parents=True)
    _photo(tmp_path / "empty/sub/b.jpg")
    out = tmp_path / "out"
    result = _predict(checkpoint, tmp_path / "a.jpg", tmp_path / "missing.mp4", tmp_path / "empty", "--out", out,
                      code=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "missing.mp4: no such file or folder" in lines[0]
    assert "empty: no image to predict" in lines[0] and "--recursive" in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))
    with pytest.raises(PosebhError, match="no such file"):
        io.collect_inputs([tmp_path / "a.jpg", tmp_path / "nope"])
    (tmp_path / "clips").mkdir()
    _video(tmp_path / "clips/c.avi")
    with pytest.raises(PosebhError, match="clips: no image to predict .*videos are read when named one by one"):
        io.collect_inputs([tmp_path / "clips"], recursive=True)


def test_draw_heatmap_and_line_sizes(checkpoint, tmp_path):
    _photo(tmp_path / "a.jpg", step=3)
    plain, heat, big = tmp_path / "plain", tmp_path / "heat", tmp_path / "big"
    _predict(checkpoint, tmp_path / "a.jpg", "--out", plain, "--kpt-thr", 0)
    _predict(checkpoint, tmp_path / "a.jpg", "--out", heat, "--kpt-thr", 0, "--draw-heatmap")
    _predict(checkpoint, tmp_path / "a.jpg", "--out", big, "--kpt-thr", 0, "--radius", 9, "--thickness", 6)
    images = {name: io.read_image(folder / "a.overlay.jpg").astype(int) for name, folder in
              (("plain", plain), ("heat", heat), ("big", big))}
    assert np.abs(images["heat"] - images["plain"]).mean() > 2, "the heatmap is blended in"
    assert np.abs(images["big"] - images["plain"]).mean() > 0.5, "bigger circles and lines"
    assert json.loads((heat / "a.json").read_text()) == json.loads((plain / "a.json").read_text())
    for option, value in (("--radius", 0), ("--thickness", -2)):
        result = _predict(checkpoint, tmp_path / "a.jpg", "--out", tmp_path / "bad", option, value, code=2)
        assert result.output.strip() == f"error: {option}: expected a positive whole number of pixels, got {value}"
    result = _predict(checkpoint, tmp_path / "a.jpg", "--out", tmp_path / "bad", "--radius", "big", code=2)
    assert len(result.output.strip().splitlines()) == 1 and "--radius" in result.output
    assert not (tmp_path / "bad").exists()


def test_draw_pose_takes_radius_and_thickness():
    sk = load_skeleton("coco")
    kpts = np.zeros((17, 3), np.float32)
    kpts[5], kpts[7] = (50, 50, 0.9), (50, 150, 0.9)      # left shoulder - left elbow
    image = np.zeros((200, 300, 3), np.uint8)
    default = draw.draw_pose(image, kpts, sk)               # 300 px: radius 2, thickness 1
    wide = draw.draw_pose(image, kpts, sk, radius=8, thickness=7)
    assert not default[50, 56].any() and tuple(wide[50, 56]) == sk.keypoint_colors[5]
    assert not default[100, 53].any() and wide[100, 53].any()
