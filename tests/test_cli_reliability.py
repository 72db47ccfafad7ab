"""User and OS mistakes through the CLI: one line naming file/record/field, exit 2 (disk full: 1), no traceback,
nothing half-written; usage errors in one line; user text printed as written (no rich markup)."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.inference import io

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], prog_name="posebh")


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# ------------------------------------------------------------------ usage errors (9)
@pytest.mark.parametrize("args, expect", [
    (["prepare-data", "coco", "--out", "x"], "error: posebh prepare-data: Missing option '--src'."),
    (["predict", "in.jpg", "--batch-size", "0"], "error: posebh predict: Invalid value for '--batch-size': "),
    (["no-such-command"], "error: posebh: No such command 'no-such-command'."),
])
def test_usage_errors_are_one_line(args, expect):
    line = one_line_error(invoke(*args))
    assert line.startswith(expect) and line.endswith("--help)")


def test_no_arguments_still_prints_the_help():
    result = invoke()
    assert "prepare-data" in result.output and "Traceback" not in result.output


# ------------------------------------------------------------------ markup (4) and skeleton YAML (3)
@pytest.mark.parametrize("name", ["pose[bold]v2.yaml", "[/x].yaml", "[red]a[/red].yaml"])
def test_user_text_is_printed_as_written(tmp_path, name):
    line = one_line_error(invoke("skeletons", "show", tmp_path / name))
    assert f"{tmp_path / name}: skeleton" in line or f"{tmp_path / name}" in line


@pytest.mark.parametrize("parts, expect", [
    ("[[0, 1]]", "field 'parts': must be a mapping of part name to [start, end), got [[0, 1]]"),
    ('{body: ["0", 2]}', "field 'parts.body': must be [start, end) integers within the 2 keypoints, got ['0', 2]"),
])
def test_bad_skeleton_parts(tmp_path, parts, expect):
    path = tmp_path / "sk.yaml"
    path.write_text(f"name: two\nkeypoints: [a, b]\nsigmas: [0.05, 0.05]\nparts: {parts}\n")
    line = one_line_error(invoke("skeletons", "show", path))
    assert line == f"error: {path}: {expect}"


# ------------------------------------------------------------------ evaluate (3, 7)
def _gt_and_results(tmp_path, duplicate: bool = False):
    images = [{"id": 1, "width": 64, "height": 64}]
    points = [[10.0 + i, 10.0 + i, 2] for i in range(17)]
    anns = [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [5.0, 5.0, 30.0, 30.0], "area": 900.0,
             "keypoints": sum(points, []), "num_keypoints": 17, "iscrowd": 0} for _ in range(2)]
    anns[1]["id"] = 7 if duplicate else 8
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
    results = tmp_path / "res.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "keypoints": sum(points, []), "score": 1.0}]))
    return gt, results


def test_evaluate_refuses_duplicate_annotation_ids(tmp_path):
    gt, results = _gt_and_results(tmp_path, duplicate=True)
    line = one_line_error(invoke("evaluate", "--results", results, "--annotations", gt, "--skeleton", "coco"))
    assert line == f"error: {gt}: record annotation id=7: field 'id': duplicate annotation id 7"


def test_evaluate_output_must_be_a_writable_file_path(tmp_path):
    gt, results = _gt_and_results(tmp_path)
    base = ["evaluate", "--results", results, "--annotations", gt, "--skeleton", "coco", "--output"]
    (tmp_path / "folder").mkdir()
    assert "--output is an existing folder" in one_line_error(invoke(*base, tmp_path / "folder"))
    assert "which is a file, not a folder" in one_line_error(invoke(*base, gt / "metrics.json"))


def test_evaluate_disk_full_leaves_no_partial_file(tmp_path, monkeypatch):
    gt, results = _gt_and_results(tmp_path)
    real_dump = json.dump

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "m.json"))

    monkeypatch.setattr(json, "dump", full)
    line = one_line_error(invoke("evaluate", "--results", results, "--annotations", gt, "--skeleton", "coco",
                                 "--output", tmp_path / "m.json"), code=1)
    monkeypatch.setattr(json, "dump", real_dump)
    assert "disk full" in line
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".m.json", "m.json"))]


# ------------------------------------------------------------------ synth (3)
def test_synth_out_is_an_existing_file(tmp_path):
    (tmp_path / "zoo").write_text("x")
    line = one_line_error(invoke("synth", "--out", tmp_path / "zoo", "--datasets", "coco"))
    assert line == f"error: {tmp_path / 'zoo'}: --out is an existing file; give a folder"


# ------------------------------------------------------------------ predict (3, 4, 11)
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from posebh_cli.models.checkpoint import save_checkpoint
    from posebh_cli.models.pose_model import PoseModel
    from posebh_cli.skeletons import load_skeleton

    torch.manual_seed(0)
    model = PoseModel("vit_pico", ["coco"], [load_skeleton("coco")], img_size=(64, 48))
    recipe = {"model": {"img_size": [64, 48]}, "datasets": [{"name": "coco", "codec": "udp"}]}
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "run", recipe=recipe)


@pytest.fixture
def photo(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    io.write_image(folder / "a.png", np.full((40, 30, 3), 128, np.uint8))
    return folder


def predict(checkpoint, *args):
    return invoke("predict", *args, "--checkpoint", checkpoint, "--device", "cpu")


def test_predict_out_is_an_existing_file_before_inference(checkpoint, photo, tmp_path, monkeypatch):
    from posebh_cli.inference import run

    monkeypatch.setattr(run, "load_checkpoint", lambda *a, **k: pytest.fail("ran the model"))
    (tmp_path / "taken").write_text("x")
    line = one_line_error(predict(checkpoint, photo, "--out", tmp_path / "taken"))
    assert line == f"error: {tmp_path / 'taken'}: --out is an existing file; give a folder"


def test_predict_empty_folder_and_unreadable_inputs_exit_2(checkpoint, tmp_path):
    (tmp_path / "empty").mkdir()
    assert "no image to predict" in one_line_error(predict(checkpoint, tmp_path / "empty", "--out", tmp_path / "o"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not a jpeg")
    (bad / "b.png").write_bytes(b"")
    result = predict(checkpoint, bad, "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == f"error: {bad}: none of the 2 input(s) could be read; nothing written"
    assert not (tmp_path / "o").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]


def test_predict_bad_boxes_keep_the_tools_own_brackets(checkpoint, photo, tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": 1, "bbox": [1, 2], "score": 1.0, "category_id": 1}]))
    line = one_line_error(predict(checkpoint, photo, "--boxes", boxes, "--out", tmp_path / "o"))
    assert "expected [x, y, w, h], got [1, 2]" in line


def test_predict_read_only_out_and_disk_full(checkpoint, photo, tmp_path, monkeypatch):
    real_access = os.access
    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == tmp_path / "ro" else real_access(p, m))
    line = one_line_error(predict(checkpoint, photo, "--out", tmp_path / "ro" / "o"))
    assert "--out cannot be created" in line and "is not writable" in line
    monkeypatch.setattr(os, "access", real_access)

    def full(path, image):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(io, "write_image", full)
    line = one_line_error(predict(checkpoint, photo, "--out", tmp_path / "o"), code=1)
    assert "disk full" in line
    assert not (tmp_path / "o").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".o.")]


@pytest.mark.parametrize("device, expect", [("foo", "--device: 'foo' is not a device"),
                                             ("cuda", "--device cuda: no CUDA device is available")])
def test_predict_bad_device(checkpoint, photo, tmp_path, device, expect):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = invoke("predict", photo, "--checkpoint", checkpoint, "--device", device, "--out", tmp_path / "o")
    assert expect in one_line_error(result)


def test_predict_detector_that_is_not_a_detector(checkpoint, photo, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "linear.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), torch.zeros(1, 4), str(onnx_path), dynamo=False)
    line = one_line_error(predict(checkpoint, photo, "--detector", onnx_path, "--out", tmp_path / "o"))
    assert line.startswith(f"error: {onnx_path}: is not a YOLO-style detector")
