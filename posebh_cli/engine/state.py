"""Training state for exact resume, written atomically into `<run>/state/`.

Layout: `model.safetensors` (all weights and buffers), `trainer.pt` (counters, optimizer, GradScaler,
sampler position, method state, stage bookkeeping) and `rng_rank<r>.pt` (each process's RNG streams).
A checkpoint is assembled in `state.tmp/`, finished by a `COMPLETE` marker written last, and rotated in:
`state/` -> `state.old/`, `state.tmp/` -> `state/`, then `state.old/` is removed. A complete checkpoint is
never deleted before its successor is in place (after a resume from `state.old/` there is no `state/` to
rotate, so `state.old/` stays until the new `state/` exists), and `find_state` only accepts folders with
the marker: a kill at any instruction leaves a complete checkpoint that `--resume` finds. A failed write
(disk full) removes the partial `state.tmp/` and keeps the last good checkpoint.
"""
from __future__ import annotations

import errno
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from posebh_cli.errors import PosebhError, fault_point

COMPLETE = "COMPLETE"  # written last into a finished checkpoint folder


@dataclass
class Progress:
    """Counters the loop needs to continue exactly where it stopped."""

    step: int = 0  # optimizer steps done
    micro_step: int = 0  # batches done (steps x grad_accum)
    epoch: int = 0  # current epoch
    batch_in_epoch: int = 0  # batches of `epoch` already consumed
    stage_started: str | None = None  # name of the stage whose on_stage_start already ran
    best_metric: float | None = None
    skipped_nonfinite: int = 0
    skipped_images: int = 0  # training samples whose image failed to decode


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(state_dir: Path, accelerator, model: nn.Module, trainer_state: dict) -> None:
    """Write a full checkpoint and rotate it in (see the module docstring). Called on every process."""
    tmp = state_dir.with_name(state_dir.name + ".tmp")
    old = state_dir.with_name(state_dir.name + ".old")
    try:
        if accelerator.is_main_process:
            _remove(tmp)
            tmp.mkdir(parents=True)
            weights = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
            save_file(weights, str(tmp / "model.safetensors"))
            fault_point("state.weights_written")
            torch.save(trainer_state, tmp / "trainer.pt")
        accelerator.wait_for_everyone()
        torch.save(rng_state(), tmp / f"rng_rank{accelerator.process_index}.pt")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _sync_folder(tmp)
            (tmp / COMPLETE).write_text("ok\n")
            fault_point("state.tmp_complete")
    except OSError as exc:
        if accelerator.is_main_process:
            _remove(tmp)
        raise _write_error(state_dir, exc) from None
    if accelerator.is_main_process:
        if _is_complete(state_dir):
            _remove(old)  # a stale or partial state.old/; state/ is complete
            fault_point("state.old_removed")
            state_dir.rename(old)
            fault_point("state.rotated_old")
        else:
            _remove(state_dir)  # never complete: a leftover of a kill while it was being removed
        tmp.rename(state_dir)
        fault_point("state.renamed_new")
        _remove(old)
        fault_point("state.done")
    accelerator.wait_for_everyone()


def find_state(state_dir: Path) -> Path | None:
    """The newest complete checkpoint: `state/`, or `state.old/` when a kill hit between the two renames."""
    for candidate in (state_dir, state_dir.with_name(state_dir.name + ".old")):
        if _is_complete(candidate):
            return candidate
    return None


def _is_complete(folder: Path) -> bool:
    """The marker, or (runs saved before the marker existed) all three kinds of file of a finished save."""
    files = ("trainer.pt", "model.safetensors", "rng_rank0.pt")
    return (folder / "trainer.pt").is_file() and ((folder / COMPLETE).is_file()
                                                  or all((folder / name).is_file() for name in files))


def _remove(folder: Path) -> None:
    """Remove a checkpoint folder, its marker first, so a kill midway never leaves a folder that looks complete."""
    (folder / COMPLETE).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def _sync_folder(folder: Path) -> None:
    """Flush the checkpoint's files to disk before the marker says they are complete (power loss, not only kills)."""
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())


def _write_error(state_dir: Path, exc: OSError) -> PosebhError:
    kept = find_state(state_dir)
    reason = "disk full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
    last = f"the last good state is kept in {kept}" if kept else "no earlier state exists"
    return PosebhError(f"{state_dir}: cannot write the training state ({reason}); {last}")


def load_state(state_dir: Path, accelerator, model: nn.Module) -> dict:
    """Load weights into `model` and this process's RNG streams; return the trainer state dict."""
    found = find_state(state_dir)
    if found is None:
        raise PosebhError(f"{state_dir}: no training state to resume from (run without --resume to start)")
    missing, unexpected = model.load_state_dict(load_file(str(found / "model.safetensors")), strict=False)
    if missing or unexpected:
        raise PosebhError(f"{found / 'model.safetensors'}: does not match the recipe's model "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    trainer_state = torch.load(found / "trainer.pt", map_location="cpu", weights_only=False)
    rng_file = found / f"rng_rank{accelerator.process_index}.pt"
    if not rng_file.is_file():
        raise PosebhError(f"{rng_file}: missing; resume with the same number of processes as the saved run")
    set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=False))
    return trainer_state


def progress_dict(progress: Progress) -> dict:
    return asdict(progress)
