"""Our ViTPose++ model computes the same heatmaps as HF transformers' VitPoseForPoseEstimation."""
import pytest
import torch

from posebh_cli.models.official import hf_vitpose_to_ours
from posebh_cli.models.pose_model import PoseModel

from model_builders import randomize_, skeletons

transformers = pytest.importorskip("transformers")

NAMES = ["coco", "aic", "mpii"]


def test_same_heatmaps_as_transformers():
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

    torch.manual_seed(0)
    backbone = VitPoseBackboneConfig(image_size=[128, 96], patch_size=[16, 16], hidden_size=192, num_hidden_layers=4,
                                     num_attention_heads=3, num_experts=3, part_features=48, layer_norm_eps=1e-6,
                                     out_indices=[4])
    hf = randomize_(VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=16,
                                                           use_simple_decoder=False))).eval()
    ours = PoseModel("vit_pico", NAMES, skeletons(NAMES), img_size=(128, 96)).eval()
    mapped = hf_vitpose_to_ours(hf.state_dict(), depth=4, head=2)
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
