"""`posebh predict VIDEO` with tracking and smoothing, through the CLI."""
import json

import cv2
import numpy as np
import pytest
import skimage.data
from typer.testing import CliRunner

from builders import make_model  # tests/builders.py
from posebh_cli.cli import app
from posebh_cli.inference import io

runner = CliRunner()
FRAMES, STEP = 8, 3


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp("ckpt") / "run", datasets=("coco",), embedding=False)


@pytest.fixture(scope="module")
def two_walkers(tmp_path_factory):
    """A video of two pictures walking towards each other, and a box file that lists them in changing order."""
    folder = tmp_path_factory.mktemp("video")
    left = cv2.resize(skimage.data.astronaut(), (40, 64))
    right = cv2.resize(skimage.data.chelsea(), (40, 64))
    writer = cv2.VideoWriter(str(folder / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (192, 96))
    boxes = []
    for f in range(FRAMES):
        canvas = np.full((96, 192, 3), 90, np.uint8)
        xl, xr = 10 + STEP * f, 140 - STEP * f
        canvas[16:80, xl:xl + 40], canvas[16:80, xr:xr + 40] = left, right
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        pair = [{"image_id": f, "bbox": [xl, 16, 40, 64], "score": 0.9},
                {"image_id": f, "bbox": [xr, 16, 40, 64], "score": 0.8}]
        boxes += pair if f % 2 else pair[::-1]
    writer.release()
    (folder / "boxes.json").write_text(json.dumps(boxes))
    return folder


def _predict(*args):
    return runner.invoke(app, ["predict", *map(str, args)])


def test_video_tracks_keep_their_ids_in_the_json_results_and_overlay(checkpoint, two_walkers, tmp_path):
    out = tmp_path / "out"
    result = _predict(two_walkers / "walk.avi", "--checkpoint", checkpoint, "--boxes", two_walkers / "boxes.json",
                      "--out", out, "--smooth", "--no-flip")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "walk.json").read_text())
    assert record["tracking"]["max_gap"] == 5 and record["smoothing"]["min_cutoff"] > 0
    id_of = {}   # which id each walker (told apart by the box's side) gets, frame by frame
    for frame in record["frames"]:
        assert len(frame["predictions"]) == 2
        for pred in frame["predictions"]:
            side = "left" if pred["bbox"][0] < 90 - STEP else "right"
            id_of.setdefault(side, set()).add(pred["track_id"])
    assert id_of["left"] != id_of["right"] and all(len(ids) == 1 for ids in id_of.values()), id_of
    results = json.loads((out / "results.json").read_text())
    assert len(results) == 2 * FRAMES and {r["track_id"] for r in results} == id_of["left"] | id_of["right"]
    capture, _ = io.open_video(out / "walk.overlay.avi")
    assert len(list(io.iter_frames(capture))) == FRAMES


def test_no_track_writes_no_ids(checkpoint, two_walkers, tmp_path):
    out = tmp_path / "out"
    result = _predict(two_walkers / "walk.avi", "--checkpoint", checkpoint, "--out", out, "--no-track", "--no-flip")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "walk.json").read_text())
    assert record["tracking"] is None and all("track_id" not in p for f in record["frames"] for p in f["predictions"])


@pytest.mark.parametrize("args, expected", [
    (["--smooth", "--no-track"], "--smooth filters each track's keypoints and needs tracking; drop --no-track"),
    (["--track-gap", "-1"], "--track-gap: expected a whole number of frames >= 0, got -1"),
    (["--track-thr", "0"], "--track-thr: expected an OKS in (0, 1], got 0.0"),
    (["--smooth", "--smooth-beta", "-2"], "--smooth-beta: expected a number >= 0, got -2.0"),
])
def test_bad_options_are_one_line_and_exit_2(checkpoint, two_walkers, tmp_path, args, expected):
    out = tmp_path / "out"
    result = _predict(two_walkers / "walk.avi", "--checkpoint", checkpoint, "--out", out, *args)
    assert result.exit_code == 2 and result.output.strip().splitlines() == [f"error: {expected}"], result.output
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_the_cli_defaults_are_the_settings_defaults():
    import inspect

    from posebh_cli.cli import predict
    from posebh_cli.inference.smooth import OneEuroSettings
    from posebh_cli.inference.track import TrackSettings

    parameters = inspect.signature(predict).parameters
    options = {name: getattr(p.default, "default", p.default) for name, p in parameters.items()}  # typer's Option
    track, smooth = TrackSettings(), OneEuroSettings()
    assert (options["track_gap"], options["track_thr"]) == (track.max_gap, track.oks_thr)
    assert (options["smooth_min_cutoff"], options["smooth_beta"], options["smooth_d_cutoff"]) == \
        (smooth.min_cutoff, smooth.beta, smooth.d_cutoff)
    assert options["track"] is True and options["smooth"] is False
