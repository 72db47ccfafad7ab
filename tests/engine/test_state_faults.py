"""The training-state rotation against a kill at every fault point of the save, including after a resume from
state.old (the double fault), and against a full disk: a complete checkpoint is always found."""
from __future__ import annotations

import errno
import os

import pytest
import torch
from torch import nn

from posebh_cli.engine import state
from posebh_cli.engine.state import find_state, save_state
from posebh_cli.errors import PosebhError

POINTS = ["state.weights_written", "state.tmp_complete", "state.old_removed", "state.rotated_old",
          "state.renamed_new", "state.done"]


class OneProcess:
    is_main_process, process_index = True, 0

    def wait_for_everyone(self) -> None:
        pass


def _save(run, step: int, fault: str | None = None) -> bool:
    """Save a checkpoint whose weights and step both equal `step` in a forked child; True when it was killed."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            if fault:
                os.environ["POSEBH_FAULT"] = fault
            model = nn.Linear(2, 2)
            nn.init.constant_(model.weight, float(step))
            save_state(run / "state", OneProcess(), model, {"progress": {"step": step}})
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


def _found_step(run) -> int:
    found = find_state(run / "state")
    assert found is not None, sorted(p.name for p in run.iterdir())
    step = torch.load(found / "trainer.pt", weights_only=False)["progress"]["step"]
    from safetensors.torch import load_file

    assert torch.all(load_file(str(found / "model.safetensors"))["weight"] == step)  # weights and counters agree
    return step


@pytest.mark.parametrize("double", [False, True], ids=["single", "after-resume-from-old"])
@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_any_point_of_the_save_leaves_a_complete_state(tmp_path, point, double):
    run = tmp_path / "run"
    run.mkdir()
    assert not _save(run, 1)
    if double:  # the first fault: killed between the renames, only state.old/ is left
        assert _save(run, 2, fault="state.rotated_old")
        assert not (run / "state").exists() and _found_step(run) == 1
    killed = _save(run, 3, fault=point)
    # With no state/ to rotate (double fault) the save skips the rotation and its two points: state.old/ stays.
    assert killed == (not double or point not in ("state.old_removed", "state.rotated_old"))
    assert _found_step(run) in (1, 2, 3)
    assert not _save(run, 4)
    assert _found_step(run) == 4
    assert sorted(p.name for p in run.iterdir()) == ["state"]


def test_disk_full_keeps_the_last_state_and_removes_the_partial_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    assert not _save(run, 1)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state, "save_file", full)
    with pytest.raises(PosebhError, match=r"cannot write the training state \(disk full\); the last good state "
                                          r"is kept in .*run/state"):
        save_state(run / "state", OneProcess(), nn.Linear(2, 2), {"progress": {"step": 2}})
    assert sorted(p.name for p in run.iterdir()) == ["state"] and _found_step(run) == 1
