"""Nonparametric prototype fitting: recovery of known clusters, empty keypoints, pixel collection from a model."""
import pytest
import torch
import torch.nn.functional as F

from posebh_cli.errors import PosebhError
from posebh_cli.methods.prototype_fit import (FitConfig, Pixels, _cap_per_keypoint, collect_pixels,
                                              fit_prototypes)
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import load_skeleton


def _clustered_pixels(num_keypoints=3, per_cluster=200, dim=16, seed=0):
    """Keypoint k has two tight clusters around known directions; keypoint num_keypoints has no pixel."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(num_keypoints, 2, dim, generator=g), dim=-1)
    emb, labels = [], []
    for k in range(num_keypoints):
        for c in range(2):
            emb.append(F.normalize(centres[k, c] + 0.05 * torch.randn(per_cluster, dim, generator=g), dim=-1))
            labels.append(torch.full((per_cluster,), k))
    emb, labels = torch.cat(emb), torch.cat(labels)
    return Pixels(emb, labels, torch.ones(len(labels))), centres


@pytest.mark.parametrize("algorithm", ["sinkhorn", "kmeans"])
def test_fit_finds_both_clusters_of_every_keypoint(algorithm):
    pixels, centres = _clustered_pixels()
    initial = F.normalize(torch.randn(4, 2, 16), dim=-1)
    result = fit_prototypes(pixels, num_keypoints=4, per_keypoint=2, config=FitConfig(algorithm=algorithm, epochs=5),
                            initial=initial)
    bank = result.prototypes
    assert bank.shape == (4, 2, 16)
    assert torch.allclose(bank.norm(dim=-1), torch.ones(4, 2), atol=1e-5)
    for k in range(3):
        cos = centres[k] @ bank[k].T  # [2 centres, 2 prototypes]
        # each centre has its own prototype (equipartition / k-means must not collapse both onto one cluster)
        assert cos.max(dim=1).values.min() > 0.95
        assert set(cos.argmax(dim=1).tolist()) == {0, 1}
    assert result.empty == [3] and result.pixels_per_keypoint == [400, 400, 400, 0]
    assert torch.allclose(bank[3], initial[3], atol=1e-6)  # a keypoint without pixels keeps its prototypes


def test_sinkhorn_fit_is_deterministic_for_a_seed():
    pixels, _ = _clustered_pixels()
    a = fit_prototypes(pixels, 3, 2, FitConfig(epochs=2, seed=3)).prototypes
    b = fit_prototypes(pixels, 3, 2, FitConfig(epochs=2, seed=3)).prototypes
    assert torch.equal(a, b)


def test_kmeans_with_fewer_pixels_than_prototypes():
    pixels = Pixels(F.normalize(torch.randn(2, 8), dim=-1), torch.tensor([0, 0]), torch.ones(2))
    bank = fit_prototypes(pixels, 1, 3, FitConfig(algorithm="kmeans")).prototypes
    assert bank.shape == (1, 3, 8) and torch.isfinite(bank).all()


def test_cap_keeps_at_most_cap_pixels_per_keypoint():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 7)
    keep = _cap_per_keypoint(labels, cap=4, seed=0)
    assert torch.bincount(labels[keep]).tolist() == [4, 3, 4]
    assert torch.equal(keep, keep.sort().values)


@pytest.mark.parametrize("bad", [{"algorithm": "em"}, {"epochs": 0}, {"momentum": 1.0}, {"min_confidence": 1.5}])
def test_config_errors(bad):
    with pytest.raises(PosebhError):
        FitConfig(**bad).check()


def test_collect_pixels_labels_the_gt_peaks_and_the_mirror():
    sk = load_skeleton("coco")
    torch.manual_seed(0)
    model = PoseModel("vit_pico", ["coco"], [sk], with_embedding=True, img_size=(32, 32))
    heatmaps = torch.zeros(2, sk.num_keypoints, 8, 8)
    heatmaps[0, 5, 2, 1] = 1.0  # left_shoulder, left part of the crop
    heatmaps[1, 0, 4, 4] = 0.9  # nose
    heatmaps[1, 3, 6, 6] = 0.3  # below min_confidence
    weight = torch.ones(2, sk.num_keypoints)
    weight[1, 0] = 1.0
    batch = {"images": torch.randn(2, 3, 32, 32), "heatmaps": heatmaps, "target_weight": weight}
    pixels = collect_pixels(model, [batch], sk.num_keypoints, sk.flip_indices, FitConfig(flip=True), progress=False)
    # own view: left_shoulder and nose; mirrored view: right_shoulder (6) and nose again
    assert sorted(pixels.labels.tolist()) == [0, 0, 5, 6]
    assert pixels.embeddings.shape == (4, 64)
    assert torch.allclose(pixels.embeddings.norm(dim=1), torch.ones(4), atol=1e-5)
    assert not model.training  # frozen in eval mode
    no_flip = collect_pixels(model, [batch], sk.num_keypoints, sk.flip_indices, FitConfig(flip=False), progress=False)
    assert sorted(no_flip.labels.tolist()) == [0, 5]
