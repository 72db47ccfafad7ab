"""Optimizer with layer-wise lr decay, and the learning rate as an explicit function of (step, epoch).

Layer ids follow ViTPose's LayerDecayOptimizerConstructor: the patch embedding and position embedding are
layer 0, `backbone.blocks.i` is layer i+1, everything else (last norm, heads, embedding net) is layer L+1.
A parameter's lr is `lr * rate ** (L + 1 - layer_id)`, so the heads get the full lr.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from posebh_cli.recipe import StageSpec, TrainSpec

_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def num_backbone_layers(model: nn.Module) -> int:
    """L: the number of transformer blocks, read from the parameter names."""
    ids = [int(m.group(1)) for name, _ in model.named_parameters() if (m := _BLOCK.search(name))]
    return max(ids) + 1 if ids else 0


def layer_id(name: str, num_layers: int) -> int:
    """Layer id of a parameter for layer-wise lr decay (see module docstring)."""
    if name.startswith("backbone.") and ("pos_embed" in name or "patch_embed" in name or "cls_token" in name):
        return 0
    if name.startswith("backbone.") and (m := _BLOCK.search(name)):
        return int(m.group(1)) + 1
    return num_layers + 1


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """1-D tensors (norms), biases and the position embedding are not decayed."""
    return param.ndim <= 1 or name.endswith(".bias") or "pos_embed" in name or "cls_token" in name


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float | None) -> list[dict]:
    """One group per (layer id, decay or not), each with an `lr_scale`. Only `requires_grad` params.

    Build the optimizer before any stage freezing: frozen params simply get no gradient and are skipped
    by the optimizer, as in the official hooks which freeze after the optimizer is built.
    """
    num_layers = num_backbone_layers(model)
    rate = 1.0 if layer_decay is None else layer_decay
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lid = layer_id(name, num_layers)
        decay = not no_weight_decay(name, param)
        group = groups.setdefault((lid, decay), {
            "params": [], "names": [], "layer_id": lid,
            "weight_decay": weight_decay if decay else 0.0,
            "lr_scale": rate ** (num_layers + 1 - lid),
        })
        group["params"].append(param)
        group["names"].append(name)
    return [groups[key] for key in sorted(groups)]


def build_optimizer(model: nn.Module, train: TrainSpec) -> torch.optim.Optimizer:
    """AdamW (MDT recipes) or Adam (transfer recipes), betas (0.9, 0.999), layer-wise lr decay."""
    groups = param_groups(model, train.weight_decay, train.layer_decay)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=train.lr, betas=(0.9, 0.999))
    # Adam's weight decay is L2 in the gradient, as in torch/mmcv Adam
    return torch.optim.Adam(groups, lr=train.lr, betas=(0.9, 0.999))


def warmup_factor(step: int, warmup_iters: int, warmup_ratio: float) -> float:
    """mmcv's linear warmup: ratio at step 0, rising linearly to 1 at `warmup_iters`."""
    if step >= warmup_iters:
        return 1.0
    return warmup_ratio + (1.0 - warmup_ratio) * step / warmup_iters


def lr_at(step: int, epoch: int, stages: list[StageSpec], train: TrainSpec) -> float:
    """The base lr of optimizer step `step` in `epoch`: the stage's lr (piecewise constant), warmed up."""
    stage = next((s for s in stages if s.epochs[0] <= epoch < s.epochs[1]), stages[-1])
    return stage.lr * warmup_factor(step, train.warmup_iters, train.warmup_ratio)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write `lr * lr_scale` into every param group."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
