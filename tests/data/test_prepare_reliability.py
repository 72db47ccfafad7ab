"""prepare-data against hostile files and OS failures: unreadable images, ids given as lists, strings as numbers,
code in a pickle, a kill mid-write, a read-only or full disk. Each: one line, nothing half-written."""
from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
import native_samples as ns  # noqa: E402

from posebh_cli.cli import app  # noqa: E402

runner = CliRunner()
COCO_VAL = "annotations/person_keypoints_val2017.json"
REPO = Path(__file__).resolve().parents[2]


def run(tmp_path, *args, out="out"):
    result = runner.invoke(app, ["prepare-data", *args, "--out", str(tmp_path / out)])
    return result, " ".join(result.output.split())


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def leftovers(tmp_path, name="out") -> list[str]:
    return [p.name for p in tmp_path.iterdir() if p.name == name or p.name.startswith(f".{name}.tmp")]


@pytest.mark.parametrize("damage, problem", [
    (lambda p: p.write_bytes(b""), "is not a readable image"),
    (lambda p: p.write_bytes(b"this is not an image at all"), "is not a readable image"),
    (lambda p: p.write_bytes(p.read_bytes()[:-200]), "is truncated (no JPEG end marker)"),
])
def test_unreadable_images_are_reported_like_missing_ones(tmp_path, damage, problem):
    src = ns.coco_sample(tmp_path / "src")
    damage(src / "val2017/000000000200.jpg")
    line = one_line_error(run(tmp_path, "coco", "--src", str(src))[0])
    assert f"record image id=200: field 'file_name': image {problem}" in line
    assert "--skip-missing drops them" in line and leftovers(tmp_path) == []

    result, text = run(tmp_path, "coco", "--src", str(src), "--skip-missing")
    assert result.exit_code == 0, result.output
    val = json.loads((tmp_path / "out/val.json").read_text())
    assert [im["id"] for im in val["images"]] == [201]
    assert "val │ 1 │ 1 │ 0 │ 0 │ 1" in text  # missing 0, unreadable 1


def test_verify_images_decodes_fully(tmp_path):
    src = ns.coco_sample(tmp_path / "src")
    image = src / "val2017/000000000200.jpg"
    image.write_bytes(image.read_bytes()[:200] + b"\xff\xd9")  # a header and an end marker, no image between
    result, _ = run(tmp_path, "coco", "--src", str(src), "--verify-images")
    line = one_line_error(result)
    assert "record image id=200: field 'file_name': image cannot be decoded" in line
    assert run(tmp_path, "coco", "--src", str(src))[0].exit_code == 0  # the fast check cannot see this one


def test_ids_given_as_lists_and_strings_as_numbers(tmp_path):
    src = ns.apt36k_sample(tmp_path / "apt")
    ns.edit_json(src / "annotations/apt36k_annotations.json",
                 lambda d: d["annotations"][0].update(category_id=[1]))
    line = one_line_error(run(tmp_path, "apt36k", "--src", str(src))[0])
    assert "record annotation id=10: field 'category_id': expected an integer, got [1]" in line

    src = ns.interhand_sample(tmp_path / "hand")
    ns.edit_json(src / "annotations/train/InterHand2.6M_train_data.json",
                 lambda d: d["annotations"][0].update(image_id=[1]))
    line = one_line_error(run(tmp_path, "interhand", "--src", str(src))[0])
    assert "record annotation id=50: field 'image_id': expected an integer, got [1]" in line

    src = ns.coco_sample(tmp_path / "coco")
    ns.edit_json(src / COCO_VAL, lambda d: d["annotations"][0]["keypoints"].__setitem__(0, "12.5"))
    line = one_line_error(run(tmp_path, "coco", "--src", str(src))[0])
    assert "record annotation id=2000: field 'keypoints': expected numbers, got '12.5'" in line
    assert leftovers(tmp_path) == []


class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_3dpw_pickles_cannot_run_code(tmp_path, monkeypatch):
    src = ns.pw3d_pickle_sample(tmp_path / "src")
    target = src / "sequenceFiles/train/downtown_walk_00.pkl"
    with open(target, "rb") as f:
        seq = pickle.load(f, encoding="latin1")
    seq["genders"] = [Payload()]
    target.write_bytes(pickle.dumps(seq, protocol=2))
    monkeypatch.chdir(tmp_path)
    line = one_line_error(run(tmp_path, "3dpw", "--src", str(src))[0])
    assert "downtown_walk_00.pkl: cannot read pickle" in line and "refused to load" in line
    assert not (tmp_path / "pwned").exists()


def test_out_under_a_file_or_in_a_read_only_folder(tmp_path, monkeypatch):
    src = ns.coco_sample(tmp_path / "src")
    (tmp_path / "afile").write_text("x")
    line = one_line_error(run(tmp_path, "coco", "--src", str(src), out="afile/out")[0])
    assert "afile, which is a file" in line

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path / "ro" else real_access(p, mode))
    (tmp_path / "ro").mkdir()
    line = one_line_error(run(tmp_path, "coco", "--src", str(src), out="ro/out")[0])
    assert "ro/out: --out cannot be created" in line and "is not writable" in line


def test_disk_full_while_writing_leaves_nothing(tmp_path, monkeypatch):
    import posebh_cli.data.prepared as prepared

    src = ns.coco_sample(tmp_path / "src")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".out.tmpX/val.json"))

    monkeypatch.setattr(prepared, "_dump_json", full)
    line = one_line_error(run(tmp_path, "coco", "--src", str(src))[0], code=1)
    assert "disk full" in line
    assert leftovers(tmp_path) == []


def test_a_kill_mid_write_leaves_a_temporary_that_the_next_run_removes(tmp_path):
    src = ns.coco_sample(tmp_path / "src")
    env = {**os.environ, "POSEBH_FAULT": "prepare.split_written", "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-m", "posebh_cli.cli", "prepare-data", "coco", "--src", str(src),
                             "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [name for name in leftovers(tmp_path) if name.startswith(".out.tmp")]  # the kill left one
    result, _ = run(tmp_path, "coco", "--src", str(src))
    assert result.exit_code == 0, result.output
    assert leftovers(tmp_path) == ["out"]
