"""ACAE consistency fine-tuning (seed 002, variant (a) "output regularisation", adapted to 2D heatmaps).

Next to the usual masked heatmap MSE of every head on its own samples, every head predicts every image and the
joints of all ACAE heads, taken as differentiable soft-argmax coordinates, must lie on the ACAE's manifold:

    L_c = weight · mean | C − W_dec W_enc C |        C = soft-argmax coordinates [B, J, 2], crop-normalised

with the fitted ACAE frozen and no mask (the term needs no labels). Soft-argmax is a spatial softmax with
temperature `beta` over each heatmap, then the expected pixel; the pixel goes to input pixels with the head's
codec (UDP and MSRA strides differ slightly) and is divided by the input size, the frame fit-acae fitted in.
Images of datasets whose head the ACAE does not cover (e.g. animals under a human ACAE) get no consistency term.

The weight. The seed adds its term with α = 1 to a supervised loss in the same unit (both are mean coordinate L1),
so a unit of inconsistency costs what a unit of error costs. Here the supervised loss is heatmap MSE, about 3/100
of the coordinate L1 it stands for (zoo-base on the human sets: heatmap loss 1.6-2.0e-3 per sample against a
soft-argmax error of 0.054-0.13 of the crop; scripts/acae_weight.py measures it), so α = 1 reads as weight 0.03.
Weight 1.0 lets the term outweigh the heatmaps 6 to 1, and the heads then find its trivial minimum: every joint at
one point, which an affine-combining reconstruction reproduces exactly (rows of R sum to 1) — flat heatmaps, all
joints within 0.2% of the crop, COCO AP 23 -> 0.2.

method_config: acae (fit-acae folder, required), weight (0.03), beta (20.0), normalize (batch | dataset),
heads (own | all; which rows the heatmap loss computes — the consistency term always runs every ACAE head).
Stage losses: heatmap, consistency.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from posebh_cli.recipe import DatasetSpec, StageSpec, check_choice, check_number
from posebh_cli.errors import input_error
from posebh_cli.models.acae import ACAEFile, load_acae
from posebh_cli.methods.multihead import HEADS, NORMALIZE, heatmap_losses

CONFIG_KEYS = ("acae", "weight", "beta", "normalize", "heads")


def soft_argmax(heatmaps: Tensor, beta: float) -> Tensor:
    """Expected pixel (x, y) [B, K, 2] under softmax(beta · heatmap) over each [h, w] map, in heatmap pixels."""
    b, k, h, w = heatmaps.shape
    prob = F.softmax(heatmaps.float().reshape(b, k, h * w) * beta, dim=-1).reshape(b, k, h, w)
    xs = torch.arange(w, dtype=prob.dtype, device=prob.device)
    ys = torch.arange(h, dtype=prob.dtype, device=prob.device)
    return torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], dim=-1)


def consistency_loss(coords: Tensor, reconstruction: Tensor) -> Tensor:
    """mean |C − R C| for coords [B, J, 2] and R = W_dec W_enc [J, J]."""
    return (coords - reconstruction.to(coords) @ coords).abs().mean()


@dataclass
class ACAEConfig:
    """`method_config` of an acae recipe."""

    acae: str  # the folder written by posebh fit-acae
    weight: float = 0.03
    beta: float = 20.0
    normalize: str = "batch"
    heads: str = "own"

    @classmethod
    def from_dict(cls, raw: dict | None, datasets: list[str] | None = None) -> "ACAEConfig":
        config = dict(raw or {})
        for key in config:
            if key not in CONFIG_KEYS:
                raise input_error("recipe", f"unknown key (known: {', '.join(CONFIG_KEYS)})",
                                  field=f"method_config.{key}")
        if not config.get("acae"):
            raise input_error("recipe", "required: the folder written by posebh fit-acae", field="method_config.acae")
        return cls(acae=str(config["acae"]),
                   weight=check_number(config.get("weight", 0.03), "recipe", "method_config.weight", low=0.0),
                   beta=check_number(config.get("beta", 20.0), "recipe", "method_config.beta", low=0.0, low_open=True),
                   normalize=check_choice(config.get("normalize", "batch"), "recipe", "method_config.normalize",
                                          NORMALIZE),
                   heads=check_choice(config.get("heads", "own"), "recipe", "method_config.heads", HEADS))


class ACAEConsistency:
    """Multi-head heatmap loss + ACAE consistency of all heads on every image (frozen ACAE)."""

    needs_embedding = False
    loss_names = ("heatmap", "consistency")
    on_start_actions = ()
    config_class = ACAEConfig

    def __init__(self, model, datasets: list[DatasetSpec], config: dict, accelerator=None):
        from posebh_cli.data.codecs import dataset_codec

        parsed = ACAEConfig.from_dict(config)
        self.weight, self.beta, self.normalize, self.heads = parsed.weight, parsed.beta, parsed.normalize, parsed.heads
        self.model = model
        self.datasets = datasets
        self.accelerator = accelerator
        core = accelerator.unwrap_model(model) if accelerator is not None else model
        self.acae: ACAEFile = load_acae(parsed.acae)
        self.head_indices = self.acae.head_indices(core)
        self.reconstruction = self.acae.reconstruction
        h, w = core.config.img_size
        self.input_size = (w, h)
        # Heatmap pixel -> crop-normalised coordinate, per ACAE head, through that head's codec (the engine builds
        # head d for recipe dataset d).
        scales = []
        for d in self.head_indices:
            codec = dataset_codec(datasets[d], (h, w))
            scales.append(torch.tensor(codec.scale) / torch.tensor([w, h], dtype=torch.float32))
        self.pixel_scale = torch.cat([s.expand(core.skeletons[d].num_keypoints, 2)
                                      for s, d in zip(scales, self.head_indices)])  # [J, 2]
        self.covered = torch.tensor(self.head_indices)

    def losses(self, batch: dict, stage: StageSpec) -> dict[str, Tensor]:
        active = set(stage.losses)
        if not active & {"heatmap", "consistency"}:
            return {}
        heads = "all" if "consistency" in active else self.heads
        out = self.model(batch["images"], batch["dataset_idx"], heads=heads)
        losses = heatmap_losses(out["heatmaps"], batch, self.datasets, self.normalize) if "heatmap" in active else {}
        if "consistency" in active and self.weight > 0:
            rows = torch.isin(batch["dataset_idx"], self.covered.to(batch["dataset_idx"].device))
            if bool(rows.any()):
                coords = self.coordinates([out["heatmaps"][d][rows] for d in self.head_indices])
                losses["consistency"] = self.weight * consistency_loss(coords, self.reconstruction)
        return losses

    def coordinates(self, heatmaps: list[Tensor]) -> Tensor:
        """Crop-normalised soft-argmax coordinates [B, J, 2] of the ACAE heads (in ACAE joint order)."""
        pixels = torch.cat([soft_argmax(m, self.beta) for m in heatmaps], dim=1)
        return pixels * self.pixel_scale.to(pixels)

    @torch.no_grad()
    def after_step(self, batch: dict, stage: StageSpec) -> None:
        pass  # the ACAE is frozen; nothing moves outside the optimizer

    def on_stage_start(self, stage: StageSpec) -> None:
        for action in stage.on_start:
            raise input_error("recipe", f"action {action!r} is not supported by method acae",
                              field=f"stages.{stage.name}.on_start")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


__all__ = ["ACAEConsistency", "soft_argmax", "consistency_loss"]
