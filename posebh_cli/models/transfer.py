"""Transfer surgery (paper §4.5): a multi-dataset model split to one expert for a new skeleton.

* `init_transfer`: the recipe init `{kind: transfer, path, expert}`, as the released transfer code starts: the
  backbone split to one expert, the embedding net loaded, the new head's deconvs from that expert's head, a new
  final layer; the prototypes of the new skeleton come from the source when it has them (a fit-prototypes output).
* `append_prototypes`: a plain model whose prototype bank also holds a new skeleton's fitted rows (fit-prototypes).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from posebh_cli.errors import input_error
from posebh_cli.models.checkpoint import load_model
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.models.prototypes import bank_entries

DEFAULT_EXPERT = "coco"


def choose_expert(model, expert: str | None, source: str | Path) -> str:
    """The source dataset to split to: `expert`, else coco when the model has it, else its first dataset."""
    if expert is None:
        return DEFAULT_EXPERT if DEFAULT_EXPERT in model.datasets else model.datasets[0]
    if expert not in model.datasets:
        raise input_error(source, f"no dataset {expert!r} to split to; it has {', '.join(model.datasets)}",
                          field="expert")
    return expert


def bank_rows(model, skeleton, name: str) -> torch.Tensor | None:
    """The prototype rows of `name` (or of a bank entry with the same keypoints) in a model's bank, else None."""
    if getattr(model, "prototypes", None) is None:
        return None
    found = None
    for entry_name, sk, start in bank_entries(model):
        if entry_name == name or (found is None and sk.keypoints == skeleton.keypoints):
            found = (start, sk.num_keypoints)
            if entry_name == name:
                break
    if found is None or found[1] != skeleton.num_keypoints:
        return None
    return model.prototypes.prototypes[found[0]:found[0] + found[1]]


def append_prototypes(plain: nn.Module, name: str, skeleton, prototypes: torch.Tensor) -> nn.Module:
    """A copy of a plain PoseModel whose prototype bank also holds `name`'s fitted rows (and no head for it)."""
    config = replace(plain.config, num_experts=0, with_embedding=True, prototype_only=[name])
    with torch.device("meta"):
        model = PoseModel.from_config(config, plain.skeletons, [skeleton])
    state = {k: v.detach().clone() for k, v in plain.state_dict().items()}
    bank = state["prototypes.prototypes"][: plain.num_global_keypoints]  # a fitted source's extra rows are dropped
    state["prototypes.prototypes"] = torch.cat([bank, prototypes.to(bank)])
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def resize_pos_table(pos: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """A [1, 1 + h*w, D] position table of token grid `grid` interpolated (bicubic) to `new_grid`; the extra
    first slot is kept. Lets a transfer recipe ask for another input size than its source model's."""
    extra, patches = pos[:, :1], pos[:, 1:]
    if patches.shape[1] != grid[0] * grid[1]:
        return pos  # not this grid: the shape check below names the mismatch
    patches = patches.reshape(1, grid[0], grid[1], -1).permute(0, 3, 1, 2).float()
    patches = torch.nn.functional.interpolate(patches, size=tuple(new_grid), mode="bicubic", align_corners=False)
    return torch.cat([extra.float(), patches.flatten(2).transpose(1, 2)], dim=1).to(pos.dtype)


def init_transfer(model: nn.Module, path: str | Path, expert: str | None = None) -> dict:
    """Initialise a single-dataset PoseModel for a new skeleton from a (multi-dataset) checkpoint; returns a summary.

    Copied: the backbone split to `expert` (coco by default), the embedding net (when both models have one),
    the expert head's deconvs into every head; the final layer stays new. Prototypes of the new skeleton are
    copied when the source's bank has them (e.g. a fit-prototypes output), else they stay random (as released).
    """
    source = load_model(path)
    expert = choose_expert(source, expert, path)
    plain = source.split(expert)
    if model.with_embedding and not plain.with_embedding:
        raise input_error(path, "has no keypoint embedding; the PoseBH transfer needs a PoseBH checkpoint "
                                "(or use the baseline protocol)", field="with_embedding")
    own = model.state_dict()
    state = {}
    for key, value in plain.state_dict().items():
        if key == "backbone.pos_embed" and key in own and own[key].shape != value.shape:
            value = resize_pos_table(value, plain.backbone.grid_size, model.backbone.grid_size)
        if key.startswith("backbone.") or (key.startswith("embedding.") and model.with_embedding):
            if key not in own or own[key].shape != value.shape:
                raise input_error(path, f"{key} {tuple(value.shape)} does not fit the recipe's model "
                                        f"({tuple(own[key].shape) if key in own else 'absent'}); check model.arch "
                                        "and model.img_size", field="model.init.path")
            state[key] = value
        elif key.startswith("heads.0.deconv_layers."):
            for d in range(len(model.heads)):
                state[key.replace("heads.0.", f"heads.{d}.", 1)] = value
    prototypes = "random"
    if model.with_embedding and len(model.datasets) == 1:
        rows = bank_rows(source, model.skeletons[0], model.datasets[0])
        if rows is not None and rows.shape == own["prototypes.prototypes"].shape:
            state["prototypes.prototypes"] = rows
            prototypes = "from source"
    model.load_state_dict({k: v.detach().clone().to(own[k].dtype) for k, v in state.items()}, strict=False)
    return {"expert": expert, "tensors": len(state), "prototypes": prototypes}


__all__ = ["DEFAULT_EXPERT", "append_prototypes", "bank_rows", "choose_expert", "init_transfer", "resize_pos_table"]
