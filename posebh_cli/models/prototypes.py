"""PoseBH keypoint prototypes: M unit vectors per keypoint, matched to pixel embeddings by cosine similarity.

The prototypes are buffers: they never receive gradients and are moved only by the method's momentum update
(`methods/posebh.py`). Row j of the bank is the global keypoint j (datasets concatenated in recipe order).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from posebh_cli.errors import PosebhError
from posebh_cli.skeletons import Skeleton


class PrototypeBank(nn.Module):
    def __init__(self, num_keypoints: int, prototypes_per_keypoint: int = 3, embed_dim: int = 64):
        super().__init__()
        bank = torch.empty(num_keypoints, prototypes_per_keypoint, embed_dim)
        trunc_normal_(bank, std=0.02)
        self.register_buffer("prototypes", F.normalize(bank, dim=-1))

    @property
    def num_keypoints(self) -> int:
        return self.prototypes.shape[0]

    @torch.no_grad()
    def normalize_(self) -> None:
        """Put every prototype back on the unit sphere (after a momentum update)."""
        self.prototypes.copy_(F.normalize(self.prototypes, dim=-1))

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of embeddings [N, F] with every prototype -> [N, J, M]."""
        return torch.einsum("nf,jmf->njm", F.normalize(embeddings, dim=-1), self.prototypes)

    def heatmaps(self, embeddings: torch.Tensor, keypoints: slice | None = None) -> torch.Tensor:
        """Prototype heatmaps [B, J, H, W] (max over M of the cosine) from embeddings [B, F, H, W].

        `keypoints` restricts the bank to a range of global keypoints, e.g. one dataset's block.
        """
        bank = self.prototypes if keypoints is None else self.prototypes[keypoints]
        sim = torch.einsum("bfhw,jmf->bjmhw", F.normalize(embeddings, dim=1), bank)
        return sim.amax(dim=2)


def bank_entries(model) -> list[tuple[str, Skeleton, int]]:
    """(name, skeleton, first global row) of every skeleton block in a model's prototype bank, in bank order.

    A bank that lists its own skeletons (e.g. grown by fit-prototypes) is read as such; otherwise its rows are the
    model's dataset skeletons in head order, as the architecture contract states.
    """
    bank = model.prototypes
    names = list(getattr(bank, "names", None) or model.datasets)
    skeletons = list(getattr(bank, "skeletons", None) or model.skeletons)
    offsets, start = [], 0
    for sk in skeletons:
        offsets.append(start)
        start += sk.num_keypoints
    if start != bank.num_keypoints:
        raise PosebhError(f"the prototype bank has {bank.num_keypoints} keypoints but its skeletons add up to {start}")
    return list(zip(names, skeletons, offsets))
