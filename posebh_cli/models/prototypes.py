"""PoseBH keypoint prototypes: M unit vectors per keypoint, matched to pixel embeddings by cosine similarity.

The prototypes are buffers: they never receive gradients and are moved only by the method's momentum update
(`methods/posebh.py`). Row j of the bank is the global keypoint j (datasets concatenated in recipe order).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_


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
