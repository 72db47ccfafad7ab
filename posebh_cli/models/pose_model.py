"""PoseModel: ViT(++) backbone + one heatmap head per dataset (+ PoseBH keypoint embedding and prototypes).

Dataset d owns head d, expert d (when the backbone has experts) and the prototype rows
`keypoint_offsets[d] : keypoint_offsets[d] + K_d`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from posebh_cli.errors import PosebhError, input_error
from posebh_cli.models.heads import HeatmapHead, KeypointEmbedding
from posebh_cli.models.prototypes import PrototypeBank
from posebh_cli.models.vit import ARCHS, create_vit
from posebh_cli.skeletons import Skeleton


@dataclass
class ModelConfig:
    """Everything needed to rebuild a PoseModel besides its skeletons; round-trips through JSON."""

    arch: str
    datasets: list[str]
    num_experts: int = 0
    with_embedding: bool = False
    embed_dim: int = 64
    prototypes_per_keypoint: int = 3
    img_size: tuple[int, int] = (256, 192)
    drop_path_rate: float | None = None  # None: the architecture's default
    num_keypoints: list[int] = field(default_factory=list)  # per dataset; a check against the skeletons
    prototype_only: list[str] = field(default_factory=list)  # bank entries without a head (fit-prototypes)
    head_channels: int = 256  # deconv width of the heads and the embedding net; small CPU recipes use fewer

    def to_dict(self) -> dict:
        out = asdict(self)
        out["img_size"] = list(self.img_size)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise PosebhError(f"model config: unknown key(s) {sorted(unknown)}")
        data = dict(data)
        data["img_size"] = tuple(data.get("img_size", (256, 192)))
        return cls(**data)


class PoseModel(nn.Module):
    def __init__(self, arch: str, datasets: list[str], skeletons: list[Skeleton], num_experts: int | None = None,
                 with_embedding: bool = False, embed_dim: int = 64, prototypes_per_keypoint: int = 3,
                 img_size: tuple[int, int] = (256, 192), drop_path_rate: float | None = None,
                 prototype_only: list[tuple[str, Skeleton]] | None = None, head_channels: int = 256):
        super().__init__()
        if len(datasets) != len(skeletons) or not datasets:
            raise PosebhError(f"PoseModel needs one skeleton per dataset, got {len(datasets)} datasets "
                              f"and {len(skeletons)} skeletons")
        if len(set(datasets)) != len(datasets):
            raise PosebhError(f"dataset names must be unique, got {datasets}")
        # One expert per dataset by default; a single dataset needs none.
        num_experts = (len(datasets) if len(datasets) > 1 else 0) if num_experts is None else num_experts
        if num_experts not in (0, len(datasets)):
            raise PosebhError(f"num_experts must be 0 or the number of datasets ({len(datasets)}), got {num_experts}")
        self.config = ModelConfig(arch=arch, datasets=list(datasets), num_experts=num_experts,
                                  with_embedding=with_embedding, embed_dim=embed_dim,
                                  prototypes_per_keypoint=prototypes_per_keypoint, img_size=tuple(img_size),
                                  drop_path_rate=drop_path_rate, num_keypoints=[s.num_keypoints for s in skeletons],
                                  prototype_only=[name for name, _ in prototype_only or []],
                                  head_channels=head_channels)
        self.datasets = list(datasets)
        self.skeletons = list(skeletons)
        self.backbone = create_vit(arch, tuple(img_size), num_experts, drop_path_rate)
        dim = self.backbone.embed_dim
        self.heads = nn.ModuleList(HeatmapHead(dim, s.num_keypoints, head_channels) for s in skeletons)
        offsets = [0]
        for s in skeletons:
            offsets.append(offsets[-1] + s.num_keypoints)
        self.keypoint_offsets = offsets[:-1]
        self.num_global_keypoints = offsets[-1]
        # Skeletons known only through their prototypes (fitted by fit-prototypes): bank rows after the heads'.
        self.prototype_only = list(prototype_only or [])
        names = self.datasets + [name for name, _ in self.prototype_only]
        if self.prototype_only and (not with_embedding or len(set(names)) != len(names)):
            raise PosebhError(f"prototype-only entries need an embedding and names unique among {names}")
        if with_embedding:
            self.embedding = KeypointEmbedding(dim, embed_dim, deconv_channels=head_channels)
            bank_size = self.num_global_keypoints + sum(sk.num_keypoints for _, sk in self.prototype_only)
            self.prototypes = PrototypeBank(bank_size, prototypes_per_keypoint, embed_dim)
            self.prototypes.names = names  # what the predictor reads to find a skeleton's rows
            self.prototypes.skeletons = self.skeletons + [sk for _, sk in self.prototype_only]
        else:
            self.embedding = None
            self.prototypes = None

    @classmethod
    def from_config(cls, config: ModelConfig, skeletons: list[Skeleton],
                    prototype_skeletons: list[Skeleton] = ()) -> "PoseModel":
        if len(prototype_skeletons) != len(config.prototype_only):
            raise PosebhError(f"model config lists prototype-only entries {config.prototype_only} but "
                              f"{len(prototype_skeletons)} skeletons for them")
        if config.num_keypoints and config.num_keypoints != [s.num_keypoints for s in skeletons]:
            raise PosebhError(f"model config expects {config.num_keypoints} keypoints per dataset, the skeletons have "
                              f"{[s.num_keypoints for s in skeletons]}")
        return cls(config.arch, config.datasets, skeletons, config.num_experts, config.with_embedding,
                   config.embed_dim, config.prototypes_per_keypoint, config.img_size, config.drop_path_rate,
                   list(zip(config.prototype_only, prototype_skeletons)), config.head_channels)

    @property
    def with_embedding(self) -> bool:
        return self.embedding is not None

    def dataset_index(self, dataset: str) -> int:
        if dataset not in self.datasets:
            raise PosebhError(f"this model has no dataset '{dataset}'; it has: {', '.join(self.datasets)}")
        return self.datasets.index(dataset)

    def keypoint_slice(self, dataset: str | int) -> slice:
        """This dataset's rows in the global keypoint index (prototype bank)."""
        d = dataset if isinstance(dataset, int) else self.dataset_index(dataset)
        start = self.keypoint_offsets[d]
        return slice(start, start + self.skeletons[d].num_keypoints)

    def forward(self, images: torch.Tensor, dataset_idx: torch.Tensor | None = None, heads: str = "all",
                with_embedding: bool = False) -> dict:
        """Per-dataset heatmaps; with heads="own" only rows of each head's own dataset are computed (others 0)."""
        if dataset_idx is None:
            if self.backbone.num_experts or heads == "own":
                raise ValueError("dataset_idx [B] is required for an expert backbone or heads='own'")
            dataset_idx = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)
        features = self.backbone(images, dataset_idx)
        if heads == "all":
            heatmaps = [head(features) for head in self.heads]
        elif heads == "own":
            heatmaps = [self._own_rows(head, features, dataset_idx == d) for d, head in enumerate(self.heads)]
        else:
            raise ValueError(f"heads must be 'all' or 'own', got {heads!r}")
        out = {"heatmaps": heatmaps, "features": features}
        if with_embedding:
            if self.embedding is None:
                raise ValueError("this model has no keypoint embedding (built with with_embedding=False)")
            out["embeddings"] = F.normalize(self.embedding(features), dim=1)
        return out

    @staticmethod
    def _own_rows(head: HeatmapHead, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        rows = mask.nonzero(as_tuple=True)[0]
        if not rows.numel():  # the head's output size without running it (BatchNorm refuses an empty batch)
            h, w = features.shape[-2] * 4, features.shape[-1] * 4
            return features.new_zeros(features.shape[0], head.final_layer.out_channels, h, w)
        selected = head(features.index_select(0, rows))  # its own size: heads may upsample more or less than 4x
        return selected.new_zeros(features.shape[0], *selected.shape[1:]).index_copy(0, rows, selected)

    @torch.no_grad()
    def heatmaps(self, images: torch.Tensor, dataset: str | None = None) -> torch.Tensor:
        """Eval-mode heatmaps [B, K, h, w] of one dataset's head (the only one, when dataset is None)."""
        if dataset is None:
            if len(self.datasets) > 1:
                raise PosebhError(f"this model has several datasets ({', '.join(self.datasets)}): pass dataset=...")
            dataset = self.datasets[0]
        d = self.dataset_index(dataset)
        was_training = self.training
        self.eval()
        try:
            idx = torch.full((images.shape[0],), d, dtype=torch.long, device=images.device)
            return self.heads[d](self.backbone(images, idx))
        finally:
            self.train(was_training)

    def split(self, dataset: str) -> "PoseModel":
        """A plain single-dataset model (no experts): fc2 = cat(shared fc2, expert d), head d, prototype rows of d."""
        d = self.dataset_index(dataset)
        with torch.device("meta"):  # weights come from this model below
            config = replace(self.config, datasets=[dataset], num_experts=0, prototype_only=[],
                             num_keypoints=[self.skeletons[d].num_keypoints])
            single = PoseModel.from_config(config, [self.skeletons[d]])
        src = self.state_dict()
        state = {}
        for key, value in src.items():
            if ".mlp.experts." in key:
                continue
            if ".mlp.fc2." in key and self.backbone.num_experts:
                expert_key = key.replace(".mlp.fc2.", f".mlp.experts.{d}.")
                state[key] = torch.cat([value, src[expert_key]], dim=0)
            elif key.startswith("heads."):
                head, rest = key.split(".", 2)[1:]
                if int(head) == d:
                    state[f"heads.0.{rest}"] = value
            elif key == "prototypes.prototypes":
                state[key] = value[self.keypoint_slice(d)]
            else:
                state[key] = value
        # Own copies, so training the split model leaves this one untouched.
        single.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True, assign=True)
        return single.train(self.training)

    def extra_repr(self) -> str:
        return f"datasets={self.datasets}, arch={self.config.arch}, experts={self.backbone.num_experts}"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """load_state_dict(strict=True, assign=True), but a mismatch is one PosebhError line naming keys and shapes.

    Tensors are assigned (the model may live on the meta device); floating ones are cast to the model's dtype.
    """
    problem = state_mismatch(model, state)
    if problem:
        raise input_error(source, problem)
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)


def state_mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str:
    """'' when `state` fits `model` exactly, else a short description of missing/unexpected/mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
        if items:
            parts.append(f"{label} {len(items)}: " + ", ".join(items[:3]) + (", ..." if len(items) > 3 else ""))
    return "; ".join(parts)


__all__ = ["ModelConfig", "PoseModel", "count_parameters", "load_state_strict", "state_mismatch", "ARCHS"]
