"""The multi-head baseline loss on a hand-made batch: masking, padding and normalisation."""
import pytest
import torch
from torch import nn

from posebh_cli.recipe import DatasetSpec, StageSpec
from posebh_cli.errors import PosebhError
from posebh_cli.methods import METHODS
from posebh_cli.methods.multihead import MultiHead, masked_joints_mse

STAGE = StageSpec("all", (0, 1), 1e-3, losses=("heatmap",))


class FixedHeads(nn.Module):
    """Returns given per-dataset heatmaps and records how it was called."""

    def __init__(self, heatmaps):
        super().__init__()
        self.heatmaps = heatmaps
        self.calls = []

    def forward(self, images, dataset_idx, heads="all", with_embedding=False):
        self.calls.append(heads)
        return {"heatmaps": self.heatmaps}


def _batch():
    # 3 samples: dataset 0 (K=2), dataset 1 (K=3), dataset 0; targets padded to Kmax=3
    heatmaps = torch.zeros(3, 3, 2, 2)
    weight = torch.ones(3, 3)
    weight[0, 2] = weight[2, 2] = 0.0  # padding rows of the K=2 samples
    weight[2, 1] = 0.0  # an invisible joint
    return {"images": torch.zeros(3, 3, 8, 8), "heatmaps": heatmaps, "target_weight": weight,
            "dataset_idx": torch.tensor([0, 1, 0])}


def test_each_head_sees_only_its_samples_batch_normalised():
    batch = _batch()
    pred0 = torch.zeros(3, 2, 2, 2)
    pred0[0] = 1.0  # own sample, both joints visible: 2 joints x 4 px of error 1
    pred0[1] = 5.0  # a dataset-1 sample: must not count
    pred0[2, 1] = 3.0  # own sample but invisible joint: weight 0
    pred1 = torch.zeros(3, 3, 2, 2)
    pred1[1, 0] = 2.0  # own sample: 4 px of error 4
    pred1[0] = 7.0  # other dataset: ignored
    model = FixedHeads([pred0, pred1])
    datasets = [DatasetSpec("a", "x"), DatasetSpec("b", "y")]
    losses = MultiHead(model, datasets, {}, None).losses(batch, STAGE)
    assert model.calls == ["own"]
    # official: divide by the whole batch (B=3) x K x h x w
    assert losses["heatmap/a"].item() == pytest.approx(8.0 / (3 * 2 * 4))
    assert losses["heatmap/b"].item() == pytest.approx(16.0 / (3 * 3 * 4))
    per_dataset = MultiHead(model, datasets, {"normalize": "dataset", "heads": "all"}, None).losses(batch, STAGE)
    assert model.calls[-1] == "all"
    assert per_dataset["heatmap/a"].item() == pytest.approx(8.0 / (2 * 2 * 4))
    assert per_dataset["heatmap/b"].item() == pytest.approx(16.0 / (1 * 3 * 4))


def test_absent_dataset_gives_no_term_and_gradients_stay_masked():
    batch = _batch()
    batch["dataset_idx"] = torch.tensor([0, 0, 0])
    pred0 = torch.ones(3, 2, 2, 2, requires_grad=True)
    pred1 = torch.ones(3, 3, 2, 2, requires_grad=True)
    losses = MultiHead(FixedHeads([pred0, pred1]), [DatasetSpec("a", "x"), DatasetSpec("b", "y")], {}, None)\
        .losses(batch, STAGE)
    assert set(losses) == {"heatmap/a"}
    losses["heatmap/a"].backward()
    assert pred0.grad[2, 1].abs().sum() == 0  # invisible joint gets no gradient
    assert pred0.grad[0].abs().sum() > 0


def test_masked_mse_matches_mmpose_definition():
    pred, target = torch.rand(4, 5, 3, 3), torch.rand(4, 5, 3, 3)
    weight = (torch.rand(4, 5) > 0.3).float()
    everyone = torch.ones(4, dtype=torch.bool)
    # mmpose 0.x JointsMSELoss: mean over joints of MSELoss(pred * w, gt * w)
    expected = sum(nn.functional.mse_loss(pred[:, k] * weight[:, k, None, None], target[:, k] * weight[:, k, None, None])
                   for k in range(5)) / 5
    assert masked_joints_mse(pred, target, weight, everyone).item() == pytest.approx(expected.item(), rel=1e-6)


def test_config_is_validated_and_registered():
    assert METHODS["multihead"] is MultiHead
    with pytest.raises(PosebhError, match="unknown key 'weights'"):
        MultiHead(None, [], {"weights": 1}, None)
    with pytest.raises(PosebhError, match="normalize"):
        MultiHead(None, [], {"normalize": "mean"}, None)
    with pytest.raises(PosebhError, match="cluster_prototypes"):
        MultiHead(None, [], {}, None).on_stage_start(StageSpec("s", (0, 1), 1e-3, on_start=("cluster_prototypes",)))
