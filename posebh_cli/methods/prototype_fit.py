"""Nonparametric keypoint prototypes for a new skeleton, with the backbone and embedding net frozen (paper §4.5).

PoseBH's prototypes are not learned by gradients, so a skeleton the model never saw can be added by looking at
where its labelled keypoints fall in the frozen embedding space. Two steps:

1. `collect_pixels`: run the frozen model (eval mode) over labelled crops and keep the pixel embeddings where the
   keypoint's ground-truth heatmap is high (on the crop and on its mirror, with left/right swapped).
2. `fit_prototypes`: M prototypes per keypoint from those pixels, with either
   - "sinkhorn": the rule PoseBH trains with (Eqs. 3-4): Sinkhorn-Knopp equipartition of a keypoint's pixels over
     its M prototypes, then the momentum update, both from `prototype_ops`; repeated for a few passes over the
     pixels, starting from k-means++ seeds among the keypoint's own pixels; or
   - "kmeans": spherical k-means (k-means++ seeds) over each keypoint's pixels.

A keypoint without any labelled pixel keeps its initial prototypes; `FitResult.empty` lists those.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from posebh_cli.data.topdown import flip_heatmaps
from posebh_cli.errors import PosebhError
from posebh_cli.methods import prototype_ops as ops

ALGORITHMS = ("sinkhorn", "kmeans")


@dataclass
class FitConfig:
    algorithm: str = "sinkhorn"
    epochs: int = 10  # passes over the collected pixels (sinkhorn) or k-means iterations x 10 (kmeans)
    momentum: float = 0.9  # λ of Eq. 4; training uses 0.999 over many more steps than a fit has
    min_confidence: float = 0.5  # keep pixels whose ground-truth heatmap value exceeds this (σ=2: ~17 per point)
    flip: bool = True  # also embed the mirrored crop, so flip-test prediction sees both sides
    max_pixels_per_keypoint: int = 8192  # a random subset beyond this bounds memory and fitting time
    chunk_pixels: int = 4096  # pixels per Sinkhorn + momentum step
    sinkhorn_kappa: float = 0.05
    sinkhorn_iters: int = 3
    seed: int = 0

    def check(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise PosebhError(f"--algorithm: must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")
        if self.epochs < 1:
            raise PosebhError(f"--epochs: must be >= 1, got {self.epochs}")
        if not 0.0 <= self.momentum < 1.0:
            raise PosebhError(f"momentum: must be in [0, 1), got {self.momentum}")
        if not 0.0 <= self.min_confidence < 1.0:
            raise PosebhError(f"min_confidence: must be in [0, 1), got {self.min_confidence}")


@dataclass
class Pixels:
    """Embeddings sampled at labelled keypoints: one row per pixel."""

    embeddings: Tensor  # [N, F] unit vectors, CPU float32
    labels: Tensor  # [N] keypoint index of the new skeleton
    confidence: Tensor  # [N] ground-truth heatmap value at the pixel


@dataclass
class FitResult:
    prototypes: Tensor  # [K, M, F] unit vectors
    pixels_per_keypoint: list[int]
    empty: list[int] = field(default_factory=list)  # keypoints that had no labelled pixel


@torch.no_grad()
def embed(model, images: Tensor) -> Tensor:
    """L2-normalised pixel embeddings [B, F, h, w] of a plain (expert-free or split) PoseModel."""
    idx = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)
    return F.normalize(model.embedding(model.backbone(images, idx)), dim=1)


@torch.no_grad()
def collect_pixels(model, loader, num_keypoints: int, flip_indices: list[int], config: FitConfig,
                   progress: bool = True) -> Pixels:
    """Embeddings at the ground-truth keypoints of every batch of `loader` (TopDownDataset batches).

    The model must be plain (one dataset, no experts) and is put in eval mode: BN statistics and drop path
    of the frozen network stay untouched.
    """
    model.eval()
    device = next(model.parameters()).device
    parts: list[tuple[Tensor, Tensor, Tensor]] = []
    for batch in tqdm(loader, desc="embed keypoints", unit="batch", disable=not progress):
        images = batch["images"].to(device)
        heatmaps = batch["heatmaps"][:, :num_keypoints].to(device)
        weight = batch["target_weight"][:, :num_keypoints].to(device)
        views = [(images, heatmaps, weight)]
        if config.flip:  # MSRA targets: the mirrored map moves one pixel, as in flip test
            views.append((images.flip(-1), flip_heatmaps(heatmaps, flip_indices, shift=True), weight[:, flip_indices]))
        for view_images, view_maps, view_weight in views:
            emb = embed(model, view_images)
            offset = torch.zeros(len(view_images), dtype=torch.long, device=device)
            fg = ops.sample_foreground(view_maps, view_weight, emb, offset, config.min_confidence)
            parts.append((fg.embeddings.float().cpu(), fg.labels.cpu(), fg.confidence.float().cpu()))
    if not parts:
        raise PosebhError("no training crop to fit prototypes from (empty split?)")
    embeddings, labels, confidence = (torch.cat(p) for p in zip(*parts))
    keep = _cap_per_keypoint(labels, config.max_pixels_per_keypoint, config.seed)
    return Pixels(embeddings[keep], labels[keep], confidence[keep])


def _cap_per_keypoint(labels: Tensor, cap: int, seed: int) -> Tensor:
    """Indices keeping at most `cap` random pixels of each keypoint."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=g)
    shuffled = labels[order]
    # Rank of each pixel among its keypoint's pixels in the shuffled order.
    sort = torch.argsort(shuffled, stable=True)
    counts = torch.bincount(shuffled)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(sort)
    rank[sort] = torch.arange(len(sort)) - starts[shuffled[sort]]
    return order[rank < cap].sort().values


def fit_prototypes(pixels: Pixels, num_keypoints: int, per_keypoint: int, config: FitConfig,
                   initial: Tensor | None = None) -> FitResult:
    """M prototypes per keypoint from collected pixels. `initial` [K, M, F] is kept for keypoints without pixels."""
    config.check()
    dim = pixels.embeddings.shape[1]
    if initial is None:
        g = torch.Generator().manual_seed(config.seed)
        initial = torch.randn(num_keypoints, per_keypoint, dim, generator=g)
    bank = ops.l2_normalize(initial.detach().float().cpu().clone())
    counts = torch.bincount(pixels.labels, minlength=num_keypoints)[:num_keypoints].tolist()
    present = [k for k in range(num_keypoints) if counts[k] > 0]
    if config.algorithm == "kmeans":
        for k in present:
            bank[k] = _kmeans(pixels.embeddings[pixels.labels == k], per_keypoint, 10 * config.epochs, config.seed)
    else:
        bank = _sinkhorn_fit(pixels, bank, present, config)
    empty = [k for k in range(num_keypoints) if not counts[k]]
    return FitResult(prototypes=bank, pixels_per_keypoint=counts, empty=empty)


def _kmeans(points: Tensor, m: int, iters: int, seed: int) -> Tensor:
    """M spherical k-means centroids of one keypoint's pixels (points repeated when there are fewer than M)."""
    if len(points) < m:
        points = points.repeat((m + len(points) - 1) // len(points), 1)
    centroids, _ = ops.spherical_kmeans(points, m, iters=iters, seed=seed)
    return centroids


def _sinkhorn_fit(pixels: Pixels, bank: Tensor, present: list[int], config: FitConfig) -> Tensor:
    """Eqs. 3-4 over the collected pixels: equipartitioned assignment, then a momentum step, chunk by chunk."""
    g = torch.Generator().manual_seed(config.seed)
    m = bank.shape[1]
    for k in present:  # spread seeds (k-means++ and one Lloyd step): equipartition alone cannot split twins
        bank[k] = _kmeans(pixels.embeddings[pixels.labels == k], m, iters=1, seed=config.seed)
    n = len(pixels.labels)
    rows = torch.arange(n)
    for _ in range(config.epochs):
        for chunk in torch.randperm(n, generator=g).split(config.chunk_pixels):
            emb, labels = pixels.embeddings[chunk], pixels.labels[chunk]
            scores = ops.cosine_logits(emb, bank)[rows[:len(chunk)], labels]  # [n, M] against own keypoint
            q = ops.sinkhorn(scores, labels, config.sinkhorn_kappa, config.sinkhorn_iters)
            weight, assign = q.max(dim=1)
            # Confidence-weighted like the released transfer code: pixels at the peak count most.
            bank = ops.momentum_update(bank, emb, labels, assign, weight * pixels.confidence[chunk], config.momentum)
    return bank


__all__ = ["ALGORITHMS", "FitConfig", "FitResult", "Pixels", "collect_pixels", "embed", "fit_prototypes"]
