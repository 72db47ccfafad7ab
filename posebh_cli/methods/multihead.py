"""The ViTPose++ multi-head baseline: one heatmap head per dataset, each trained with a masked JointsMSE.

Every head's loss only sees its own dataset's samples (mask by `dataset_idx`). Normalisation is explicit:

* ``normalize: batch`` (default, as the official code): each head's squared error is averaged over the
  whole batch, so a dataset's effective weight is its share of the batch.
* ``normalize: dataset``: averaged over the head's own samples only, so every present dataset weighs the same.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from posebh_cli.recipe import DatasetSpec, StageSpec
from posebh_cli.errors import PosebhError

NORMALIZE = ("batch", "dataset")
HEADS = ("own", "all")


def masked_joints_mse(pred: Tensor, target: Tensor, weight: Tensor, mask: Tensor, normalize: str = "batch") -> Tensor:
    """JointsMSE with target weights, restricted to the samples in `mask`.

    pred, target: [B, K, h, w]; weight: [B, K]; mask: [B] bool. The squared error of
    `pred * w` against `target * w` is summed over the masked samples and divided by K*h*w times
    B (normalize="batch", mmpose's mean over the zero-masked batch) or the number of masked samples
    (normalize="dataset"). No 0.5 factor, as in mmpose 0.x.
    """
    b, k, h, w = pred.shape
    rows = mask.nonzero(as_tuple=True)[0]  # the other rows add exact zeros: skip them (a head sees ~1/6 of a batch)
    sample_weight = weight.index_select(0, rows).float()
    err = ((pred.index_select(0, rows).float() - target.index_select(0, rows).float())
           * sample_weight[:, :, None, None]) ** 2
    count = b if normalize == "batch" else max(len(rows), 1)
    return err.sum() / (count * k * h * w)


@dataclass
class MultiHeadConfig:
    """`method_config` of a multihead recipe."""

    normalize: str = "batch"  # batch | dataset
    heads: str = "own"  # own | all; other heads' rows would be masked out anyway

    @classmethod
    def from_dict(cls, raw: dict | None, datasets: list[str] | None = None) -> "MultiHeadConfig":
        raw = dict(raw or {})
        unknown = sorted(set(raw) - {"normalize", "heads"})
        if unknown:
            raise PosebhError(f"method_config: unknown key {unknown[0]!r} for method multihead (allowed: heads, normalize)")
        config = cls(**raw)
        if config.normalize not in NORMALIZE:
            raise PosebhError(f"method_config: field 'normalize': must be one of {', '.join(NORMALIZE)}, got {config.normalize!r}")
        if config.heads not in HEADS:
            raise PosebhError(f"method_config: field 'heads': must be one of {', '.join(HEADS)}, got {config.heads!r}")
        return config


class MultiHead:
    """The baseline objective. Config keys: `normalize` (batch | dataset), `heads` (own | all)."""

    needs_embedding = False  # the engine builds the model without the keypoint embedding net
    loss_names = ("heatmap",)
    on_start_actions = ()
    config_class = MultiHeadConfig

    def __init__(self, model: nn.Module, datasets: list[DatasetSpec], config: dict, accelerator=None):
        parsed = MultiHeadConfig.from_dict(config)
        self.normalize = parsed.normalize
        self.heads = parsed.heads
        self.model = model  # the prepared (maybe DDP-wrapped) model: call it, never reach inside it
        self.datasets = datasets

    def losses(self, batch: dict, stage: StageSpec) -> dict[str, Tensor]:
        """One `heatmap/<dataset>` term per head whose dataset is in the batch (absent ones give no term)."""
        if "heatmap" not in stage.losses:
            return {}
        out = self.model(batch["images"], batch["dataset_idx"], heads=self.heads)
        return heatmap_losses(out["heatmaps"], batch, self.datasets, self.normalize)

    @torch.no_grad()
    def after_step(self, batch: dict, stage: StageSpec) -> None:
        pass  # nothing is updated outside the optimizer

    def on_stage_start(self, stage: StageSpec) -> None:
        for action in stage.on_start:
            raise PosebhError(f"stage {stage.name!r}: field 'on_start': action {action!r} is not supported by method multihead")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def heatmap_losses(heatmaps: list[Tensor], batch: dict, datasets: list[DatasetSpec], normalize: str) -> dict[str, Tensor]:
    """Masked JointsMSE per head; targets are padded to Kmax channels, head d reads its first K_d."""
    losses = {}
    for d, (pred, spec) in enumerate(zip(heatmaps, datasets)):
        mask = batch["dataset_idx"] == d
        if not bool(mask.any()):
            continue
        k = pred.shape[1]
        losses[f"heatmap/{spec.name}"] = masked_joints_mse(
            pred, batch["heatmaps"][:, :k], batch["target_weight"][:, :k], mask, normalize)
    return losses
