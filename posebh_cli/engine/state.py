"""Training state for exact resume, written atomically into `<run>/state/`.

Layout: `model.safetensors` (all weights and buffers), `trainer.pt` (counters, optimizer, GradScaler,
sampler position, method state, stage bookkeeping) and `rng_rank<r>.pt` (each process's RNG streams).
A checkpoint is assembled in `state.tmp/` and renamed over `state/`, so a kill at any moment leaves
either the previous or the new checkpoint, never a mix.
"""
from __future__ import annotations

import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from posebh_cli.errors import PosebhError


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
    """Write a full checkpoint atomically. Called on every process (each saves its RNG streams)."""
    tmp = state_dir.with_name(state_dir.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        weights = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        torch.save(trainer_state, tmp / "trainer.pt")
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng_rank{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        old = state_dir.with_name(state_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if state_dir.exists():
            state_dir.rename(old)
        tmp.rename(state_dir)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def find_state(state_dir: Path) -> Path | None:
    """The newest complete checkpoint: `state/`, or `state.old/` if a kill hit between the two renames."""
    for candidate in (state_dir, state_dir.with_name(state_dir.name + ".old")):
        if (candidate / "trainer.pt").is_file():
            return candidate
    return None


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
