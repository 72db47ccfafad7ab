"""`posebh evaluate`: both modes, the metrics file, and one-line errors with exit status 2."""
from __future__ import annotations

import json
import sys
import types

import pytest
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.commands.evaluate import metrics_table


def run_cli(*args):
    result = CliRunner().invoke(app, ["evaluate", *args])
    return result.exit_code, result.output


@pytest.fixture
def files(coco_data, write_json):
    gt, results = coco_data(17, seed=11)
    return write_json("gt.json", gt), write_json("res.json", results), gt, results


def assert_user_error(code: int, output: str, *fragments: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if "error:" in line]
    assert len(lines) == 1, output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, output)


def test_writes_flat_metrics_and_no_temp_files(files, tmp_path):
    gt_path, res_path, _, _ = files
    out = tmp_path / "out" / "metrics.json"
    code, text = run_cli("--results", res_path, "--annotations", gt_path, "--skeleton", "coco", "--out", str(out))
    assert code == 0, text
    metrics = json.loads(out.read_text())
    assert list(metrics)[:3] == ["AP", "AP50", "AP75"] and all(isinstance(v, float) for v in metrics.values())
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]


def test_missing_and_invalid_files(files, tmp_path):
    gt_path, res_path, _, _ = files
    missing = str(tmp_path / "nope.json")
    assert_user_error(*run_cli("--results", missing, "--annotations", gt_path, "--skeleton", "coco"),
                      missing, "file not found")
    bad = tmp_path / "bad.json"
    bad.write_text("[{\"image_id\": 1,")
    assert_user_error(*run_cli("--results", str(bad), "--annotations", gt_path, "--skeleton", "coco"),
                      str(bad), "invalid JSON")


def test_unknown_image_id_names_file_record_and_field(files, write_json, tmp_path):
    gt_path, _, _, results = files
    results[3]["image_id"] = 999
    res_path = write_json("res_bad.json", results)
    out = tmp_path / "metrics.json"
    code, text = run_cli("--results", res_path, "--annotations", gt_path, "--skeleton", "coco", "--out", str(out))
    assert_user_error(code, text, res_path, "result #3", "field 'image_id'", "999")
    assert not out.exists() and list(tmp_path.glob(".metrics.json*")) == []


def test_wrong_keypoint_length(files, write_json):
    gt_path, _, gt, results = files
    results[0]["keypoints"] = results[0]["keypoints"][:48]
    assert_user_error(*run_cli("--results", write_json("r.json", results), "--annotations", gt_path,
                               "--skeleton", "coco"),
                      "result #0", "field 'keypoints'", "expected 51 values", "got 48")
    # the skeleton must fit the annotations too
    assert_user_error(*run_cli("--results", write_json("r2.json", []), "--annotations", gt_path,
                               "--skeleton", "aic"),
                      gt_path, "annotation id=1", "field 'keypoints'", "expected 42 values")


def test_unknown_protocol_skeleton_and_missing_options(files):
    gt_path, res_path, _, _ = files
    assert_user_error(*run_cli("--results", res_path, "--annotations", gt_path, "--skeleton", "coco",
                               "--protocol", "pck3d"), "unknown protocol 'pck3d'")
    assert_user_error(*run_cli("--results", res_path, "--annotations", gt_path, "--skeleton", "octopus"),
                      "unknown skeleton 'octopus'")
    assert_user_error(*run_cli("--results", res_path, "--annotations", gt_path, "--skeleton", "coco",
                               "--protocol", "wholebody"), "protocol 'wholebody'", "'coco'")
    assert_user_error(*run_cli("--results", res_path, "--skeleton", "coco"), "--annotations")
    assert_user_error(*run_cli(), "--results", "--checkpoint")
    assert_user_error(*run_cli("--results", res_path, "--annotations", gt_path, "--skeleton", "coco",
                               "--protocol", "pckh"), gt_path, "field 'head_box'")


def test_missing_area_points_to_the_noarea_protocol(files, write_json):
    _, res_path, gt, _ = files
    del gt["annotations"][0]["area"]
    assert_user_error(*run_cli("--results", res_path, "--annotations", write_json("g.json", gt),
                               "--skeleton", "coco"), "field 'area'", "coco_noarea")


def test_checkpoint_mode_calls_evaluate_checkpoint(monkeypatch, tmp_path):
    calls = []

    def evaluate_checkpoint(checkpoint, data, split, boxes=None, flip=True, dataset=None, batch_size=32, device=None,
                            **more):
        calls.append((str(checkpoint), str(data), split, boxes, flip, dataset, batch_size, device))
        return {"PCKh": 0.9, "PCKh@0.1": 0.4}

    fake = types.ModuleType("posebh_cli.inference.evaluate")
    fake.evaluate_checkpoint = evaluate_checkpoint
    monkeypatch.setitem(sys.modules, "posebh_cli.inference.evaluate", fake)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "a").mkdir(parents=True)  # --checkpoint is a model name or an existing path
    out = tmp_path / "m.json"
    code, text = run_cli("--checkpoint", "runs/a", "--data", "prepared/mpii", "--split", "test", "--no-flip",
                         "--dataset", "mpii", "--batch-size", "4", "--out", str(out), "--device", "cpu")
    assert code == 0, text
    assert calls == [("runs/a", "prepared/mpii", "test", None, False, "mpii", 4, "cpu")]
    assert json.loads(out.read_text()) == {"PCKh": 0.9, "PCKh@0.1": 0.4}
    assert "PCKh@0.1" in text
    assert_user_error(*run_cli("--checkpoint", "runs/a"), "--data")


def test_table_is_a_grid_for_part_metrics():
    parts = {f"{p}/{s}": 0.5 for p in ("body", "face") for s in ("AP", "AR")}
    grid = metrics_table({**parts, "AP": 0.5, "AR": 0.5})
    assert [c.header for c in grid.columns] == ["part", "AP", "AR"] and grid.row_count == 2
    assert grid.caption == "AP 0.5000, AR 0.5000"
    flat = metrics_table({"PCKh": 0.9, "PCKh@0.1": 0.4, "PCKh/Head": 1.0})
    assert [c.header for c in flat.columns] == ["metric", "value"] and flat.row_count == 3
