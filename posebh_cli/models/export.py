"""Export one dataset's model (experts merged) to ONNX or TorchScript, with a parity check against PyTorch.

The exported graph maps ImageNet-normalised crops [B, 3, H, W] to heatmaps [B, K, H/4, W/4].
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import atomic_file
from posebh_cli.models.pose_model import PoseModel

FORMATS = ("onnx", "torchscript")


class HeatmapModule(nn.Module):
    """A single-dataset PoseModel as images -> heatmaps, with no dicts or optional inputs (export-friendly)."""

    def __init__(self, model: PoseModel):
        super().__init__()
        if model.backbone.num_experts or len(model.datasets) != 1:
            raise ValueError("HeatmapModule needs a single-dataset model without experts (use PoseModel.split)")
        self.backbone = model.backbone
        self.head = model.heads[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


@dataclass
class ExportResult:
    path: Path
    dataset: str
    num_keypoints: int
    max_abs_diff: float


def export_model(checkpoint: str | Path, dataset: str, fmt: str, out: str | Path, tolerance: float = 1e-3,
                 batch_size: int = 2, seed: int = 0, device: str = "cpu") -> ExportResult:
    """Export `dataset`'s heatmap model from `checkpoint` to `out`; fails (writing nothing) if parity is off.

    The trace and the PyTorch reference run on `device`; ONNX Runtime checks on the CPU.
    """
    from posebh_cli.models.checkpoint import load_model

    if fmt not in FORMATS:
        raise PosebhError(f"unknown export format '{fmt}'; choose from {', '.join(FORMATS)}")
    out = Path(out)
    model = load_model(checkpoint)
    model.dataset_index(dataset)  # a PosebhError naming the model's datasets if unknown
    single = model if (len(model.datasets) == 1 and not model.backbone.num_experts) else model.split(dataset)
    module = HeatmapModule(single.eval()).eval().to(device)

    h, w = single.config.img_size
    images = torch.randn(batch_size, 3, h, w, generator=torch.Generator().manual_seed(seed))
    images = images.to(device)
    with torch.no_grad():
        expected = module(images).cpu()

    with atomic_file(out) as tmp:  # a file that fails the parity check never appears at `out`
        if fmt == "onnx":
            _export_onnx(module, images, tmp)
            got = _run_onnx(tmp, images)
        else:
            _export_torchscript(module, images, tmp)
            got = _run_torchscript(tmp, images)
        diff = float((got.cpu() - expected).abs().max())
        if not diff <= tolerance:
            raise input_error(out, f"parity check failed: max abs difference {diff:.3g} > {tolerance:g}")
    return ExportResult(out, dataset, single.skeletons[0].num_keypoints, diff)


def _export_onnx(module: nn.Module, images: torch.Tensor, path: Path) -> None:
    # The TorchScript-based exporter needs no onnxscript; SDPA maps to plain MatMul/Softmax at opset 17.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (images,), str(path), input_names=["images"], output_names=["heatmaps"],
                          dynamic_axes={"images": {0: "batch"}, "heatmaps": {0: "batch"}}, opset_version=17,
                          dynamo=False)


def _run_onnx(path: Path, images: torch.Tensor) -> torch.Tensor:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (heatmaps,) = session.run(["heatmaps"], {"images": images.cpu().numpy()})
    return torch.from_numpy(heatmaps)


def _run_torchscript(path: Path, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location=images.device).eval()(images)


def _export_torchscript(module: nn.Module, images: torch.Tensor, path: Path) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, (images,), check_trace=False)
    traced.save(str(path))
