import argparse
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from posebh_cli import load_model
from posebh_cli.cli import app
from posebh_cli.errors import PosebhError
from posebh_cli.models.checkpoint import save_checkpoint
from posebh_cli.models.pose_model import state_mismatch
from posebh_cli.models.official import convert_official_state
from posebh_cli.models.pose_model import PoseModel

from model_builders import SIX, SIX_K, official_state, randomize_, skeletons

runner = CliRunner()


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_round_trip_is_exact(tmp_path):
    model = randomize_(PoseModel("vit_pico", ["coco", "ap10k"], skeletons(["coco", "ap10k"]), with_embedding=True,
                                 img_size=(64, 48)))
    save_checkpoint(model, tmp_path / "run", recipe={"name": "tiny"}, extra={"epoch": 3})
    (tmp_path / "run" / "log.txt").write_text("kept")
    save_checkpoint(model, tmp_path / "run")  # overwriting keeps other files and leaves no temp files
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["log.txt", "model.json", "model.safetensors"]
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["format_version"] == 1 and meta["datasets"] == ["coco", "ap10k"]
    assert meta["skeletons"][1]["keypoints"] == list(skeletons(["ap10k"])[0].keypoints)
    loaded = load_model(tmp_path / "run")
    assert not loaded.training and loaded.config == model.config
    assert meta["prototype_abs_similarity"] is False and not getattr(loaded.prototypes, "abs_similarity", False)
    assert [s.to_dict() for s in loaded.skeletons] == [s.to_dict() for s in model.skeletons]
    assert_same_state(model, loaded)
    # A lone .safetensors file carries its own description.
    lone = tmp_path / "lone.safetensors"
    (tmp_path / "run" / "model.safetensors").rename(lone)
    assert_same_state(model, load_model(lone))


def test_convert_to_single_file_with_split(tmp_path):
    model = randomize_(PoseModel("vit_pico", ["coco", "mpii"], skeletons(["coco", "mpii"]), img_size=(64, 48)))
    save_checkpoint(model, tmp_path / "run")
    result = runner.invoke(app, ["convert-checkpoint", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "mpii.safetensors"),
                                 "--split", "mpii"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mpii.safetensors", "run"]
    single = load_model(tmp_path / "mpii.safetensors")
    assert single.datasets == ["mpii"] and single.backbone.num_experts == 0
    x = torch.randn(2, 3, 64, 48)
    torch.testing.assert_close(single.heatmaps(x), model.eval().heatmaps(x, dataset="mpii"), atol=1e-5, rtol=1e-5)


def test_bad_checkpoints(tmp_path):
    torch.save({"state_dict": {"conv.weight": torch.zeros(3)}}, tmp_path / "foreign.pth")
    with pytest.raises(PosebhError, match=r"foreign\.pth: .*patch_embed"):
        load_model(tmp_path / "foreign.pth")
    (tmp_path / "junk.pth").write_bytes(b"\x00garbage")
    with pytest.raises(PosebhError, match=r"junk\.pth: cannot read"):
        load_model(tmp_path / "junk.pth")
    # Arbitrary Python objects are never unpickled.
    torch.save({"state_dict": {}, "meta": argparse.Namespace(a=1)}, tmp_path / "objects.pth")
    with pytest.raises(PosebhError, match=r"objects\.pth: cannot read"):
        load_model(tmp_path / "objects.pth")
    with pytest.raises(PosebhError, match="not found"):
        load_model(tmp_path / "missing")
    # One tensor dropped and one of the wrong shape: a one-line report naming both.
    state = official_state(192, 4, 48)
    del state["backbone.blocks.1.attn.proj.bias"]
    state["backbone.blocks.0.mlp.fc1.bias"] = torch.zeros(5)
    state["neck.extra"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "broken.pth")
    with pytest.raises(PosebhError) as err:
        load_model(tmp_path / "broken.pth")
    msg = str(err.value)
    assert "\n" not in msg and "missing 1: backbone.blocks.1.attn.proj.bias" in msg
    assert "unexpected 1: neck.extra" in msg and "backbone.blocks.0.mlp.fc1.bias (5,) != (768,)" in msg


@pytest.mark.parametrize("posebh", [False, True], ids=["vitpose++", "posebh"])
def test_official_base_keys_match_exactly(posebh):
    """Every official ViTPose++-B / PoseBH-B key and shape has its place in our model (checked on meta)."""
    state = official_state(768, 12, 192, posebh=posebh, device="meta")
    config, sks, mapped = convert_official_state(state, "vitpose+_base.pth")
    assert config.arch == "vit_base" and config.num_experts == 6 and config.img_size == (256, 192)
    assert config.datasets == SIX and config.with_embedding == posebh
    with torch.device("meta"):
        model = PoseModel.from_config(config, sks)
    assert state_mismatch(model, mapped) == ""
    dropped = set(state) - {k for k in state if not k.startswith("proto_head.cluster_prototype.")}
    assert len(mapped) == len(state) - len(dropped)


@pytest.mark.parametrize("posebh", [False, True], ids=["vitpose++", "posebh"])
def test_official_file_loads_and_converts(tmp_path, posebh):
    torch.manual_seed(0)
    state = official_state(192, 4, 48, posebh=posebh)  # vit_pico widths, full official layout
    meta = {"epoch": 100, "mmcv_version": "1.4.8", "seed": np.int64(0)}  # numpy data in meta is fine
    torch.save({"state_dict": state, "meta": meta}, tmp_path / "plus.pth")
    model = load_model(tmp_path / "plus.pth")
    assert model.datasets == SIX and [s.num_keypoints for s in model.skeletons] == SIX_K
    assert torch.equal(model.backbone.blocks[2].mlp.experts[4].weight, state["backbone.blocks.2.mlp.experts.4.weight"])
    assert torch.equal(model.heads[5].final_layer.weight, state["associate_keypoint_heads.4.final_layer.weight"])
    if posebh:
        assert torch.equal(model.prototypes.prototypes, state["proto_head.kpt_prototype.prototypes"])
        assert model.prototypes.abs_similarity is True  # released banks are scored with |cos|
        assert torch.equal(model.embedding.neck.downsample[1].running_var,
                           state["proto_head.neck.downsample.1.running_var"])

    result = runner.invoke(app, ["convert-checkpoint", "--checkpoint", str(tmp_path / "plus.pth"), "--out", str(tmp_path / "ours")])
    assert result.exit_code == 0, result.output
    converted = load_model(tmp_path / "ours")
    assert_same_state(model, converted)
    if posebh:  # the |cos| flag of a released bank survives conversion (signs are aligned only by training)
        assert converted.prototypes.abs_similarity is True

    result = runner.invoke(app, ["convert-checkpoint", "--checkpoint", str(tmp_path / "plus.pth"), "--out", str(tmp_path / "ap10k"),
                                 "--split", "ap10k"])
    assert result.exit_code == 0, result.output
    single = load_model(tmp_path / "ap10k")
    assert single.datasets == ["ap10k"] and single.backbone.num_experts == 0
    fc2 = torch.cat([state["backbone.blocks.1.mlp.fc2.weight"], state["backbone.blocks.1.mlp.experts.3.weight"]])
    assert torch.equal(single.backbone.blocks[1].mlp.fc2.weight, fc2)
    x = torch.randn(1, 3, 256, 192)
    torch.testing.assert_close(single.heatmaps(x), model.heatmaps(x, dataset="ap10k"), atol=1e-5, rtol=1e-5)


def test_official_single_dataset_split_file(tmp_path):
    """model_split.py output: dense fc2 with the stale expert tensors left in (an upstream bug) -> plain model."""
    state = official_state(192, 4, 48, head_k=[17])
    for i in range(4):
        b = f"backbone.blocks.{i}.mlp"
        state[f"{b}.fc2.weight"] = torch.cat([state[f"{b}.fc2.weight"], state[f"{b}.experts.0.weight"]])
        state[f"{b}.fc2.bias"] = torch.cat([state[f"{b}.fc2.bias"], state[f"{b}.experts.0.bias"]])
    torch.save({"state_dict": state}, tmp_path / "coco.pth")
    model = load_model(tmp_path / "coco.pth")
    assert model.datasets == ["coco"] and model.backbone.num_experts == 0


def test_convert_errors_are_one_line(tmp_path):
    torch.save({"weights": [1, 2]}, tmp_path / "odd.pth")
    result = runner.invoke(app, ["convert-checkpoint", "--checkpoint", str(tmp_path / "odd.pth"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "odd.pth" in result.output
    assert not (tmp_path / "out").exists()
    state = official_state(192, 4, 48)
    torch.save({"state_dict": state}, tmp_path / "plus.pth")
    result = runner.invoke(app, ["convert-checkpoint", "--checkpoint", str(tmp_path / "plus.pth"), "--out", str(tmp_path / "out"),
                                 "--split", "horse"])
    assert result.exit_code == 2 and "no dataset 'horse'" in result.output
    assert not (tmp_path / "out").exists()


def test_official_posebh_base_file_end_to_end(tmp_path):
    """A full-size PoseBH-B file (official names and shapes, random values): load_model and convert-checkpoint."""
    state = official_state(768, 12, 192, posebh=True)
    torch.save({"state_dict": state}, tmp_path / "posebh_base.pth")
    model = load_model(tmp_path / "posebh_base.pth")
    assert model.config.arch == "vit_base" and model.datasets == SIX and model.prototypes.prototypes.shape == (214, 3, 64)
    assert torch.equal(model.backbone.blocks[11].mlp.experts[5].bias, state["backbone.blocks.11.mlp.experts.5.bias"])
    del state, model
    result = runner.invoke(app, ["convert-checkpoint", "--checkpoint", str(tmp_path / "posebh_base.pth"), "--out", str(tmp_path / "coco"),
                                 "--split", "coco"])
    assert result.exit_code == 0, result.output
    single = load_model(tmp_path / "coco")
    assert single.prototypes.prototypes.shape == (17, 3, 64)
    # ViTPose-B size once the COCO expert is merged: 90.0 M without the embedding net.
    plain = sum(p.numel() for p in single.parameters()) - sum(p.numel() for p in single.embedding.parameters())
    assert plain == pytest.approx(90.0e6, rel=2e-3)


def test_head_channels_of_reads_the_width_without_loading_weights(tmp_path):
    from posebh_cli.models.checkpoint import head_channels_of, save_checkpoint
    from posebh_cli.models.pose_model import PoseModel
    from posebh_cli.skeletons import load_skeleton

    model = PoseModel("vit_pico", ["coco"], [load_skeleton("coco")], img_size=(64, 48), head_channels=32)
    save_checkpoint(model, tmp_path / "ckpt")
    assert head_channels_of(tmp_path / "ckpt") == 32
    assert head_channels_of(tmp_path / "ckpt" / "model.safetensors") == 32
    assert head_channels_of(tmp_path / "official.pth") == 256  # official heads are ViTPose's 256 channels


def test_init_from_a_released_posebh_file_keeps_the_abs_similarity_flag(tmp_path):
    # init.kind: posebh copies the bank; its signs are still the released ones, so the flag must travel with it.
    from posebh_cli.models.build import init_from_checkpoint

    torch.manual_seed(0)
    state = official_state(192, 4, 48, posebh=True)
    torch.save({"state_dict": state}, tmp_path / "posebh.pth")
    source = load_model(tmp_path / "posebh.pth")
    model = PoseModel.from_config(source.config, source.skeletons)
    assert not getattr(model.prototypes, "abs_similarity", False)
    init_from_checkpoint(model, tmp_path / "posebh.pth")
    assert torch.equal(model.prototypes.prototypes, state["proto_head.kpt_prototype.prototypes"])
    assert model.prototypes.abs_similarity is True
