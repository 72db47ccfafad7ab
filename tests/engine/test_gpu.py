"""On a CUDA GPU: training and inference there agree with the CPU. Skipped on machines without one (CI); run on
a GPU machine with `python -m pytest -q tests/test_gpu.py` and recorded in docs/benchmarks.md."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.models.checkpoint import load_model
from posebh_cli.models.store import builtin_models

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _heatmaps(model, images, dataset_idx, device, dtype=None):
    model = model.to(device)
    with torch.no_grad(), torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
        out = model(images.to(device), dataset_idx.to(device), heads="own")["heatmaps"]
    return [h.float().cpu() for h in out]


def test_the_shipped_base_computes_the_same_heatmaps_on_the_gpu():
    model = load_model(builtin_models()["zoo-base"])
    h, w = model.config.img_size
    images = torch.randn(6, 3, h, w, generator=torch.Generator().manual_seed(0))
    dataset_idx = torch.arange(6)   # one crop per dataset, each with its own head and expert
    on_cpu = _heatmaps(model, images, dataset_idx, "cpu")
    in_fp32 = _heatmaps(model, images, dataset_idx, "cuda")
    in_bf16 = _heatmaps(model, images, dataset_idx, "cuda", torch.bfloat16)
    for d, (cpu, gpu, half) in enumerate(zip(on_cpu, in_fp32, in_bf16)):
        cpu, gpu, half = cpu[d], gpu[d], half[d]
        scale = cpu.abs().max()
        assert (gpu - cpu).abs().max() <= 2e-3 * scale    # TF32 matmuls are allowed a little
        assert torch.corrcoef(torch.stack([half.flatten(), cpu.flatten()]))[0, 1] > 0.99
        # the peak of every keypoint's heatmap lies within one heatmap pixel of the CPU's
        assert (_peaks(gpu) - _peaks(cpu)).abs().max() <= 1


def _peaks(heatmaps):
    """(row, column) of each [K, H, W] heatmap's maximum."""
    index = heatmaps.flatten(1).argmax(1)
    return torch.stack([index // heatmaps.shape[-1], index % heatmaps.shape[-1]], 1)


def test_train_mdt_on_the_gpu_in_bf16_writes_a_model_the_cpu_loads(tiny, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train-mdt", "--recipe", str(tiny), "--out", str(run), "--device", "cuda",
                                      "--set", "train.mixed_precision=bf16"])
    assert result.exit_code == 0, result.output
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in logged if "loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    model = load_model(run)   # the CPU
    assert next(model.parameters()).device.type == "cpu"
