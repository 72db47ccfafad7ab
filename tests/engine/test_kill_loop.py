"""train-mdt killed (SIGKILL) at randomised fault points, resumed each time with --resume, must end bit-identical
to an uninterrupted run with the same metrics.jsonl step list. Points: after an optimizer step, between an epoch's
end and its validation, after validation, and inside the state save (docs/benchmarks.md, Reliability)."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from tiny_setup import tiny_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
# Fault point -> how often an uninterrupted run of the recipe below passes it (6 steps, 2 epochs, states at
# steps 2, 4, 6, after each epoch and at the end; state.old_removed/rotated_old only when a state/ exists).
POINTS = {"train.step": 6, "train.epoch_end": 2, "train.validated": 2, "state.weights_written": 6,
          "state.tmp_complete": 6, "state.old_removed": 5, "state.rotated_old": 5, "state.renamed_new": 6,
          "state.done": 6}
MAX_KILLS_PER_RUN = 3


def _run(recipe: Path, out: Path, fault: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    env.pop("POSEBH_FAULT", None)
    if fault:
        env["POSEBH_FAULT"] = fault
    cmd = [sys.executable, "-m", "posebh_cli.cli", "train-mdt", "--recipe", str(recipe), "--out", str(out)]
    if any((out / name / "COMPLETE").is_file() for name in ("state", "state.old")):
        cmd.append("--resume")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def _steps(run: Path) -> list[tuple]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["epoch"], "stage" in r) for r in records]


@pytest.mark.slow
def test_randomised_kills_always_resume_bit_exact(tmp_path):
    kills_wanted = int(os.environ.get("POSEBH_KILLS", "20"))
    rng = random.Random(int(os.environ.get("POSEBH_KILL_SEED", "0")))
    recipe = tiny_recipe(tmp_path, val_every_epochs=1)
    straight = tmp_path / "straight"
    assert _run(recipe, straight, None).returncode == 0
    want_weights, want_steps = load_file(str(straight / "model.safetensors")), _steps(straight)

    kills, runs, exact, by_point = 0, 0, 0, {}
    while kills < kills_wanted:
        run = tmp_path / f"run{runs}"
        runs += 1
        for attempt in range(MAX_KILLS_PER_RUN + 1):
            point = rng.choice(sorted(POINTS))
            fault = f"{point}@{rng.randint(1, POINTS[point])}" if attempt < MAX_KILLS_PER_RUN else None
            proc = _run(recipe, run, fault)
            if proc.returncode == -signal.SIGKILL:
                kills += 1
                by_point[point] = by_point.get(point, 0) + 1
                continue
            assert proc.returncode == 0, f"{fault}: {proc.stderr[-3000:]}"
            break
        got = load_file(str(run / "model.safetensors"))
        assert [k for k in want_weights if not torch.equal(want_weights[k], got[k])] == [], run
        assert _steps(run) == want_steps, run
        exact += 1
    report = {"kills": kills, "runs": runs, "exact_resumes": exact, "kills_by_point": by_point}
    print("kill loop:", json.dumps(report))
    if os.environ.get("POSEBH_KILL_REPORT"):
        Path(os.environ["POSEBH_KILL_REPORT"]).write_text(json.dumps(report, indent=1))
