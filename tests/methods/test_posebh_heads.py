"""PoseBH runs each head on its own rows unless CSS needs every head on every row (a speed choice, issue 9)."""
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from posebh_cli.data.codecs import gaussian_heatmaps
from posebh_cli.errors import PosebhError
from posebh_cli.methods.posebh import PoseBH
from posebh_cli.models.prototypes import PrototypeBank

SIZES = (2, 3)
H, W = 16, 12


class RecordingModel(nn.Module):
    """1x1 convs with the PoseModel interface; records the `heads` argument of every call."""

    def __init__(self):
        super().__init__()
        self.datasets = ["d0", "d1"]
        self.keypoint_offsets = [0, SIZES[0]]
        self.prototypes = PrototypeBank(sum(SIZES), 3, 8)
        self.embed = nn.Conv2d(3, 8, 1)
        self.heads = nn.ModuleList(nn.Conv2d(3, k, 1) for k in SIZES)
        self.calls = []

    def forward(self, images, dataset_idx, heads="all", with_embedding=False):
        self.calls.append(heads)
        x = F.adaptive_avg_pool2d(images, (H, W))
        out = {"heatmaps": [head(x) for head in self.heads]}
        if with_embedding:
            out["embeddings"] = F.normalize(self.embed(x), dim=1)
        return out


@dataclass
class Stage:
    losses: tuple
    name: str = "s"
    prototypes: str = "frozen"
    on_start: tuple = ()


def _batch():
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(2, 3, 2, generator=g) * torch.tensor([W - 1.0, H - 1.0])
    visible = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    heatmaps, weight = gaussian_heatmaps(centres, visible, (W, H), 2.0, subpixel=False)
    return {"images": torch.randn(2, 3, 32, 24, generator=g), "heatmaps": heatmaps, "target_weight": weight,
            "dataset_idx": torch.tensor([0, 1]), "keypoints": torch.zeros(2, 3, 3), "meta": [{}, {}]}


def _method(config):
    torch.manual_seed(0)
    model = RecordingModel()
    return PoseBH(model, [SimpleNamespace(name=n) for n in model.datasets], config, accelerator=None), model


@pytest.mark.parametrize("config, losses, expected", [
    ({}, ("heatmap", "proto", "proto_heatmap"), "own"),
    ({}, ("heatmap", "proto", "proto_heatmap", "css"), "all"),
    ({"heads": "all"}, ("heatmap", "proto"), "all"),
])
def test_heads_argument(config, losses, expected):
    method, model = _method(config)
    terms = method.losses(_batch(), Stage(losses=losses))
    assert model.calls == [expected]
    assert "heatmap/d0" in terms and "heatmap/d1" in terms


def test_bad_heads_value_names_the_key():
    with pytest.raises(PosebhError, match="method_config.heads"):
        _method({"heads": "some"})
