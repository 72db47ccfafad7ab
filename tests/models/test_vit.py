import pytest
import torch

from posebh_cli.errors import PosebhError
from posebh_cli.models.pose_model import PoseModel, count_parameters
from posebh_cli.models.vit import ARCHS, create_vit, token_grid

from model_builders import SIX, skeletons


def analytic_vit_params(dim: int, depth: int, tokens: int, experts: int, part: int) -> int:
    """Parameter count of the ViTPose(++) backbone computed by hand."""
    hidden = 4 * dim
    block = 2 * 2 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + (hidden * dim + hidden)
    shared = dim - part if experts else dim
    block += shared * hidden + shared + experts * (part * hidden + part)
    return (tokens + 1) * dim + dim * 3 * 16 * 16 + dim + depth * block + 2 * dim


@pytest.mark.parametrize("arch", ["vit_small", "vit_base", "vit_large", "vit_huge"])
def test_big_sizes_on_meta(arch):
    size = ARCHS[arch]
    with torch.device("meta"):
        moe = create_vit(arch, num_experts=6)
        plain = create_vit(arch)
        out = plain(torch.empty(2, 3, 256, 192))
    assert out.shape == (2, size.embed_dim, 16, 12)
    assert count_parameters(moe) == analytic_vit_params(size.embed_dim, size.depth, 192, 6, size.part_features)
    assert count_parameters(plain) == analytic_vit_params(size.embed_dim, size.depth, 192, 0, 0)
    assert moe.blocks[0].mlp.fc2.out_features == size.embed_dim - size.part_features
    assert len(moe.blocks) == size.depth and moe.blocks[0].attn.num_heads == size.num_heads


def test_published_parameter_counts():
    with torch.device("meta"):
        plus = PoseModel("vit_base", SIX, skeletons(SIX))
        base = PoseModel("vit_base", ["coco"], skeletons(["coco"]))
        huge = PoseModel("vit_huge", ["coco"], skeletons(["coco"]))
    # ViTPose-B 90.0 M (85.8 M backbone + 4.2 M head); ViTPose-H 637 M.
    assert abs(count_parameters(base) / 1e6 - 90.0) < 0.1
    assert abs(count_parameters(base.backbone) / 1e6 - 85.8) < 0.1
    assert abs(count_parameters(huge) / 1e6 - 637.2) < 0.2
    # ViTPose++-B: 90 M + 35.4 M experts = 125.4 M with one head (the HF vitpose-plus-base size); 146.4 M with all
    # six heads (the five extra deconv heads are 4.2 M each); splitting gives back the 90.0 M plain model.
    one_head = count_parameters(plus.backbone) + count_parameters(plus.heads[0])
    assert abs(one_head / 1e6 - 125.4) < 0.2
    assert abs(count_parameters(plus) / 1e6 - 146.4) < 0.2
    assert count_parameters(plus.backbone) - count_parameters(base.backbone) == pytest.approx(35.4e6, rel=2e-3)


@pytest.mark.parametrize("arch", ["vit_pico", "vit_tiny"])
def test_small_sizes_run(arch):
    vit = create_vit(arch, img_size=(128, 96), num_experts=2).eval()
    out = vit(torch.randn(2, 3, 128, 96), torch.tensor([0, 1]))
    assert out.shape == (2, 192, 8, 6)
    assert token_grid((256, 192)) == (16, 12)


def test_mixed_batch_equals_each_sample_alone():
    torch.manual_seed(0)
    vit = create_vit("vit_pico", img_size=(64, 48), num_experts=3).eval()
    for block in vit.blocks:  # make experts clearly different from each other
        for expert in block.mlp.experts:
            torch.nn.init.normal_(expert.weight, std=0.2)
    x = torch.randn(4, 3, 64, 48)
    idx = torch.tensor([2, 0, 2, 1])
    with torch.no_grad():
        mixed = vit(x, idx)
        alone = torch.cat([vit(x[i:i + 1], idx[i:i + 1]) for i in range(4)])
        other = vit(x, torch.tensor([0, 0, 0, 0]))
    torch.testing.assert_close(mixed, alone, atol=1e-5, rtol=1e-5)
    assert (mixed[0] - other[0]).abs().max() > 1e-3  # routing changes the output


def test_routing_gradients_reach_only_used_experts():
    vit = create_vit("vit_pico", img_size=(64, 48), num_experts=3)
    vit(torch.randn(2, 3, 64, 48), torch.tensor([0, 2])).sum().backward()
    experts = vit.blocks[0].mlp.experts
    assert experts[0].weight.grad is not None and experts[2].weight.grad is not None
    assert experts[1].weight.grad is None


def test_bad_dataset_idx():
    vit = create_vit("vit_pico", img_size=(64, 48), num_experts=2)
    with pytest.raises(ValueError):
        vit(torch.randn(1, 3, 64, 48))
    with pytest.raises(ValueError):
        vit(torch.randn(1, 3, 64, 48), torch.tensor([2]))
    with pytest.raises(PosebhError):
        create_vit("vit_gigantic")


def _timm_like_state(dim=192, depth=4, side=14):
    """A timm/MAE-style ViT state dict: cls token, square pos_embed with a cls slot, dense fc2, final norm."""
    import timm

    vit = timm.models.vision_transformer.VisionTransformer(img_size=side * 16, embed_dim=dim, depth=depth,
                                                          num_heads=3, num_classes=0)
    return vit.state_dict()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_init_from_timm_file(tmp_path, suffix):
    state = _timm_like_state()
    path = tmp_path / f"mae{suffix}"
    if suffix == ".pth":
        torch.save({"model": state}, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    vit = create_vit("vit_pico", img_size=(256, 192), num_experts=2)
    vit.init_from_file(path)
    fc2 = state["blocks.1.mlp.fc2.weight"]
    torch.testing.assert_close(vit.blocks[1].mlp.fc2.weight, fc2[:144])
    torch.testing.assert_close(vit.blocks[1].mlp.experts[1].weight, fc2[144:])
    torch.testing.assert_close(vit.blocks[3].attn.qkv.weight, state["blocks.3.attn.qkv.weight"])
    assert vit.pos_embed.shape == (1, 193, 192)
    torch.testing.assert_close(vit.pos_embed[:, :1], state["pos_embed"][:, :1])
    # Bicubic resize of a constant grid stays constant.
    const = dict(state, pos_embed=torch.ones(1, 197, 192))
    torch.save(const, tmp_path / "const.pth")
    vit.init_from_file(tmp_path / "const.pth")
    torch.testing.assert_close(vit.pos_embed, torch.ones(1, 193, 192))


def test_init_from_wrong_file(tmp_path):
    torch.save({"model": _timm_like_state(dim=192, depth=2)}, tmp_path / "short.pth")
    vit = create_vit("vit_pico")
    with pytest.raises(PosebhError, match=r"short\.pth.*missing"):
        vit.init_from_file(tmp_path / "short.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(PosebhError, match=r"junk\.pth"):
        vit.init_from_file(tmp_path / "junk.pth")
    (tmp_path / "jax.npz").write_bytes(b"PK")
    with pytest.raises(PosebhError, match=r"jax\.npz: JAX \.npz"):
        vit.init_from_file(tmp_path / "jax.npz")


def test_position_table_starts_as_mae_sincos():
    """A from-scratch backbone starts from MAE's fixed 2-D table: rows differ by position, the cls slot is zero."""
    vit = create_vit("vit_pico", img_size=(128, 96))
    h, w = vit.grid_size
    table = vit.pos_embed[0, 1:].detach().reshape(h, w, -1)
    dim = vit.embed_dim
    assert torch.all(vit.pos_embed[0, 0] == 0)
    # first half of the channels depends on the column only, second half on the row only
    assert torch.allclose(table[0, :, : dim // 2], table[h - 1, :, : dim // 2])
    assert torch.allclose(table[:, 0, dim // 2:], table[:, w - 1, dim // 2:])
    assert not torch.allclose(table[0, 0], table[1, 1])
    assert torch.allclose(table[0, 0, : dim // 4], torch.zeros(dim // 4))   # sin(0) at column 0
    assert torch.allclose(table[0, 0, dim // 4: dim // 2], torch.ones(dim // 4))
    assert float(table.abs().max()) <= 1.0 + 1e-6
