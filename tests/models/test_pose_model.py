import pytest
import torch

from posebh_cli.errors import PosebhError
from posebh_cli.models.pose_model import ModelConfig, PoseModel
from posebh_cli.models.prototypes import PrototypeBank

from model_builders import randomize_, skeletons

NAMES = ["coco", "aic", "mpii"]
SIZE = (64, 48)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_(PoseModel("vit_pico", NAMES, skeletons(NAMES), with_embedding=True, img_size=SIZE)).eval()


def test_forward_contract(model):
    x = torch.randn(3, 3, *SIZE)
    idx = torch.tensor([0, 2, 1])
    with torch.no_grad():
        out = model(x, idx, with_embedding=True)
    assert [h.shape for h in out["heatmaps"]] == [(3, 17, 16, 12), (3, 14, 16, 12), (3, 16, 16, 12)]
    assert out["features"].shape == (3, 192, 4, 3)
    assert out["embeddings"].shape == (3, 64, 16, 12)
    torch.testing.assert_close(out["embeddings"].norm(dim=1), torch.ones(3, 16, 12))
    assert model.keypoint_offsets == [0, 17, 31]
    assert model.prototypes.heatmaps(out["embeddings"]).shape == (3, 47, 16, 12)
    assert model.datasets == NAMES


def test_own_heads_compute_only_own_rows(model):
    x = torch.randn(3, 3, *SIZE)
    idx = torch.tensor([0, 2, 0])
    with torch.no_grad():
        own = model(x, idx, heads="own")["heatmaps"]
        full = model(x, idx)["heatmaps"]
    torch.testing.assert_close(own[0][[0, 2]], full[0][[0, 2]])
    assert own[0][1].abs().max() == 0 and own[1].abs().max() == 0
    torch.testing.assert_close(own[2][1], full[2][1])


def test_heatmaps_api(model):
    x = torch.randn(2, 3, *SIZE)
    model.train()
    hm = model.heatmaps(x, dataset="mpii")
    assert model.training  # restored
    model.eval()
    with torch.no_grad():
        ref = model(x, torch.tensor([2, 2]))["heatmaps"][2]
    torch.testing.assert_close(hm, ref)
    with pytest.raises(PosebhError, match="no dataset 'ap10k'"):
        model.heatmaps(x, dataset="ap10k")


def test_split_equals_expert_model(model):
    x = torch.randn(2, 3, *SIZE)
    single = model.split("aic")
    assert single.backbone.num_experts == 0 and single.datasets == ["aic"]
    assert single.backbone.blocks[0].mlp.fc2.out_features == 192
    torch.testing.assert_close(single.heatmaps(x), model.heatmaps(x, dataset="aic"), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(single.prototypes.prototypes, model.prototypes.prototypes[17:31])
    with torch.no_grad():
        emb_single = single(x, with_embedding=True)["embeddings"]
        emb_model = model(x, torch.tensor([1, 1]), with_embedding=True)["embeddings"]
    torch.testing.assert_close(emb_single, emb_model, atol=1e-5, rtol=1e-5)


def test_prototype_bank():
    bank = PrototypeBank(5, 3, 8)
    assert not bank.prototypes.requires_grad and list(bank.parameters()) == []
    torch.testing.assert_close(bank.prototypes.norm(dim=-1), torch.ones(5, 3))
    emb = torch.zeros(1, 8, 2, 2)
    emb[0, :, 0, 0] = bank.prototypes[3, 1] * 5  # the length does not matter: cosine
    hm = bank.heatmaps(emb)
    assert hm.shape == (1, 5, 2, 2)
    assert hm[0, 3, 0, 0] == pytest.approx(1.0, abs=1e-6)
    logits = bank.logits(emb.flatten(2).transpose(1, 2)[0])
    assert logits.shape == (4, 5, 3) and logits[0, 3, 1] == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(bank.heatmaps(emb, slice(3, 5)), hm[:, 3:5])


def test_config_round_trip():
    m = PoseModel("vit_pico", ["coco"], skeletons(["coco"]), img_size=(128, 96), drop_path_rate=0.05)
    import json

    cfg = ModelConfig.from_dict(json.loads(json.dumps(m.config.to_dict())))
    assert cfg == m.config and cfg.img_size == (128, 96) and cfg.num_experts == 0
    with pytest.raises(PosebhError, match="unknown key"):
        ModelConfig.from_dict({**m.config.to_dict(), "depth": 3})


def test_construction_errors():
    with pytest.raises(PosebhError):
        PoseModel("vit_pico", ["coco", "aic"], skeletons(["coco"]))
    with pytest.raises(PosebhError):
        PoseModel("vit_pico", ["coco", "aic"], skeletons(["coco", "aic"]), num_experts=3)


def test_head_channels_narrow_heads_round_trip(tmp_path):
    from posebh_cli.models.checkpoint import load_model, save_checkpoint
    from posebh_cli.skeletons import load_skeleton

    skeletons = [load_skeleton("coco"), load_skeleton("mpii")]
    model = PoseModel("vit_pico", ["coco", "mpii"], skeletons, with_embedding=True, img_size=(128, 96),
                      head_channels=32).eval()
    assert model.heads[0].final_layer.in_channels == 32
    assert model.embedding.deconv_layers[0].out_channels == 32
    images = torch.randn(2, 3, 128, 96)
    out = model(images, torch.tensor([0, 1]), with_embedding=True)
    assert out["heatmaps"][1].shape == (2, 16, 32, 24) and out["embeddings"].shape == (2, 64, 32, 24)
    save_checkpoint(model, tmp_path / "ckpt")
    again = load_model(tmp_path / "ckpt")
    assert again.config.head_channels == 32
    assert torch.equal(again(images, torch.tensor([0, 1]))["heatmaps"][0], model(images, torch.tensor([0, 1]))["heatmaps"][0])
    single = model.split("mpii")
    assert single.config.head_channels == 32 and single.heads[0].final_layer.in_channels == 32
