"""The PoseBH method class on a tiny fake model with the PoseModel interface (methods/posebh.py)."""
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from posebh_cli.data.codecs import gaussian_heatmaps
from posebh_cli.errors import PosebhError
from posebh_cli.methods.posebh import PoseBH
from posebh_cli.models.prototypes import PrototypeBank

SIZES = (2, 3)  # two datasets: keypoints 0-1 and 2-4 in the bank
H, W = 16, 12


class FakeModel(nn.Module):
    """Per-pixel 1×1 convs standing in for the heads and the embedding module."""

    def __init__(self, sizes=SIZES, embed_dim=8, per_keypoint=3):
        super().__init__()
        self.datasets = [f"d{i}" for i in range(len(sizes))]
        self.keypoint_offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.prototypes = PrototypeBank(sum(sizes), per_keypoint, embed_dim)
        self.embed = nn.Conv2d(3, embed_dim, 1)
        self.heads = nn.ModuleList(nn.Conv2d(3, k, 1) for k in sizes)
        for head in self.heads:
            nn.init.constant_(head.bias, 0.5)  # positive peaks, so CSS has something to pair

    def forward(self, images, dataset_idx, heads="all", with_embedding=False):
        x = F.adaptive_avg_pool2d(images, (H, W))
        out = {"heatmaps": [head(x) for head in self.heads]}
        if with_embedding:
            out["embeddings"] = F.normalize(self.embed(x), dim=1)
        return out


@dataclass
class Stage:
    name: str = "s"
    losses: tuple = ("heatmap", "proto", "proto_heatmap")
    prototypes: str = "update"
    trainable: tuple = ()
    on_start: tuple = field(default_factory=tuple)


def make_batch(dataset_idx, seed=0):
    g = torch.Generator().manual_seed(seed)
    b = len(dataset_idx)
    kmax = max(SIZES)
    centres = torch.rand(b, kmax, 2, generator=g) * torch.tensor([W - 1.0, H - 1.0])
    visible = torch.zeros(b, kmax)
    for row, d in enumerate(dataset_idx):
        visible[row, : SIZES[d]] = 1
    heatmaps, weight = gaussian_heatmaps(centres, visible, (W, H), 2.0, subpixel=False)
    return {"images": torch.randn(b, 3, 32, 24, generator=g), "heatmaps": heatmaps, "target_weight": weight,
            "dataset_idx": torch.tensor(dataset_idx), "keypoints": torch.zeros(b, kmax, 3), "meta": [{}] * b}


def make_method(config=None, model=None):
    torch.manual_seed(0)
    model = model or FakeModel()
    datasets = [SimpleNamespace(name=n) for n in model.datasets]
    return PoseBH(model, datasets, config or {}, accelerator=None), model


def test_a_dataset_1_batch_updates_only_dataset_1_prototypes_of_labelled_keypoints():
    method, model = make_method({"momentum": 0.5})
    batch = make_batch([1, 1])
    batch["heatmaps"][:, 1] = 0  # local keypoint 1 of dataset 1 (global 3) has no foreground
    batch["target_weight"][:, 1] = 0
    before = model.prototypes.prototypes.clone()
    method.losses(batch, Stage())
    method.after_step(batch, Stage())
    after = model.prototypes.prototypes
    moved = (after - before).abs().amax(dim=(1, 2)) > 1e-6
    assert moved.tolist() == [False, False, True, False, True]  # global 2 and 4 = dataset 1's keypoints 0 and 2
    assert torch.allclose(after.norm(dim=-1), torch.ones(5, 3), atol=1e-5)


def test_frozen_prototypes_do_not_move_and_nothing_is_kept_pending():
    method, model = make_method()
    before = model.prototypes.prototypes.clone()
    stage = Stage(prototypes="frozen")
    method.losses(make_batch([0, 1]), stage)
    method.after_step(None, stage)
    assert torch.equal(model.prototypes.prototypes, before) and method._pending == []


def test_ppc_masks_logits_to_the_pixel_dataset_and_weights_by_confidence():
    # One keypoint per dataset and M = 1: with the other dataset masked, CE is over one logit and must be 0;
    # PPD is the confidence-weighted mean of (1 - cos)^2 over the dataset's pixels.
    model = FakeModel(sizes=(1, 1), per_keypoint=1)
    method, _ = make_method(model=model)
    from posebh_cli.methods.prototype_ops import Foreground, cosine_logits

    emb = F.normalize(torch.randn(3, 8), dim=-1)
    fg = Foreground(emb, torch.tensor([1, 1, 0]), torch.tensor([0.5, 1.0, 0.2]), torch.tensor([0, 0, 1]))
    bank = model.prototypes.prototypes
    ppc, ppd, assign, _ = method._proto_terms(fg, bank)
    cos = cosine_logits(emb, bank)[torch.arange(3), fg.labels, 0]
    expected_ppd = (0.5 * (1 - cos[0]) ** 2 + 1.0 * (1 - cos[1]) ** 2) / 2 + 0.2 * (1 - cos[2]) ** 2
    assert ppc.item() == pytest.approx(0.0, abs=1e-6)
    assert ppd.item() == pytest.approx(expected_ppd.item(), rel=1e-5)
    assert assign.tolist() == [0, 0, 0]


def test_all_loss_terms_are_finite_non_zero_and_reach_the_embedding():
    method, model = make_method({"css_conf_thr": 0.0, "css_dist_thr": 100.0})
    stage = Stage(losses=("heatmap", "proto", "proto_heatmap", "cluster", "css"), on_start=("cluster_prototypes",))
    method.on_stage_start(stage)
    terms = method.losses(make_batch([0, 1, 1, 0]), stage)
    assert set(terms) == {"heatmap/d0", "heatmap/d1", "proto_ppc", "proto_ppd", "proto_heatmap", "cluster", "css"}
    for name, value in terms.items():
        assert torch.isfinite(value) and value.item() != 0, name
    sum(terms.values()).backward()
    assert model.embed.weight.grad.abs().sum() > 0 and model.heads[1].weight.grad.abs().sum() > 0


def test_default_weights_are_the_paper_values():
    method, _ = make_method()
    cfg = method.config
    assert (cfg.proto_heatmap_weight, cfg.ppc_weight, cfg.ppd_weight, cfg.cluster_weight, cfg.css_weight) == (
        3.33e-6, 1.25e-7, 1.25e-8, 0.01, 0.001)
    assert (cfg.sinkhorn_kappa, cfg.sinkhorn_iters, cfg.momentum) == (0.05, 3, 0.999)


def test_cluster_state_round_trips_for_resume():
    method, model = make_method()
    method.on_stage_start(Stage(on_start=("cluster_prototypes",)))
    state = method.state_dict()
    fresh, _ = make_method(model=model)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.clusters.keypoint_cluster, method.clusters.keypoint_cluster)
    assert torch.equal(fresh.clusters.prototypes, method.clusters.prototypes)
    assert method.clusters.prototypes.shape[0] == 2  # min(96, J // 2) with J = 5


def test_user_mistakes_are_reported_with_the_recipe_field():
    with pytest.raises(PosebhError, match="method_config.kappa"):
        make_method({"kappa": 0.1})
    with pytest.raises(PosebhError, match="method_config.sinkhorn_iters"):
        make_method({"sinkhorn_iters": "three"})
    with pytest.raises(PosebhError, match="method_config.momentum"):
        make_method({"momentum": 1.5})
    with pytest.raises(PosebhError, match="method_config.heatmap_normalize"):
        make_method({"heatmap_normalize": "mean"})
    method, _ = make_method()
    with pytest.raises(PosebhError, match="cluster_prototypes"):
        method.losses(make_batch([0]), Stage(losses=("cluster",)))


def test_smoke_on_a_real_tiny_model():
    from posebh_cli.models.pose_model import PoseModel
    from posebh_cli.skeletons import load_skeleton

    torch.manual_seed(0)
    skeletons = [load_skeleton("coco"), load_skeleton("mpii")]
    model = PoseModel("vit_pico", ["coco", "mpii"], skeletons, with_embedding=True, embed_dim=16, img_size=(64, 48))
    datasets = [SimpleNamespace(name="coco", skeleton=skeletons[0]), SimpleNamespace(name="mpii", skeleton=skeletons[1])]
    method = PoseBH(model, datasets, {"css_conf_thr": 0.0, "css_dist_thr": 100.0}, accelerator=None)
    stage = Stage(losses=("heatmap", "proto", "proto_heatmap", "cluster", "css"), on_start=("cluster_prototypes",))
    method.on_stage_start(stage)

    b, h, w = 4, 16, 12
    dataset_idx = torch.tensor([0, 1, 0, 1])
    centres = torch.rand(b, 17, 2) * torch.tensor([w - 1.0, h - 1.0])
    visible = torch.ones(b, 17)
    visible[dataset_idx == 1, 16:] = 0  # MPII has 16 keypoints: the 17th channel is padding
    heatmaps, weight = gaussian_heatmaps(centres, visible, (w, h), 2.0, subpixel=False)
    batch = {"images": torch.randn(b, 3, 64, 48), "heatmaps": heatmaps, "target_weight": weight,
             "dataset_idx": dataset_idx, "keypoints": torch.zeros(b, 17, 3), "meta": [{}] * b}
    terms = method.losses(batch, stage)
    assert set(terms) == {"heatmap/coco", "heatmap/mpii", "proto_ppc", "proto_ppd", "proto_heatmap", "cluster", "css"}
    for name, value in terms.items():
        assert torch.isfinite(value) and value.item() != 0, name
    sum(terms.values()).backward()
    before = model.prototypes.prototypes.clone()
    method.after_step(batch, stage)
    assert not torch.equal(model.prototypes.prototypes, before)


def test_unknown_stage_actions_and_losses_are_refused():
    method, _ = make_method()
    with pytest.raises(PosebhError, match="on_start"):
        method.on_stage_start(Stage(on_start=("kmeans",)))
    with pytest.raises(PosebhError, match="losses"):
        method.losses(make_batch([0]), Stage(losses=("acae",)))


def test_an_imported_bank_with_negated_prototypes_is_aligned_before_training():
    # A bank fitted to the data, then some prototypes negated as a |cos|-trained released bank may store them.
    method, model = make_method({"momentum": 1.0})  # λ = 1: the update leaves the bank alone, only signs change
    batch = make_batch([0, 1, 0, 1], seed=3)
    with torch.no_grad():
        emb = model(batch["images"], batch["dataset_idx"], with_embedding=True)["embeddings"]
        offsets = torch.tensor(model.keypoint_offsets)[batch["dataset_idx"]]
        from posebh_cli.methods import prototype_ops as ops
        fg = ops.sample_foreground(batch["heatmaps"], batch["target_weight"], emb, offsets)
        # every prototype of keypoint j = the mean embedding of j's pixels plus a little noise: clearly aligned
        means = ops.l2_normalize(torch.zeros(5, 8).index_add_(0, fg.labels, fg.embeddings))
        fitted = ops.l2_normalize(means[:, None, :] + 0.05 * torch.randn(5, 3, 8))
        negated = fitted.clone()
        negated[1] *= -1
        negated[3, 2] *= -1
        model.prototypes.prototypes.copy_(negated)
    model.prototypes.abs_similarity = True
    method, model = make_method({"momentum": 1.0}, model)
    method.losses(batch, Stage())
    assert torch.allclose(model.prototypes.prototypes, fitted, atol=1e-6)
    assert model.prototypes.abs_similarity is False and method._signs_to_check is None

    # Without the import flag nothing is flipped.
    model.prototypes.prototypes.copy_(negated)
    method, model = make_method({"momentum": 1.0}, model)
    method.losses(batch, Stage())
    assert torch.equal(model.prototypes.prototypes, negated)
