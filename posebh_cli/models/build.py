"""Building a PoseModel from a recipe and initialising it from a checkpoint: every construction path in one place.

`build_model` makes one head (and expert) per recipe dataset; `init_model` applies the recipe's `model.init`
(MAE/timm weights, our or an official checkpoint matched by dataset name, or the transfer surgery of
`models/transfer.py`). Methods that own their heads (distill) build their PoseModel and call `init_model`.
"""
from __future__ import annotations

import re
from pathlib import Path

from torch import nn

from posebh_cli.errors import PosebhError, input_error
from posebh_cli.models.checkpoint import head_channels_of, load_model
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.models.transfer import init_transfer, resize_pos_table
from posebh_cli.recipe import InitSpec, Recipe
from posebh_cli.skeletons import Skeleton

_PER_DATASET = re.compile(r"^(heads\.|.*\.mlp\.experts\.)(\d+)(\..*)$")  # head d / expert d parameters


def build_model(recipe: Recipe, skeletons: list[Skeleton], with_embedding: bool) -> nn.Module:
    """PoseModel with one head (and expert) per recipe dataset (`skeletons` in recipe order), initialised as the
    recipe says."""
    spec = recipe.model
    head_channels = spec.head_channels or 256
    if spec.init.kind == "transfer":  # the new head starts from the source head's deconvs: same width
        head_channels = head_channels_of(spec.init.path)
        if spec.head_channels not in (None, head_channels):
            raise input_error("recipe", f"the transfer source {spec.init.path} has {head_channels}-channel heads, "
                              f"the recipe asks for {spec.head_channels}", field="model.head_channels")
    model = PoseModel(spec.arch, [d.name for d in recipe.datasets], list(skeletons),
                      with_embedding=with_embedding, embed_dim=spec.embed_dim,
                      prototypes_per_keypoint=spec.prototypes_per_keypoint, img_size=spec.img_size,
                      drop_path_rate=spec.drop_path, head_channels=head_channels)
    init_model(model, spec.init)
    return model


def init_model(model: nn.Module, init: InitSpec) -> None:
    """Apply a recipe's `model.init` to a freshly built PoseModel."""
    if init.kind == "none":
        return
    if init.kind == "mae":
        model.backbone.init_from_file(init.path)
    elif init.kind == "transfer":  # a new skeleton from a multi-dataset model
        init_transfer(model, init.path, init.expert)
    else:
        init_from_checkpoint(model, init.path)


def init_from_checkpoint(model: nn.Module, path: str | Path) -> int:
    """Copy matching tensors from a checkpoint load_model reads (ours or official); returns how many.

    Heads and experts are matched by dataset name, not position, so a recipe may list the checkpoint's datasets
    in another order or only some of them. The prototype bank is copied only when the dataset lists are equal.
    A recipe at another input size gets the position table interpolated to its token grid (as a ViT is fine-tuned
    at a higher resolution).
    """
    source_model = load_model(path)
    source, own = source_model.state_dict(), model.state_dict()
    if source["backbone.pos_embed"].shape != own["backbone.pos_embed"].shape:
        source["backbone.pos_embed"] = resize_pos_table(source["backbone.pos_embed"], source_model.backbone.grid_size,
                                                        model.backbone.grid_size)
    source_index = {name: i for i, name in enumerate(source_model.datasets)}
    matched = {}
    for key, value in own.items():
        src_key = _source_key(key, model.datasets, source_index)
        if key.startswith("prototypes.") and source_model.datasets != model.datasets:
            continue
        if src_key in source and source[src_key].shape == value.shape:
            matched[key] = source[src_key]
    if not matched:
        raise PosebhError(f"{path}: no tensor matches the recipe's model (is it the right architecture?)")
    model.load_state_dict(matched, strict=False)
    if "prototypes.prototypes" in matched and getattr(source_model.prototypes, "abs_similarity", False):
        model.prototypes.abs_similarity = True  # an imported released bank: signs still to align (official.py)
    return len(matched)


def _source_key(key: str, datasets: list[str], source_index: dict[str, int]) -> str | None:
    """The checkpoint key holding `key`'s weights: per-dataset parts (heads, experts) follow the dataset name."""
    m = _PER_DATASET.match(key)
    if m is None:
        return key
    name = datasets[int(m.group(2))]
    return None if name not in source_index else f"{m.group(1)}{source_index[name]}{m.group(3)}"
