"""train-mdt through the CLI against bad recipes and data, kills at the epoch end, a full disk and undecodable
images: one line naming the key, exit 2, no half-written run directory; resumes are exact."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from tiny_setup import tiny_recipe  # noqa: E402

from posebh_cli.cli import app  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def train(recipe, out, *args):
    return runner.invoke(app, ["train-mdt", "--recipe", str(recipe), "--out", str(out), *args])


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.strip()]
    # A progress bar drawn before the failure may precede it; the error itself is the one last line.
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], result.output
    assert "Traceback" not in result.output
    return lines[-1]


def killed_run(recipe, out, fault: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "POSEBH_FAULT": fault,
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    cmd = [sys.executable, "-m", "posebh_cli.cli", "train-mdt", "--recipe", str(recipe), "--out", str(out)]
    if (Path(out) / "state").exists() or (Path(out) / "state.old").exists():
        cmd.append("--resume")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def steps_of(run: Path) -> list[tuple]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["epoch"], "stage" in r) for r in lines]


@pytest.mark.parametrize("override, expect", [
    ("train.lr=[1e-3", "field 'train.lr': override 'train.lr=[1e-3': the value is not valid YAML"),
    ("train.lr=.inf", "field 'train.lr': must be a finite number, got inf"),
    ("stages.0.lr=.inf", "field 'stages[0].lr': must be a finite number, got inf"),
    ("model.arch=vit_femto", "field 'model.arch': unknown architecture 'vit_femto' (allowed: "),
    ("train.batch_size=1000", "field 'train.batch_size': must be at most 12 (the training samples"),
])
def test_bad_overrides_are_one_line_and_leave_no_run(tiny, tmp_path, override, expect):
    line = one_line_error(train(tiny, tmp_path / "run", "--set", override))
    assert expect in line and str(tiny) in line
    assert not (tmp_path / "run").exists()


def _edit_train_split(data: Path, change) -> None:
    path = data / "train.json"
    coco = json.loads(path.read_text())
    change(coco)
    path.write_text(json.dumps(coco))


def test_bad_prepared_data_is_one_line_and_leaves_no_run(tiny, tmp_path):
    mpii = tmp_path / "data" / "mpii"
    _edit_train_split(mpii, lambda c: c["annotations"][1].pop("bbox"))
    line = one_line_error(train(tiny, tmp_path / "run"))
    assert f"{mpii / 'train.json'}: record annotation id=2: field 'bbox': missing" in line
    assert not (tmp_path / "run").exists()

    def unlabelled(coco):
        for ann in coco["annotations"]:
            ann["keypoints"] = [0.0] * len(ann["keypoints"])
            ann["bbox"] = [1.0, 1.0, 10.0, 10.0]
    _edit_train_split(mpii, unlabelled)
    line = one_line_error(train(tiny, tmp_path / "run"))
    assert "field 'datasets[1].path': dataset 'mpii'" in line and "has no labelled training sample" in line
    assert not (tmp_path / "run").exists()


def test_a_failure_before_the_first_step_leaves_no_run_dir(tiny, tmp_path, monkeypatch):
    from posebh_cli.errors import PosebhError
    from posebh_cli.methods.multihead import MultiHead

    def broken(self, batch, stage):
        raise PosebhError("first step failed")

    monkeypatch.setattr(MultiHead, "losses", broken)
    assert one_line_error(train(tiny, tmp_path / "run")) == "error: first step failed"
    assert not (tmp_path / "run").exists()  # no recipe.yaml, no event files


def test_disk_full_at_a_checkpoint_keeps_the_last_good_state(tiny, tmp_path, monkeypatch):
    from posebh_cli.engine import state

    real, calls = state.save_file, {"n": 0}

    def full_on_the_second_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(state, "save_file", full_on_the_second_save)
    line = one_line_error(train(tiny, tmp_path / "run"))
    assert "cannot write the training state (disk full); the last good state is kept in" in line
    run = tmp_path / "run"
    assert not (run / "state.tmp").exists() and not (run / "model.safetensors").exists()
    assert torch.load(run / "state" / "trainer.pt", weights_only=False)["progress"]["step"] == 2


def test_an_undecodable_image_is_skipped_counted_and_reported(tiny, tmp_path):
    (tmp_path / "data" / "coco-images" / "1.png").write_bytes(b"\x89PNG broken")
    result = train(tiny, tmp_path / "run", "--max-steps", "3")  # one epoch
    assert result.exit_code == 0, result.output
    assert "1.png: image failed to decode; sample skipped" in result.output
    saved = torch.load(tmp_path / "run" / "state" / "trainer.pt", weights_only=False)
    skipped = saved["progress"]["skipped_images"]
    assert skipped == 2  # the image's two people, each once in the epoch
    assert f"{skipped} training sample(s) skipped: their image failed to decode" in result.output


def _weights(run: Path) -> dict:
    return load_file(str(run / "model.safetensors"))


@pytest.mark.slow
def test_a_kill_at_the_epoch_end_resumes_without_replaying_the_epoch(tmp_path):
    # 3 steps per epoch and a checkpoint every 3 steps: the state of step 3 sits at the epoch's last batch.
    recipe = tiny_recipe(tmp_path, checkpoint_every_steps=3, checkpoint_every_epochs=0)
    straight = tmp_path / "straight"
    assert train(recipe, straight).exit_code == 0
    killed = tmp_path / "killed"
    assert killed_run(recipe, killed, "train.epoch_end@1").returncode == -signal.SIGKILL
    saved = torch.load(killed / "state" / "trainer.pt", weights_only=False)["progress"]
    assert (saved["step"], saved["epoch"], saved["batch_in_epoch"]) == (3, 0, 3)
    result = train(recipe, killed, "--resume")
    assert result.exit_code == 0, result.output
    a, b = _weights(straight), _weights(killed)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert steps_of(killed) == steps_of(straight)


@pytest.mark.slow
def test_a_double_fault_in_the_state_rotation_resumes_exactly(tmp_path):
    recipe = tiny_recipe(tmp_path)
    straight = tmp_path / "straight"
    assert train(recipe, straight).exit_code == 0
    run = tmp_path / "run"
    assert killed_run(recipe, run, "state.rotated_old@2").returncode == -signal.SIGKILL  # at the step-4 save
    assert not (run / "state").exists() and (run / "state.old").exists()
    # Resumed from state.old/, killed again inside the next save: the old code had deleted state.old/ here.
    assert killed_run(recipe, run, "state.tmp_complete@1").returncode == -signal.SIGKILL
    result = train(recipe, run, "--resume")
    assert result.exit_code == 0, result.output
    a, b = _weights(straight), _weights(run)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert steps_of(run) == steps_of(straight)
