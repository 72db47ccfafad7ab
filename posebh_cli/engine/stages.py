"""Stage schedule: which parameter groups train in a stage.

Freezing only flips `requires_grad`. Frozen modules stay in `train()` mode, as in the official hooks: the
BatchNorm statistics of frozen heads keep updating on the mixed batches and drop path stays active in a frozen
backbone. We keep that on purpose so the schedule reproduces the released training (docs/method-notes.md).
"""
from __future__ import annotations

from torch import nn

from posebh_cli.recipe import GROUPS, StageSpec

# Top-level PoseModel attributes that make up each group (docs/architecture.md, contract: model).
GROUP_MODULES = {
    "backbone": ("backbone",),
    "heads": ("heads",),
    "embedding": ("embedding",),
}


def group_of(param_name: str) -> str | None:
    """The stage group (backbone, heads, embedding) a parameter belongs to, or None."""
    top = param_name.split(".", 1)[0]
    for group, modules in GROUP_MODULES.items():
        if top in modules:
            return group
    return None


def apply_stage(model: nn.Module, stage: StageSpec) -> dict[str, int]:
    """Set `requires_grad` per group for `stage`; returns the number of trainable tensors per group.

    Parameters outside the three groups (none in PoseModel) keep their flag; the prototype bank holds
    buffers, so the method decides whether prototypes move (stage.prototypes).
    """
    counts = {g: 0 for g in GROUPS}
    for name, param in model.named_parameters():
        group = group_of(name)
        if group is None:
            continue
        param.requires_grad_(group in stage.trainable)
        counts[group] += int(param.requires_grad)
    return counts
