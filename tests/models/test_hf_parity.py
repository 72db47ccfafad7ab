"""Our ViTPose++ model computes the same heatmaps as HF transformers' VitPoseForPoseEstimation."""
import pytest
import torch

from posebh_cli.models.pose_model import PoseModel

from model_builders import randomize_, skeletons

transformers = pytest.importorskip("transformers")

NAMES = ["coco", "aic", "mpii"]


def hf_to_ours(hf_state: dict, depth: int, head: int) -> dict:
    """Rename HF VitPose weights to ours; the single HF head becomes our head `head`."""
    out = {"backbone.pos_embed": hf_state["backbone.embeddings.position_embeddings"],
           "backbone.patch_embed.proj.weight": hf_state["backbone.embeddings.patch_embeddings.projection.weight"],
           "backbone.patch_embed.proj.bias": hf_state["backbone.embeddings.patch_embeddings.projection.bias"],
           "backbone.last_norm.weight": hf_state["backbone.layernorm.weight"],
           "backbone.last_norm.bias": hf_state["backbone.layernorm.bias"]}
    for i in range(depth):
        src, dst = f"backbone.encoder.layer.{i}", f"backbone.blocks.{i}"
        att = f"{src}.attention.attention"
        for p in ("weight", "bias"):
            out[f"{dst}.attn.qkv.{p}"] = torch.cat([hf_state[f"{att}.{n}.{p}"] for n in ("query", "key", "value")])
            out[f"{dst}.attn.proj.{p}"] = hf_state[f"{src}.attention.output.dense.{p}"]
            out[f"{dst}.norm1.{p}"] = hf_state[f"{src}.layernorm_before.{p}"]
            out[f"{dst}.norm2.{p}"] = hf_state[f"{src}.layernorm_after.{p}"]
    for key, value in hf_state.items():
        if ".mlp." in key:
            out[key.replace("backbone.encoder.layer.", "backbone.blocks.")] = value
    names = {"deconv1": "deconv_layers.0", "batchnorm1": "deconv_layers.1", "deconv2": "deconv_layers.3",
             "batchnorm2": "deconv_layers.4", "conv": "final_layer"}
    for key, value in hf_state.items():
        if key.startswith("head."):
            module, param = key[len("head."):].split(".", 1)
            out[f"heads.{head}.{names[module]}.{param}"] = value
    return out


def test_same_heatmaps_as_transformers():
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

    torch.manual_seed(0)
    backbone = VitPoseBackboneConfig(image_size=[128, 96], patch_size=[16, 16], hidden_size=192, num_hidden_layers=4,
                                     num_attention_heads=3, num_experts=3, part_features=48, layer_norm_eps=1e-6,
                                     out_indices=[4])
    hf = randomize_(VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=16,
                                                           use_simple_decoder=False))).eval()
    ours = PoseModel("vit_pico", NAMES, skeletons(NAMES), img_size=(128, 96)).eval()
    mapped = hf_to_ours(hf.state_dict(), depth=4, head=2)
    own = ours.state_dict()
    assert set(mapped) == {k for k in own if not k.startswith(("heads.0.", "heads.1."))}
    ours.load_state_dict(mapped, strict=False)

    x = torch.randn(2, 3, 128, 96)
    for dataset_index in (2, 0):  # the MPII head on MPII's expert, and on COCO's expert
        idx = torch.full((2,), dataset_index)
        with torch.no_grad():
            expected = hf(x, dataset_index=idx).heatmaps
            got = ours(x, idx)["heatmaps"][2]
        assert got.shape == (2, 16, 32, 24) and expected.abs().max() > 0.1
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        differs = (ours(x, torch.tensor([1, 1]))["heatmaps"][2] - expected).abs().max()
    assert differs > 1e-2  # the expert choice matters, so the comparison above is not vacuous
