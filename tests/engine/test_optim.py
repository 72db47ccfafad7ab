"""Layer-wise lr decay groups, weight-decay exclusions, warmup and stage lr."""
import pytest
import torch
from torch import nn

from posebh_cli.engine.optim import build_optimizer, layer_id, lr_at, param_groups, set_lr, warmup_factor
from posebh_cli.recipe import StageSpec, TrainSpec


class TinyBackbone(nn.Module):
    def __init__(self, depth: int = 3):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))
        self.patch_embed = nn.Conv2d(3, 8, 4)
        self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(depth))
        self.last_norm = nn.LayerNorm(8)


class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = TinyBackbone()
        self.heads = nn.ModuleList([nn.Conv2d(8, 5, 1)])
        self.frozen = nn.Parameter(torch.zeros(3), requires_grad=False)


def _groups(model, decay=0.5):
    return {name: g for g in param_groups(model, 0.1, decay) for name in g["names"]}


def test_layer_ids_follow_vitpose():
    assert layer_id("backbone.pos_embed", 12) == 0
    assert layer_id("backbone.patch_embed.proj.weight", 12) == 0
    assert layer_id("backbone.blocks.0.attn.qkv.weight", 12) == 1
    assert layer_id("backbone.blocks.11.mlp.fc2.bias", 12) == 12
    assert layer_id("backbone.last_norm.weight", 12) == 13
    assert layer_id("heads.3.final_layer.weight", 12) == 13


def test_groups_scale_decay_and_skip_frozen():
    groups = _groups(TinyModel(), decay=0.5)  # L = 3
    assert groups["backbone.pos_embed"]["lr_scale"] == 0.5 ** 4
    assert groups["backbone.patch_embed.weight"]["lr_scale"] == 0.5 ** 4
    assert groups["backbone.blocks.0.weight"]["lr_scale"] == 0.5 ** 3
    assert groups["backbone.blocks.2.weight"]["lr_scale"] == 0.5
    assert groups["heads.0.weight"]["lr_scale"] == 1.0
    assert groups["backbone.last_norm.weight"]["lr_scale"] == 1.0
    # no weight decay on pos_embed, biases and 1-D params
    assert groups["backbone.pos_embed"]["weight_decay"] == 0.0
    assert groups["backbone.blocks.1.bias"]["weight_decay"] == 0.0
    assert groups["backbone.last_norm.weight"]["weight_decay"] == 0.0
    assert groups["backbone.blocks.1.weight"]["weight_decay"] == 0.1
    assert groups["heads.0.weight"]["weight_decay"] == 0.1
    assert "frozen" not in groups


def test_set_lr_applies_scale_and_adam_choice():
    model = TinyModel()
    opt = build_optimizer(model, TrainSpec(batch_size=1, epochs=1, lr=1e-3, layer_decay=0.5))
    assert isinstance(opt, torch.optim.AdamW)
    set_lr(opt, 1e-3)
    lrs = {name: g["lr"] for g in opt.param_groups for name in g["names"]}
    assert lrs["heads.0.weight"] == pytest.approx(1e-3)
    assert lrs["backbone.blocks.0.weight"] == pytest.approx(1e-3 * 0.125)
    adam = build_optimizer(model, TrainSpec(batch_size=1, epochs=1, lr=1e-3, optimizer="adam", weight_decay=0.0))
    assert type(adam) is torch.optim.Adam
    assert all(g["lr_scale"] == 1.0 for g in adam.param_groups)


def test_warmup_then_piecewise_constant_stage_lr():
    train = TrainSpec(batch_size=1, epochs=100, lr=1e-3, warmup_iters=500, warmup_ratio=0.001)
    stages = [StageSpec("a", (0, 50), 1e-3), StageSpec("b", (50, 90), 1e-4), StageSpec("c", (90, 100), 1e-5)]
    assert warmup_factor(0, 500, 0.001) == pytest.approx(0.001)
    assert warmup_factor(250, 500, 0.001) == pytest.approx(0.001 + 0.999 * 0.5)
    assert lr_at(0, 0, stages, train) == pytest.approx(1e-6)
    assert lr_at(500, 0, stages, train) == pytest.approx(1e-3)
    assert lr_at(10_000, 49, stages, train) == pytest.approx(1e-3)
    assert lr_at(10_000, 50, stages, train) == pytest.approx(1e-4)
    assert lr_at(10_000, 89, stages, train) == pytest.approx(1e-4)
    assert lr_at(10_000, 90, stages, train) == pytest.approx(1e-5)
    assert lr_at(10_000, 99, stages, train) == pytest.approx(1e-5)
