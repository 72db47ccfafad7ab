"""Tensor math of PoseBH's keypoint prototypes (paper §3.2–3.3), free of any model or training loop.

Shapes: J global keypoints, M in-class prototypes, F embedding channels, N sampled foreground pixels,
B samples, K keypoints of one dataset, heatmaps of h×w pixels. Everything here is vectorised over samples,
pixels and classes; callers run it in fp32 (the cosines and the tiny loss weights do not survive fp16).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from posebh_cli.data.codecs import argmax_2d, gaussian_heatmaps, refine_quarter


def l2_normalize(x: Tensor, dim: int = -1) -> Tensor:
    return F.normalize(x, dim=dim, eps=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Foreground sampling


@dataclass
class Foreground:
    """Foreground pixels of a batch: one row per pixel."""

    embeddings: Tensor  # [N, F], keeps the graph to the embedding head
    labels: Tensor  # [N] global keypoint index
    confidence: Tensor  # [N] target heatmap value × target weight
    sample: Tensor  # [N] batch row the pixel comes from


def sample_foreground(
    heatmaps: Tensor,
    target_weight: Tensor,
    embeddings: Tensor,
    label_offset: Tensor,
    threshold: float = 0.0,
    max_points: int | None = None,
) -> Foreground:
    """Pixels where any target heatmap of the row exceeds `threshold`, labelled by the strongest channel.

    heatmaps [B, K, h, w] (zero-padded channels are fine), target_weight [B, K], embeddings [B, F, h, w],
    label_offset [B]: global index of channel 0 for each row (the row's dataset offset in the prototype bank).
    When more than `max_points` pixels qualify, a uniform random subset is kept to bound memory.
    """
    conf_map = heatmaps.float() * target_weight.float()[:, :, None, None]
    conf, channel = conf_map.max(dim=1)  # [B, h, w]
    b, y, x = (conf > threshold).nonzero(as_tuple=True)
    if max_points is not None and b.numel() > max_points:
        keep = torch.randperm(b.numel(), device=b.device)[:max_points].sort().values
        b, y, x = b[keep], y[keep], x[keep]
    return Foreground(
        embeddings=embeddings[b, :, y, x],  # advanced indices around a slice: [N, F]
        labels=label_offset[b] + channel[b, y, x],
        confidence=conf[b, y, x],
        sample=b,
    )


# ---------------------------------------------------------------------------------------------------------
# Similarities


def cosine_logits(embeddings: Tensor, prototypes: Tensor) -> Tensor:
    """Cosine of each embedding [N, F] with each prototype [C, M, F] -> [N, C, M] (Eq. 2)."""
    return torch.einsum("nf,cmf->ncm", l2_normalize(embeddings), l2_normalize(prototypes))


def prototype_heatmaps(embeddings: Tensor, prototypes: Tensor) -> Tensor:
    """Prototype keypoint heatmaps (Eq. 1): max over M of the cosine. [B, F, h, w] × [K, M, F] -> [B, K, h, w]."""
    cos = torch.einsum("bfhw,kmf->bkmhw", l2_normalize(embeddings, dim=1), l2_normalize(prototypes))
    # max (with indices) rather than amax: same values, and its backward is a scatter instead of amax's
    # tie-splitting masks over the whole [B, K, M, h, w] tensor (several times faster on the CPU)
    return cos.max(dim=2).values


# ---------------------------------------------------------------------------------------------------------
# Online clustering inside each keypoint class


def sinkhorn(scores: Tensor, labels: Tensor, kappa: float = 0.05, iters: int = 3) -> Tensor:
    """Sinkhorn-Knopp assignment of each pixel to its class's M prototypes, equipartitioned per class (Eq. 3).

    scores [N, M]: cosine of pixel n with the M prototypes of its own class labels[n]. Classes are solved
    together by padding them into one [C, Nmax, M] block. Returns Q [N, M] whose rows sum to 1; within a
    class each prototype receives about N_j / M of the mass.
    """
    n, m = scores.shape
    # fp32 at least (half precision overflows exp(cos / kappa)); float64 input stays float64
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    if n == 0:
        return scores.new_zeros(0, m)
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.empty_like(order)
    position[order] = torch.arange(n, device=scores.device) - starts[inverse[order]]

    padded = scores.new_full((classes.numel(), int(counts.max()), m), float("-inf"))
    padded[inverse, position] = scores
    # Shift by the class maximum before exp: 1/kappa = 20 makes raw exponents large.
    q = torch.exp((padded - padded.amax(dim=(1, 2), keepdim=True)) / kappa)
    q = q / q.sum(dim=(1, 2), keepdim=True)
    per_class = counts.to(q.dtype)[:, None, None]
    tiny = torch.finfo(q.dtype).tiny
    for _ in range(iters):
        q = q / q.sum(dim=1, keepdim=True).clamp_min(tiny) / m  # each prototype holds 1/M of the class mass
        q = q / q.sum(dim=2, keepdim=True).clamp_min(tiny) / per_class  # each pixel holds 1/N_j
    q = q * per_class
    return q[inverse, position]


def momentum_update(
    prototypes: Tensor, embeddings: Tensor, labels: Tensor, assign: Tensor, weight: Tensor, momentum: float
) -> Tensor:
    """Eq. 4 as the released code applies it: P_jm <- normalise(λ P_jm + (1-λ) f_jm) with f_jm the unit-length
    weighted mean of the unit embeddings assigned to prototype (j, m); prototypes without mass stay as they are.

    prototypes [J, M, F]; embeddings [N, F]; labels [N] global keypoint; assign [N] in-class prototype;
    weight [N] the assignment weight w of pixel n for its assigned prototype (zero for the others).
    Normalising f makes the step size (1-λ) independent of how many pixels a class has; the paper's
    (1/N_j) Σ_n w ē_n would move a prototype 4-5x less per step (docs/method-notes.md).
    """
    j, m, f = prototypes.shape
    old = prototypes.reshape(j * m, f).float()
    slot = labels * m + assign
    weight = weight.float()
    sums = old.new_zeros(j * m, f).index_add_(0, slot, weight[:, None] * l2_normalize(embeddings.float()))
    mass = old.new_zeros(j * m).index_add_(0, slot, weight)
    moved = l2_normalize(momentum * old + (1.0 - momentum) * l2_normalize(sums))
    return torch.where(mass[:, None] > 0, moved, old).reshape(j, m, f)


def sign_votes(prototypes: Tensor, embeddings: Tensor, labels: Tensor) -> Tensor:
    """[J, M] sum of the cosines of each prototype with the pixels it matches (0 where none).

    Each pixel labelled j goes to the prototype of j with the largest |cos|, the released code's assignment, so
    that a prototype stored with either sign collects the same pixels. prototypes [J, M, F]; embeddings [N, F];
    labels [N] global keypoint.
    """
    j, m, f = prototypes.shape
    cos = torch.einsum("nf,nmf->nm", l2_normalize(embeddings.float()), l2_normalize(prototypes.float())[labels])
    slot = cos.abs().argmax(dim=1)
    matched = cos.gather(1, slot[:, None]).squeeze(1)
    return cos.new_zeros(j * m).index_add_(0, labels * m + slot, matched).view(j, m)


def align_signs(prototypes: Tensor, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Flip the prototypes that point away from the embeddings they match (negative `sign_votes`).

    The released code scores with |cos|, under which a prototype and its negation are the same; our plain cosine
    needs the sign the data has. Returns (aligned prototypes, seen [J] bool: keypoints that had pixels);
    prototypes without pixels stay as they are.
    """
    votes = sign_votes(prototypes, embeddings, labels)
    seen = torch.bincount(labels, minlength=prototypes.shape[0]) > 0
    sign = torch.where(votes < 0, -1.0, 1.0)[..., None]
    return prototypes * sign.to(prototypes.dtype), seen


def all_reduce_mean(tensor: Tensor, num_processes: int) -> Tensor:
    """Average a tensor over all processes (identity in a single process); keeps ranks' prototypes identical."""
    if num_processes <= 1 or not (dist.is_available() and dist.is_initialized()):
        return tensor
    reduced = tensor.clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / dist.get_world_size()


# ---------------------------------------------------------------------------------------------------------
# Losses


def ppc_ppd(logits: Tensor, target_class: Tensor, target_slot: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel-prototype contrastive loss (Eq. 5) and distance loss (Eq. 6), weighted per pixel and summed.

    logits [N, C, M] (entries that must not compete set to -inf); the target of pixel n is prototype
    (target_class[n], target_slot[n]); weight [N] carries c_n / N_d. Returns (PPC, PPD).
    """
    if logits.shape[0] == 0:
        zero = logits.sum() * 0.0
        return zero, zero
    flat = logits.flatten(1)
    target = target_class * logits.shape[2] + target_slot
    ce = F.cross_entropy(flat, target, reduction="none")
    positive = flat.gather(1, target[:, None]).squeeze(1)
    return (weight * ce).sum(), (weight * (1.0 - positive) ** 2).sum()


# ---------------------------------------------------------------------------------------------------------
# Cross-dataset negatives: K-means over all prototypes


@dataclass
class Clusters:
    """Frozen cluster prototypes built once by K-means over the whole prototype bank."""

    prototypes: Tensor  # [C, M', F] members nearest each centroid
    valid: Tensor  # [C, M'] bool, False where a cluster has fewer than M' members
    keypoint_cluster: Tensor  # [J] cluster of each global keypoint

    def state_dict(self) -> dict[str, Tensor]:
        return {"prototypes": self.prototypes, "valid": self.valid, "keypoint_cluster": self.keypoint_cluster}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor], device: torch.device | str) -> "Clusters":
        return cls(*(state[k].to(device) for k in ("prototypes", "valid", "keypoint_cluster")))


def spherical_kmeans(points: Tensor, k: int, iters: int = 100, seed: int = 0) -> tuple[Tensor, Tensor]:
    """K-means under cosine similarity with seeded k-means++ seeding. points [P, F] -> centroids [k, F], assignment [P].

    Runs on the CPU: it happens once per run on a few hundred vectors, and the CPU generator makes the
    result identical on every device and rank.
    """
    x = l2_normalize(points.detach().float().cpu())
    g = torch.Generator().manual_seed(seed)
    chosen = [int(torch.randint(x.shape[0], (1,), generator=g))]
    distance = (1.0 - x @ x[chosen[0]]).clamp_min(0)
    for _ in range(1, k):  # k-means++: next seed drawn with probability ∝ squared distance to the nearest seed
        prob = distance.pow(2)
        nxt = int(torch.multinomial(prob if prob.sum() > 0 else torch.ones_like(prob), 1, generator=g))
        chosen.append(nxt)
        distance = torch.minimum(distance, (1.0 - x @ x[nxt]).clamp_min(0))
    centroids = x[chosen].clone()
    assignment = torch.full((x.shape[0],), -1, dtype=torch.long)
    for _ in range(iters):
        new_assignment = (x @ centroids.T).argmax(dim=1)
        if torch.equal(new_assignment, assignment):
            break
        assignment = new_assignment
        sums = torch.zeros_like(centroids).index_add_(0, assignment, x)
        filled = torch.bincount(assignment, minlength=k) > 0
        centroids = torch.where(filled[:, None], l2_normalize(sums), centroids)  # an empty cluster keeps its centre
    return centroids, assignment


def build_clusters(prototypes: Tensor, k: int, per_cluster: int, iters: int = 100, seed: int = 0) -> Clusters:
    """Cluster all J·M prototypes into k groups; map each keypoint to the cluster holding most of its prototypes.

    A cluster is represented by its `per_cluster` members nearest its centroid (the paper's "embeddings closest
    to each centroid"); ties in the keypoint vote go to the cluster whose centroid its members match best.
    """
    j, m, f = prototypes.shape
    x = l2_normalize(prototypes.detach().float().cpu().reshape(j * m, f))
    centroids, assignment = spherical_kmeans(x, k, iters=iters, seed=seed)
    similarity = (x * centroids[assignment]).sum(dim=1)  # each prototype with its own centroid

    # One vote per member prototype, plus < 0.1 per member for similarity: it only breaks ties.
    votes = torch.zeros(j, k).scatter_add_(1, assignment.view(j, m), 1.0 + 0.05 * (similarity.view(j, m) + 1.0))
    keypoint_cluster = votes.argmax(dim=1)

    member_score = torch.where(
        assignment[None, :] == torch.arange(k)[:, None], similarity[None, :], torch.tensor(float("-inf"))
    )
    top = member_score.topk(min(per_cluster, j * m), dim=1)
    valid = torch.isfinite(top.values)
    members = torch.where(valid[:, :, None], x[top.indices], centroids[:, None, :])
    device = prototypes.device
    return Clusters(members.to(device), valid.to(device), keypoint_cluster.to(device))


# ---------------------------------------------------------------------------------------------------------
# Cross-type self-supervision: pseudo labels where the keypoint head and the prototype heatmap agree


def css_keep(
    conf_kpt: Tensor, xy_kpt: Tensor, conf_emb: Tensor, xy_emb: Tensor, conf_thr: float, dist_thr: float
) -> Tensor:
    """Pairs both heads are sure of (max > conf_thr) and whose integer peaks are within dist_thr pixels."""
    distance = (xy_kpt.float() - xy_emb.float()).norm(dim=-1)
    return (conf_kpt > conf_thr) & (conf_emb > conf_thr) & (distance <= dist_thr)


def fuse_points(xy_kpt: Tensor, conf_kpt: Tensor, xy_emb: Tensor, conf_emb: Tensor) -> Tensor:
    """Eq. 7: ŷ = s·ŷ_kpt + (1 - s)·ŷ_emb with s = c_kpt / (c_kpt + c_emb)."""
    s = (conf_kpt / (conf_kpt + conf_emb).clamp_min(1e-12))[..., None]
    return s * xy_kpt + (1.0 - s) * xy_emb


@torch.no_grad()
def css_pseudo_labels(
    head_heatmaps: Tensor, proto_heatmaps: Tensor, conf_thr: float = 0.25, dist_thr: float = 2.1, sigma: float = 2.0
) -> tuple[Tensor, Tensor]:
    """Pseudo heatmaps [U, K, h, w] and weights [U, K] from a head's and the prototypes' heatmaps of one dataset.

    Kept pairs get a Gaussian at the confidence-weighted mean of the two sub-pixel peaks and the weight
    min(c_kpt, c_emb); the others get weight 0. No gradient flows through the labels.
    """
    head, proto = head_heatmaps.detach().float(), proto_heatmaps.detach().float()
    xy_kpt, conf_kpt = argmax_2d(head)
    xy_emb, conf_emb = argmax_2d(proto)
    keep = css_keep(conf_kpt, xy_kpt, conf_emb, xy_emb, conf_thr, dist_thr)
    # Sub-pixel peaks: the codecs' quarter-pixel step (MSRA decode), on heatmap pixels.
    fused = fuse_points(refine_quarter(head, xy_kpt), conf_kpt, refine_quarter(proto, xy_emb), conf_emb)
    pseudo, _ = gaussian_heatmaps(fused, keep, (head.shape[3], head.shape[2]), sigma, subpixel=True)
    return pseudo, torch.minimum(conf_kpt, conf_emb) * keep
