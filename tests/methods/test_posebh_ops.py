"""Prototype math of PoseBH on hand-made tensors (methods/prototype_ops.py)."""
import math
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from posebh_cli.methods import prototype_ops as ops


def unit(*values):
    return F.normalize(torch.tensor(values, dtype=torch.float32), dim=-1)


# --------------------------------------------------------------------------------------------- Sinkhorn


def test_sinkhorn_rows_sum_to_one_and_prototypes_share_mass_equally():
    torch.manual_seed(0)
    labels = torch.tensor([0] * 30 + [5] * 12)
    scores = torch.rand(42, 3) * 0.2 + torch.tensor([0.1, 0.0, 0.0])  # prototype 0 is everyone's favourite
    q = ops.sinkhorn(scores, labels, kappa=0.05, iters=50)
    assert torch.allclose(q.sum(1), torch.ones(42), atol=1e-5)
    assert torch.allclose(q[:30].sum(0), torch.full((3,), 10.0), atol=1e-2)
    assert torch.allclose(q[30:].sum(0), torch.full((3,), 4.0), atol=1e-2)
    # Three iterations (the paper's) already move far toward equipartition from the plain softmax.
    q3 = ops.sinkhorn(scores, labels, kappa=0.05, iters=3)
    soft = torch.softmax(scores[:30] / 0.05, dim=1)
    assert (q3[:30].sum(0) - 10).abs().max() < 0.5 * (soft.sum(0) - 10).abs().max()


def test_sinkhorn_argmax_matches_the_obvious_assignment():
    planted = torch.tensor([0, 1, 2, 0, 1, 2, 2, 1, 0])
    scores = torch.full((9, 3), 0.1)
    scores[torch.arange(9), planted] = 0.9
    labels = torch.tensor([3, 3, 3, 3, 3, 3, 7, 7, 7])
    q = ops.sinkhorn(scores, labels)
    assert torch.equal(q.argmax(1), planted)
    assert ops.sinkhorn(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)).shape == (0, 3)


# --------------------------------------------------------------------------------------------- momentum update


def test_momentum_update_moves_the_assigned_prototype_by_the_formula_and_leaves_the_rest():
    torch.manual_seed(1)
    bank = F.normalize(torch.randn(3, 2, 4), dim=-1)
    e1, e2 = unit(1.0, 0.0, 0.0, 0.0), unit(0.0, 1.0, 0.0, 0.0)
    emb = torch.stack([e1, e2])
    labels = torch.tensor([1, 1])  # two pixels of keypoint 1: N_1 = 2
    assign = torch.tensor([0, 1])
    weight = torch.tensor([0.5, 0.0])  # prototype (1, 1) gets no mass
    new = ops.momentum_update(bank, emb, labels, assign, weight, momentum=0.9)
    # The released rule: the weighted mean (0.5 e1 / 0.5 = e1) is brought to unit length before the step.
    expected = F.normalize(0.9 * bank[1, 0] + 0.1 * e1, dim=0)
    assert torch.allclose(new[1, 0], expected, atol=1e-6)
    untouched = torch.ones(3, 2, dtype=torch.bool)
    untouched[1, 0] = False
    assert torch.equal(new[untouched], bank[untouched])


def test_momentum_update_step_by_hand_with_two_pixels_on_one_prototype():
    # p = (1, 0); pixels (0, 1) w 0.2 and (0.6, 0.8) w 0.3: Σ w e = (0.18, 0.44), |.| = sqrt(0.2260);
    # f = (0.18, 0.44) / 0.475395; p' = normalise(0.99 p + 0.01 f) = normalise(0.993786, 0.009256).
    bank = torch.tensor([[[1.0, 0.0]]])
    emb = torch.tensor([[0.0, 1.0], [0.6, 0.8]])
    new = ops.momentum_update(bank, emb, torch.tensor([0, 0]), torch.tensor([0, 0]), torch.tensor([0.2, 0.3]), 0.99)
    f = torch.tensor([0.18, 0.44]) / math.sqrt(0.18 ** 2 + 0.44 ** 2)
    raw = torch.tensor([0.99 + 0.01 * f[0], 0.01 * f[1]])
    assert torch.allclose(new[0, 0], raw / raw.norm(), atol=1e-7)
    assert new[0, 0, 1].item() == pytest.approx(0.009256 / math.hypot(0.993786, 0.009256), rel=1e-4)
    # The step does not depend on how many pixels carry the mean (the paper's 1/N_j would shrink it).
    many = ops.momentum_update(bank, emb.repeat(50, 1), torch.zeros(100, dtype=torch.long),
                               torch.zeros(100, dtype=torch.long), torch.tensor([0.2, 0.3]).repeat(50), 0.99)
    assert torch.allclose(many, new, atol=1e-6)


def test_sinkhorn_float64_equals_float32_and_a_plain_loop():
    torch.manual_seed(3)
    scores = torch.rand(7, 3, dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 0, 2, 2, 2])
    q64 = ops.sinkhorn(scores, labels)
    assert q64.dtype == torch.float64
    assert torch.allclose(q64.float(), ops.sinkhorn(scores.float(), labels), atol=1e-5)
    # Independent: one class at a time, Q = exp(S / kappa) / total, then 3 x (columns to 1/M, rows to 1/N), x N.
    for cls in (0, 2):
        s = scores[labels == cls]
        n, m = s.shape
        q = torch.exp(s / 0.05)
        q = q / q.sum()
        for _ in range(3):
            q = q / q.sum(0, keepdim=True) / m
            q = q / q.sum(1, keepdim=True) / n
        assert torch.allclose(q64[labels == cls], q * n, atol=1e-12)


def test_align_signs_restores_deliberately_negated_prototypes():
    torch.manual_seed(4)
    bank = F.normalize(torch.randn(4, 3, 8), dim=-1)
    # pixels near their keypoint's prototypes (each prototype gets a few noisy copies)
    labels = torch.arange(4).repeat_interleave(6)
    slots = torch.arange(3).repeat(8)
    emb = bank[labels, slots] + 0.05 * torch.randn(24, 8)
    flipped = bank.clone()
    flipped[0, 1] *= -1
    flipped[2] *= -1
    flipped[3, 0] *= -1
    aligned, seen = ops.align_signs(flipped, emb[:18], labels[:18])  # keypoint 3 has no pixels
    assert seen.tolist() == [True, True, True, False]
    assert torch.equal(aligned[:3], bank[:3])
    assert torch.equal(aligned[3], flipped[3])  # unseen: left as it was


def test_all_reduce_mean_is_identity_in_a_single_process():
    x = torch.randn(4, 3, 8)
    assert torch.equal(ops.all_reduce_mean(x, 1), x)
    with tempfile.TemporaryDirectory() as tmp:
        store = dist.FileStore(str(Path(tmp) / "store"), 1)
        dist.init_process_group("gloo", store=store, rank=0, world_size=1)
        try:
            reduced = ops.all_reduce_mean(x, 2)  # takes the collective path
        finally:
            dist.destroy_process_group()
    assert reduced is not x and torch.allclose(reduced, x)


# --------------------------------------------------------------------------------------------- losses


def test_ppc_ppd_on_a_two_class_toy_by_hand():
    a, b = 0.8, -0.2  # cosines of the pixel with class 0 (its target) and class 1
    logits = torch.tensor([[[a], [b]]])
    ppc, ppd = ops.ppc_ppd(logits, torch.tensor([0]), torch.tensor([0]), torch.tensor([0.5]))
    assert ppc.item() == pytest.approx(0.5 * -math.log(math.exp(a) / (math.exp(a) + math.exp(b))), rel=1e-5)
    assert ppd.item() == pytest.approx(0.5 * (1 - a) ** 2, rel=1e-5)
    # A masked-out class does not compete: CE over the single remaining logit is 0.
    ppc, _ = ops.ppc_ppd(logits.masked_fill(torch.tensor([[[False], [True]]]), float("-inf")),
                         torch.tensor([0]), torch.tensor([0]), torch.tensor([1.0]))
    assert ppc.item() == pytest.approx(0.0, abs=1e-7)


def test_sample_foreground_labels_with_global_index_and_confidence():
    heatmaps = torch.zeros(2, 3, 4, 4)
    heatmaps[0, 1, 2, 3] = 0.7  # row 0 (offset 0): keypoint 1
    heatmaps[1, 0, 1, 1] = 0.4  # row 1 (offset 10): keypoint 10
    heatmaps[1, 2, 0, 0] = 0.9  # ... but its weight is 0
    weight = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    emb = torch.randn(2, 5, 4, 4)
    fg = ops.sample_foreground(heatmaps, weight, emb, torch.tensor([0, 10]))
    assert fg.labels.tolist() == [1, 10]
    assert torch.allclose(fg.confidence, torch.tensor([0.7, 0.4]))
    assert torch.equal(fg.embeddings[0], emb[0, :, 2, 3]) and torch.equal(fg.embeddings[1], emb[1, :, 1, 1])
    capped = ops.sample_foreground(torch.rand(2, 3, 4, 4) + 0.1, torch.ones(2, 3), emb, torch.tensor([0, 3]),
                                   max_points=7)
    assert capped.embeddings.shape == (7, 5)


def test_prototype_heatmaps_are_the_max_cosine_over_in_class_prototypes():
    emb = torch.zeros(1, 2, 1, 2)
    emb[0, :, 0, 0] = unit(1.0, 0.0)
    emb[0, :, 0, 1] = unit(0.0, 1.0)
    protos = torch.stack([unit(1.0, 0.0), unit(-1.0, 1.0)])[None]  # one keypoint, two prototypes
    hm = ops.prototype_heatmaps(emb, protos)
    assert torch.allclose(hm[0, 0, 0], torch.tensor([1.0, 1 / math.sqrt(2)]), atol=1e-6)


# --------------------------------------------------------------------------------------------- K-means


def test_kmeans_recovers_planted_clusters_and_maps_keypoints():
    torch.manual_seed(2)
    centres = torch.eye(8)[:4]
    truth = torch.arange(4).repeat_interleave(6)  # 6 keypoints × ... per centre, flattened below
    # 8 keypoints, M = 3: keypoint j's prototypes all sit near centre j // 2.
    keypoint_centre = torch.arange(8) // 2
    bank = F.normalize(centres[keypoint_centre][:, None, :] + 0.05 * torch.randn(8, 3, 8), dim=-1)
    centroids, assignment = ops.spherical_kmeans(bank.reshape(24, 8), k=4, seed=0)
    assert len(set(zip(assignment.tolist(), truth.tolist()))) == 4  # a bijection between found and planted
    clusters = ops.build_clusters(bank, k=4, per_cluster=3, seed=0)
    kc = clusters.keypoint_cluster
    assert torch.equal(kc[0::2], kc[1::2]) and len(set(kc.tolist())) == 4
    assert clusters.prototypes.shape == (4, 3, 8) and bool(clusters.valid.all())
    # Every cluster prototype is a member nearest its centroid: it belongs to that cluster's planted centre.
    member_centre = (clusters.prototypes @ centres.T).argmax(-1)
    assert torch.equal(member_centre, member_centre[:, :1].expand(-1, 3))
    again = ops.build_clusters(bank, k=4, per_cluster=3, seed=0)
    assert torch.equal(again.keypoint_cluster, kc)


def test_kmeans_keypoint_vote_goes_to_the_majority_cluster():
    a, b = unit(1.0, 0.0, 0.0), unit(0.0, 1.0, 0.0)
    bank = torch.stack([torch.stack([a, a, b]), torch.stack([b, b, a])])
    clusters = ops.build_clusters(bank, k=2, per_cluster=3, seed=0)
    cluster_of_a = int((clusters.prototypes[:, 0] @ a).argmax())
    assert clusters.keypoint_cluster.tolist() == [cluster_of_a, 1 - cluster_of_a]
    assert clusters.valid.sum().item() == 6


# --------------------------------------------------------------------------------------------- CSS


def test_css_keep_thresholds_confidence_and_distance_including_a_pure_y_offset():
    conf_kpt = torch.tensor([0.9, 0.2, 0.9, 0.9, 0.9])
    conf_emb = torch.tensor([0.8, 0.8, 0.26, 0.8, 0.8])
    xy_kpt = torch.tensor([[5, 5], [5, 5], [5, 5], [4, 1], [6, 5]])
    # Pair 3 differs only in y (3 px): the released code's y-term (x_prt - y_prt) would read 0 here and keep it.
    xy_emb = torch.tensor([[6, 6], [5, 5], [5, 5], [4, 4], [8, 5]])
    keep = ops.css_keep(conf_kpt, xy_kpt, conf_emb, xy_emb, conf_thr=0.25, dist_thr=2.1)
    assert keep.tolist() == [True, False, True, False, True]


def test_fused_point_is_the_confidence_weighted_mean():
    fused = ops.fuse_points(torch.tensor([[10.0, 4.0]]), torch.tensor([0.75]), torch.tensor([[12.0, 8.0]]),
                            torch.tensor([0.25]))
    assert torch.allclose(fused, torch.tensor([[10.5, 5.0]]))


def test_css_pseudo_labels_place_a_gaussian_at_the_fused_peak_with_min_weight():
    from posebh_cli.data.codecs import gaussian_heatmaps

    size = (12, 16)  # w, h
    centres_kpt = torch.tensor([[[5.0, 6.0], [2.0, 2.0]]])
    centres_emb = torch.tensor([[[6.0, 6.0], [9.0, 12.0]]])  # keypoint 1 disagrees by far
    ones = torch.ones(1, 2)
    head = gaussian_heatmaps(centres_kpt, ones, size, 2.0, subpixel=False)[0] * torch.tensor([0.9, 0.9])[:, None, None]
    proto = gaussian_heatmaps(centres_emb, ones, size, 2.0, subpixel=False)[0] * torch.tensor([0.45, 0.9])[:, None, None]
    pseudo, weight = ops.css_pseudo_labels(head, proto, conf_thr=0.25, dist_thr=2.1, sigma=2.0)
    assert torch.allclose(weight, torch.tensor([[0.45, 0.0]]))
    # Gaussians centred on pixels: no quarter step; s = 0.9 / 1.35 = 2/3, fused x = (2/3)·5 + (1/3)·6.
    expected, _ = gaussian_heatmaps(torch.tensor([[[5.0 * 2 / 3 + 6.0 / 3, 6.0]]]), torch.ones(1, 1), size, 2.0,
                                    subpixel=True)
    assert torch.allclose(pseudo[0, 0], expected[0, 0], atol=1e-5)
    assert pseudo[0, 1].abs().sum() == 0
