"""Unified-skeleton multi-teacher distillation (seed 003, Khan et al. 2024), with heatmap heads.

The student is a PoseModel with ONE head over a union skeleton (`coco_mpii21` for COCO + MPII, or a union built
by keypoint name from the recipe's datasets, see skeletons/union.py); `Distill.build_model` builds it for the
engine. Each dataset's labels supervise the union channels its skeleton maps to. Frozen per-dataset teachers
(our checkpoints) run on EVERY image, whichever dataset it came from, and each distils the union channels its
skeleton maps to:

    L = w_gt · Σ_d MSE_d(student[map_d], GT_d) + decay · Σ_t w_t · KD(student[map_t], teacher_t)
    KD = mean over samples and teacher keypoints of KL(softmax(β·teacher) ‖ softmax(β·student)),
         each softmax over the flattened h·w pixels of one channel
    decay = 1 − epoch / epochs on every KD term (the released code decays only the last one)

Weights default to the reference's: w_gt = 0.3, the rest split equally over the teachers (0.35/0.35 for two),
or explicit per-teacher weights (0.25/0.45 for the COCO/MPII teachers of the RTMPose-s/t students).
β = 10 as the released code's SimCC logits: heatmap values lie in [0, 1], so softmax(10·h) puts most mass on
the Gaussian bump of a 64×48 map (e^10 ≈ 2·10^4 against about 3·10^3 background pixels).

method_config: teachers {dataset: checkpoint} (required), union (skeleton name or YAML; default: the union of
the datasets' skeletons by name), mapping (YAML file or inline {skeleton: {keypoint: union name}}), gt_weight,
teacher_weights {dataset: w}, beta, decay (linear | none), normalize (batch | dataset).
Stage losses: heatmap, kd.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from posebh_cli.recipe import DatasetSpec, Recipe, StageSpec, check_number
from posebh_cli.errors import PosebhError, input_error
from posebh_cli.methods.multihead import NORMALIZE, masked_joints_mse
from posebh_cli.skeletons import Skeleton, load_skeleton
from posebh_cli.skeletons.union import Mapping, channel_map, check_mapping, load_mapping, union_skeleton

CONFIG_KEYS = ("teachers", "union", "mapping", "gt_weight", "teacher_weights", "beta", "decay", "normalize")
DECAYS = ("linear", "none")


def kd_loss(student: Tensor, teacher: Tensor, beta: float) -> Tensor:
    """Mean over [B, K] of KL(softmax(β·teacher) ‖ softmax(β·student)) over each channel's flattened pixels."""
    s = F.log_softmax(student.float().flatten(2) * beta, dim=-1)
    t = F.log_softmax(teacher.float().flatten(2) * beta, dim=-1)
    return (t.exp() * (t - s)).sum(-1).mean()


def kd_decay(epoch: int, epochs: int) -> float:
    """The linear KD decay 1 − epoch/epochs (DWPose-style), applied to every teacher."""
    return max(0.0, 1.0 - epoch / max(1, epochs))


# ------------------------------------------------------------------ config
@dataclass
class DistillConfig:
    teachers: dict[str, str]
    union: str | None = None
    mapping: Mapping | None = None
    gt_weight: float = 0.3
    teacher_weights: dict[str, float] | None = None
    beta: float = 10.0
    decay: str = "linear"
    normalize: str = "batch"

    @classmethod
    def from_dict(cls, raw: dict | None, datasets: list[str]) -> "DistillConfig":
        raw = dict(raw or {})
        for key in raw:
            if key not in CONFIG_KEYS:
                raise _config_error(key, f"unknown key (known: {', '.join(CONFIG_KEYS)})")
        teachers = raw.get("teachers")
        if not isinstance(teachers, dict) or not teachers:
            raise _config_error("teachers", "required: a mapping {dataset: teacher checkpoint}")
        for name, path in teachers.items():
            if name not in datasets:
                raise _config_error(f"teachers.{name}", f"not a dataset of the recipe ({', '.join(datasets)})")
            if not isinstance(path, str) or not path:
                raise _config_error(f"teachers.{name}", f"must be a checkpoint path, got {path!r}")
        mapping = raw.get("mapping")
        if isinstance(mapping, str):
            mapping = load_mapping(mapping)
        elif mapping is not None:
            mapping = check_mapping(mapping, "recipe method_config.mapping")
        weights = raw.get("teacher_weights")
        if weights is not None:
            if not isinstance(weights, dict) or set(weights) != set(teachers):
                raise _config_error("teacher_weights", f"give one weight per teacher ({', '.join(teachers)})")
            weights = {k: check_number(v, "recipe", f"method_config.teacher_weights.{k}", low=0.0)
                       for k, v in weights.items()}
        decay = raw.get("decay", "linear")
        normalize = raw.get("normalize", "batch")
        if decay not in DECAYS:
            raise _config_error("decay", f"must be one of {', '.join(DECAYS)}, got {decay!r}")
        if normalize not in NORMALIZE:
            raise _config_error("normalize", f"must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
        union = raw.get("union")
        if union is not None and (not isinstance(union, str) or not union):
            raise _config_error("union", f"must be a skeleton name or YAML path, got {union!r}")
        return cls(teachers=dict(teachers), union=union, mapping=mapping,
                   gt_weight=check_number(raw.get("gt_weight", 0.3), "recipe", "method_config.gt_weight", low=0.0),
                   teacher_weights=weights,
                   beta=check_number(raw.get("beta", 10.0), "recipe", "method_config.beta", low=0.0, low_open=True),
                   decay=decay, normalize=normalize)

    def weight_of(self, teacher: str) -> float:
        if self.teacher_weights is not None:
            return self.teacher_weights[teacher]
        return (1.0 - self.gt_weight) / len(self.teachers)


def _config_error(key: str, problem: str) -> PosebhError:
    return input_error("recipe", problem, field=f"method_config.{key}")


def resolve_union(config: DistillConfig, skeletons: list[Skeleton]) -> Skeleton:
    """The configured union skeleton, else the union of the datasets' skeletons by name."""
    if config.union is not None:
        return load_skeleton(config.union)
    union, _ = union_skeleton(skeletons, config.mapping)
    return union


# ------------------------------------------------------------------ teachers
@dataclass
class Teacher:
    name: str           # the recipe dataset it teaches
    model: nn.Module    # frozen, eval mode
    head: int           # head (and expert) index in the teacher model
    channels: list[int]  # union channel of each teacher keypoint
    weight: float


def load_teacher(name: str, path: str, union: Skeleton, mapping: Mapping | None, weight: float,
                 device: torch.device) -> Teacher:
    """A frozen teacher; its head is the one named like the dataset, else its only head."""
    from posebh_cli.models.checkpoint import load_model

    model = load_model(path)
    if name in model.datasets:
        head = model.datasets.index(name)
    elif len(model.datasets) == 1:
        head = 0
    else:
        raise input_error(path, f"teacher '{name}' has several heads ({', '.join(model.datasets)}) and none is named "
                          f"'{name}'", field=f"method_config.teachers.{name}")
    channels = channel_map(model.skeletons[head], union, mapping, who=f"teacher '{name}' ({path})")
    model.requires_grad_(False)
    return Teacher(name, model.to(device).eval(), head, channels, weight)


@torch.no_grad()
def teacher_heatmaps(teacher: Teacher, images: Tensor, size: tuple[int, int]) -> Tensor:
    """Teacher heatmaps [B, K_t, h, w] on the student's crops, resampled when input or heatmap sizes differ."""
    th, tw = teacher.model.config.img_size
    if tuple(images.shape[-2:]) != (th, tw):
        images = F.interpolate(images, size=(th, tw), mode="bilinear", align_corners=False)
    idx = torch.full((len(images),), teacher.head, dtype=torch.long, device=images.device)
    maps = teacher.model(images, idx, heads="own")["heatmaps"][teacher.head]
    if tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return maps


# ------------------------------------------------------------------ the method
class Distill:
    """GT heatmap loss on mapped union channels + multi-teacher KD on every image, KD decaying linearly."""

    needs_embedding = False
    loss_names = ("heatmap", "kd")
    on_start_actions = ()
    config_class = DistillConfig

    @classmethod
    def build_model(cls, recipe: Recipe, prepared: list) -> nn.Module:
        """The student: one union head, no experts (every dataset shares the whole network)."""
        from posebh_cli.models.build import init_model
        from posebh_cli.models.pose_model import PoseModel

        names = [d.name for d in recipe.datasets]
        config = DistillConfig.from_dict(recipe.method_config, names)
        first = recipe.datasets[0]
        for i, spec in enumerate(recipe.datasets):
            if (spec.codec, spec.sigma) != (first.codec, first.sigma):
                raise input_error("recipe", f"method distill trains one union head, so every dataset needs the same "
                                  f"codec and sigma ({first.codec}, {first.sigma:g}); got {spec.codec}, {spec.sigma:g}",
                                  field=f"datasets[{i}].codec")
        union = resolve_union(config, [p.skeleton for p in prepared])
        for spec, p in zip(recipe.datasets, prepared):
            channel_map(p.skeleton, union, config.mapping, who=f"dataset '{spec.name}' ({spec.path})")
        spec = recipe.model
        model = PoseModel(spec.arch, [union.name], [union], num_experts=0, with_embedding=False,
                          img_size=spec.img_size, drop_path_rate=spec.drop_path, head_channels=spec.head_channels or 256)
        init_model(model, spec.init)
        return model

    def __init__(self, model, datasets: list[DatasetSpec], config: dict, accelerator=None):
        from posebh_cli.data.prepared import open_prepared

        self.config = DistillConfig.from_dict(config, [d.name for d in datasets])
        self.model = model
        self.datasets = datasets
        core = accelerator.unwrap_model(model) if accelerator is not None else model
        if len(core.datasets) != 1:
            raise input_error("recipe", f"method distill trains a one-head union model (Distill.build_model); this "
                              f"model has heads {', '.join(core.datasets)}", field="method")
        self.union = core.skeletons[0]
        self.maps = [channel_map(open_prepared(d.path).skeleton, self.union, self.config.mapping,
                                 who=f"dataset '{d.name}' ({d.path})") for d in datasets]
        device = accelerator.device if accelerator is not None else next(core.parameters()).device
        self.teachers = [load_teacher(name, path, self.union, self.config.mapping, self.config.weight_of(name), device)
                         for name, path in self.config.teachers.items()]
        self.decay = 1.0

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Called by the engine at every epoch start: the KD decay follows the epoch."""
        self.decay = kd_decay(epoch, epochs) if self.config.decay == "linear" else 1.0

    def losses(self, batch: dict, stage: StageSpec) -> dict[str, Tensor]:
        active = set(stage.losses)
        if not active & {"heatmap", "kd"}:
            return {}
        student = self.model(batch["images"], batch["dataset_idx"], heads="all")["heatmaps"][0]
        losses: dict[str, Tensor] = {}
        if "heatmap" in active and self.config.gt_weight > 0:
            for d, (spec, channels) in enumerate(zip(self.datasets, self.maps)):
                mask = batch["dataset_idx"] == d
                if not bool(mask.any()):
                    continue
                k = len(channels)
                mse = masked_joints_mse(student[:, channels], batch["heatmaps"][:, :k], batch["target_weight"][:, :k],
                                        mask, self.config.normalize)
                losses[f"heatmap/{spec.name}"] = self.config.gt_weight * mse
        if "kd" in active and self.decay > 0:
            for teacher in self.teachers:
                target = teacher_heatmaps(teacher, batch["images"], tuple(student.shape[-2:]))
                kd = kd_loss(student[:, teacher.channels], target, self.config.beta)
                losses[f"kd/{teacher.name}"] = teacher.weight * self.decay * kd
        return losses

    @torch.no_grad()
    def after_step(self, batch: dict, stage: StageSpec) -> None:
        pass  # teachers are frozen

    def on_stage_start(self, stage: StageSpec) -> None:
        for action in stage.on_start:
            raise input_error("recipe", f"action {action!r} is not supported by method distill",
                              field=f"stages.{stage.name}.on_start")

    def state_dict(self) -> dict:
        return {"decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state.get("decay", 1.0))


__all__ = ["Distill", "DistillConfig", "kd_loss", "kd_decay", "load_teacher", "teacher_heatmaps", "resolve_union"]
