"""The affine-combining autoencoder and the consistency objective on tiny tensors."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from posebh_cli.recipe import DatasetSpec, StageSpec
from posebh_cli.errors import PosebhError
from posebh_cli.methods.acae import ACAEConfig, ACAEConsistency, consistency_loss, soft_argmax
from posebh_cli.models.acae import (ACAE, chiral_layout, default_latents, draw_latents, fit_acae, load_acae,
                                           prediction_latents, save_acae, split_latents)
from posebh_cli.skeletons import load_skeleton

COCO, MPII = load_skeleton("coco"), load_skeleton("mpii")
LAYOUT = chiral_layout([COCO, MPII])


def _mirror(poses: torch.Tensor) -> torch.Tensor:
    """Negate x and swap every left joint with its right twin."""
    out = poses[:, LAYOUT.mirror].clone()
    out[..., 0] = -out[..., 0]
    return out


def test_layout_takes_sides_from_every_heads_flip_pairs():
    assert LAYOUT.num_joints == 33
    assert len(LAYOUT.left) == 8 + 6 and len(LAYOUT.centre) == 1 + 4  # COCO nose; MPII pelvis, thorax, neck, head
    names = [*COCO.keypoints, *MPII.keypoints]
    assert all(names[i].startswith("left") for i in LAYOUT.left)
    assert all(names[i].startswith("right") for i in LAYOUT.right)
    assert names[LAYOUT.left[0]] == "left_eye" and names[LAYOUT.right[0]] == "right_eye"


def test_latent_split_defaults_and_validation():
    big = chiral_layout([load_skeleton("coco_wholebody"), COCO, MPII])
    assert split_latents(48, None, big) == (20, 8)  # the seed's 48 = 20 pairs + 8 centre
    assert default_latents(33) == 16 and default_latents(214) == 48
    with pytest.raises(PosebhError, match="--latents"):
        split_latents(33, None, LAYOUT)
    with pytest.raises(PosebhError, match="--centre-latents"):
        split_latents(16, 3, LAYOUT)


def test_both_matrices_are_affine():
    acae = ACAE(LAYOUT, 7, 2, seed=1)
    enc, dec = acae.encoder(), acae.decoder()
    assert enc.shape == (16, 33) and dec.shape == (33, 16)
    torch.testing.assert_close(enc.sum(1), torch.ones(16))
    torch.testing.assert_close(dec.sum(1), torch.ones(33))
    assert (enc < 0).any()  # affine, not convex: U(-0.1, 1) init leaves some negative weights


def test_mirroring_commutes_with_the_autoencoder():
    acae = ACAE(LAYOUT, 7, 2, seed=2)
    poses = torch.rand(5, 33, 2)
    torch.testing.assert_close(acae(_mirror(poses)), _mirror(acae(poses)), atol=1e-5, rtol=0)
    latents = acae.encoder() @ poses
    mirrored = acae.encoder() @ _mirror(poses)  # latents mirror too: left block <-> right block, x negated
    swap = [*range(7, 14), *range(7), 14, 15]
    expected = latents[:, swap].clone()
    expected[..., 0] = -expected[..., 0]
    torch.testing.assert_close(mirrored, expected, atol=1e-5, rtol=0)


def test_translation_scale_and_affine_equivariance():
    acae = ACAE(LAYOUT, 7, 2, seed=3)
    poses = torch.rand(4, 33, 2)
    matrix, shift = torch.tensor([[2.5, 0.3], [-0.2, 1.5]]), torch.tensor([10.0, -4.0])
    torch.testing.assert_close(acae(poses @ matrix.T + shift), acae(poses) @ matrix.T + shift, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(acae(3 * poses + 1), 3 * acae(poses) + 1, atol=1e-5, rtol=1e-5)


def test_fit_finds_a_low_dimensional_structure():
    # Poses whose 33 joints are mirror-symmetric affine combinations of 4 base points: a rank the AE can hold.
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(128, 4, 2, generator=gen)
    mix = torch.rand(33, 4, generator=gen)
    poses = (mix / mix.sum(1, keepdim=True)) @ base
    poses = torch.cat([poses, _mirror(poses)])
    before = (ACAE(LAYOUT, 7, 2)(poses) - poses).abs().mean()
    acae = fit_acae(poses, LAYOUT, 7, 2, lam=0.01, steps=120, progress=False)
    after = (acae(poses) - poses).abs().mean()
    assert after < 0.2 * before and after < 0.01


def _hand_made_acae(tmp_path, heads):
    """J=4 joints of a 'coco' head stand-in, 2 latents: joint 2 = midpoint, joint 3 = 2·p0 − p1."""
    folder = tmp_path / "acae"
    folder.mkdir()
    encoder = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    decoder = torch.tensor([[1.0, 0], [0, 1.0], [0.5, 0.5], [2.0, -1.0]])
    save_file({"encoder": encoder, "decoder": decoder}, str(folder / "acae.safetensors"))
    meta = {"heads": heads, "num_joints": 4, "latents": 2, "latent_sides": ["center", "center"]}
    (folder / "acae.json").write_text(json.dumps(meta))
    return folder


def test_consistency_is_zero_on_an_exactly_reconstructable_pose(tmp_path):
    acae = load_acae(_hand_made_acae(tmp_path, [{"name": "a", "keypoints": ["p", "q", "r", "s"]}]))
    p0, p1 = torch.tensor([0.2, 0.3]), torch.tensor([0.6, 0.1])
    pose = torch.stack([p0, p1, (p0 + p1) / 2, 2 * p0 - p1])[None]
    assert consistency_loss(pose, acae.reconstruction).item() == pytest.approx(0.0, abs=1e-7)
    moved = pose.clone()
    moved[0, 2, 0] += 0.08  # the midpoint is off by 0.08 in x: one of 8 coordinates
    assert consistency_loss(moved, acae.reconstruction).item() == pytest.approx(0.08 / 8, abs=1e-6)
    latents = prediction_latents(acae, {"a": pose[0].numpy()})
    np.testing.assert_allclose(latents, pose[0, :2].numpy())


def test_a_collapsed_pose_is_a_trivial_minimum_of_the_consistency():
    """Every joint at one point is reproduced exactly (each row of R sums to 1): the minimum the heads fall into
    when the term outweighs the heatmaps, which is why the default weight is the seed's α in heatmap-loss units."""
    acae = ACAE(LAYOUT, 7, 2, seed=1)
    reconstruction = acae.decoder() @ acae.encoder()
    poses = torch.rand(4, 33, 2)
    collapsed = poses.mean(1, keepdim=True).expand(-1, 33, -1)
    assert consistency_loss(poses, reconstruction).item() > 1e-2
    assert consistency_loss(collapsed, reconstruction).item() == pytest.approx(0.0, abs=1e-6)
    assert ACAEConfig(acae="x").weight == ACAEConfig.from_dict({"acae": "x"}).weight == 0.03


def test_soft_argmax_finds_peaks_and_is_differentiable():
    maps = torch.zeros(2, 3, 8, 6, requires_grad=True)
    target = maps.detach().clone()
    target[0, 0, 5, 2] = 1.0
    target[1, 2, 1, 4] = 1.0
    coords = soft_argmax((maps + target), beta=60.0)
    torch.testing.assert_close(coords[0, 0], torch.tensor([2.0, 5.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(coords[1, 2], torch.tensor([4.0, 1.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(coords[0, 1], torch.tensor([2.5, 3.5]))  # flat map: the centre
    coords.sum().backward()
    assert maps.grad is not None and maps.grad.abs().sum() > 0


class FixedHeads(torch.nn.Module):
    """A stand-in model: fixed per-head heatmaps, PoseModel's dataset/skeleton/config attributes."""

    def __init__(self, heatmaps, skeletons, names):
        super().__init__()
        self.maps = heatmaps
        self.skeletons, self.datasets = skeletons, names
        self.config = type("Config", (), {"img_size": (32, 24)})()

    def forward(self, images, dataset_idx, heads="all", with_embedding=False):
        return {"heatmaps": [m.clone().requires_grad_(True) for m in self.maps]}


def _save_real_acae(folder, skeletons, names):
    folder.mkdir()
    acae = ACAE(chiral_layout(skeletons), 2, 1, seed=0)
    save_acae(acae, folder, [{"name": n, "skeleton": s.name, "keypoints": list(s.keypoints)}
                             for n, s in zip(names, skeletons)], {})
    return acae


def test_method_adds_consistency_over_covered_images(tmp_path):
    sk = load_skeleton("aic")
    _save_real_acae(tmp_path / "acae", [sk, sk], ["a", "b"])
    maps = [torch.rand(3, 14, 8, 6), torch.rand(3, 14, 8, 6)]
    model = FixedHeads(maps, [sk, sk, COCO], ["a", "b", "c"])
    datasets = [DatasetSpec("a", "x", codec="udp"), DatasetSpec("b", "y"), DatasetSpec("c", "z")]
    method = ACAEConsistency(model, datasets, {"acae": str(tmp_path / "acae"), "weight": 2.0, "beta": 5.0})
    batch = {"images": torch.zeros(3, 3, 32, 24), "dataset_idx": torch.tensor([0, 1, 2]),
             "heatmaps": torch.zeros(3, 17, 8, 6), "target_weight": torch.ones(3, 17)}
    losses = method.losses(batch, StageSpec("s", (0, 1), 1e-3, losses=("heatmap", "consistency")))
    assert set(losses) == {"heatmap/a", "heatmap/b", "consistency"}
    coords = method.coordinates([m[:2] for m in maps])  # image of dataset c is not covered by the ACAE
    expected = 2.0 * consistency_loss(coords, method.reconstruction)
    torch.testing.assert_close(losses["consistency"], expected)
    only = method.losses(batch, StageSpec("s", (0, 1), 1e-3, losses=("heatmap",)))
    assert "consistency" not in only


def test_acae_that_does_not_match_the_heads_is_refused(tmp_path):
    _save_real_acae(tmp_path / "acae", [COCO, MPII], ["coco", "mpii"])
    swapped = FixedHeads([], [COCO, load_skeleton("aic")], ["coco", "mpii"])
    with pytest.raises(PosebhError, match=r"acae.json: record heads\[1\]: field 'keypoints'"):
        ACAEConsistency(swapped, [], {"acae": str(tmp_path / "acae")})
    missing = FixedHeads([], [COCO], ["coco"])
    with pytest.raises(PosebhError, match="fitted on head 'mpii'"):
        ACAEConsistency(missing, [], {"acae": str(tmp_path / "acae")})
    with pytest.raises(PosebhError, match="method_config.acae"):
        ACAEConsistency(missing, [], {})
    with pytest.raises(PosebhError, match="method_config.bta"):
        ACAEConsistency(missing, [], {"acae": "x", "bta": 1})
    with pytest.raises(PosebhError, match="ACAE file not found"):
        ACAEConsistency(missing, [], {"acae": str(tmp_path / "nothing")})


def test_drawing_latents_enlarges_the_crop():
    image = np.zeros((16, 12, 3), np.uint8)
    out = draw_latents(image, np.array([[5.0, 8.0], [2.0, 2.0]]), ["left", "center"], joints=np.ones((3, 2)), zoom=2)
    assert out.shape == (32, 24, 3) and out.any()


@pytest.mark.parametrize("name", ["zoo-pico-acae", "vitb-acae"])
def test_acae_recipes_load(name):
    from pathlib import Path

    from posebh_cli.methods import load_recipe
    from posebh_cli.methods.acae import CONFIG_KEYS

    recipe = load_recipe(Path(__file__).parents[2] / "posebh_cli" / "recipes" / f"{name}.yaml", check_paths=False)
    assert recipe.method == "acae" and recipe.model.init.kind == "ours"
    assert set(recipe.method_config) <= set(CONFIG_KEYS) and recipe.method_config["acae"]
    assert all("consistency" in stage.losses for stage in recipe.stages)
