"""Export one dataset's model (experts merged) to ONNX or TorchScript, with a parity check against PyTorch.

The exported graph maps ImageNet-normalised crops `images` [B, 3, H, W] to `heatmaps` [B, K, H/4, W/4]: those of a
dataset's head (optionally only some of its channels, in a given order), or the prototype heatmaps of a block of
rows of the prototype bank (a skeleton fitted by fit-prototypes, say) through one dataset's expert. An ONNX file
also carries the given `metadata` as its `metadata_props` (what `inference/onnx_model.py` writes and reads back);
the parity check runs the finished file, metadata included.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import atomic_file
from posebh_cli.models.pose_model import PoseModel

FORMATS = ("onnx", "torchscript")


class HeatmapModule(nn.Module):
    """A single-dataset PoseModel as images -> heatmaps, with no dicts or optional inputs (export-friendly)."""

    def __init__(self, model: PoseModel, channels: list[int] | None = None):
        super().__init__()
        _check_single(model)
        self.backbone = model.backbone
        self.head = model.heads[0]
        self.channels = None if channels is None else list(channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        heatmaps = self.head(self.backbone(images))
        return heatmaps if self.channels is None else heatmaps[:, self.channels]


class PrototypeHeatmapModule(nn.Module):
    """Images -> prototype heatmaps of some bank rows: the best cosine between each pixel embedding and a
    keypoint's prototypes (|cos| for a bank imported from the released code, as the Predictor scores it)."""

    def __init__(self, model: PoseModel, prototypes: torch.Tensor, abs_similarity: bool = False):
        super().__init__()
        _check_single(model)
        if model.embedding is None:
            raise ValueError("PrototypeHeatmapModule needs a model with the keypoint embedding")
        self.backbone = model.backbone
        self.embedding = model.embedding
        self.register_buffer("prototypes", prototypes.detach().clone())  # [K, M, F]
        self.abs_similarity = bool(abs_similarity)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        embeddings = F.normalize(self.embedding(self.backbone(images)), dim=1)
        cos = torch.einsum("bfhw,jmf->bjmhw", embeddings, self.prototypes)
        return (cos.abs() if self.abs_similarity else cos).amax(dim=2)


def _check_single(model: PoseModel) -> None:
    if model.backbone.num_experts or len(model.datasets) != 1:
        raise ValueError("export modules need a single-dataset model without experts (use PoseModel.split)")


@dataclass
class ExportResult:
    path: Path
    dataset: str            # the head's dataset, or the expert that runs the prototype rows
    num_keypoints: int
    max_abs_diff: float
    source: str = "head"    # "head" or "prototypes"
    name: str = ""          # what it predicts: the dataset, or the bank entry of the prototype skeleton


def export_model(checkpoint: str | Path | PoseModel, dataset: str, fmt: str, out: str | Path,
                 tolerance: float = 1e-3, batch_size: int = 2, seed: int = 0, device: str = "cpu",
                 channels: list[int] | None = None, prototype_rows: tuple[int, int] | None = None,
                 metadata: dict[str, str] | None = None) -> ExportResult:
    """Export `dataset`'s heatmap model from `checkpoint` (a path or a PoseModel) to `out`; fails (writing
    nothing) if parity is off.

    `channels` keeps those head channels, in that order; `prototype_rows` (start, stop) exports the prototype
    heatmaps of those bank rows instead of the head (through `dataset`'s expert). `metadata` goes into an ONNX
    file's `metadata_props`. The trace and the PyTorch reference run on `device`; ONNX Runtime checks on the CPU.
    """
    from posebh_cli.models.checkpoint import load_model

    if fmt not in FORMATS:
        raise PosebhError(f"unknown export format '{fmt}'; choose from {', '.join(FORMATS)}")
    out = Path(out)
    model = checkpoint if isinstance(checkpoint, PoseModel) else load_model(checkpoint)
    model.dataset_index(dataset)  # a PosebhError naming the model's datasets if unknown
    single = model if (len(model.datasets) == 1 and not model.backbone.num_experts) else model.split(dataset)
    single.eval()
    if prototype_rows is None:
        module = HeatmapModule(single, channels)
        num_keypoints = single.skeletons[0].num_keypoints if channels is None else len(channels)
    else:
        if model.prototypes is None or model.embedding is None:
            raise PosebhError("this checkpoint has no prototype bank; export a head (drop --prototypes)")
        start, stop = prototype_rows
        bank = model.prototypes
        module = PrototypeHeatmapModule(single, bank.prototypes[start:stop], getattr(bank, "abs_similarity", False))
        num_keypoints = stop - start
    module = module.eval().to(device)

    h, w = single.config.img_size
    images = torch.randn(batch_size, 3, h, w, generator=torch.Generator().manual_seed(seed))
    images = images.to(device)
    with torch.no_grad():
        expected = module(images).cpu()

    with atomic_file(out) as tmp:  # a file that fails the parity check never appears at `out`
        if fmt == "onnx":
            _export_onnx(module, images, tmp)
            if metadata:
                _write_onnx_metadata(tmp, metadata)
            got = _run_onnx(tmp, images)
        else:
            _export_torchscript(module, images, tmp)
            got = _run_torchscript(tmp, images)
        diff = float((got.cpu() - expected).abs().max())
        if not diff <= tolerance:
            raise input_error(out, f"parity check failed: max abs difference {diff:.3g} > {tolerance:g}")
    source = "head" if prototype_rows is None else "prototypes"
    return ExportResult(out, dataset, num_keypoints, diff, source, name=dataset)


def _export_onnx(module: nn.Module, images: torch.Tensor, path: Path) -> None:
    # The TorchScript-based exporter needs no onnxscript; SDPA maps to plain MatMul/Softmax at opset 17.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (images,), str(path), input_names=["images"], output_names=["heatmaps"],
                          dynamic_axes={"images": {0: "batch"}, "heatmaps": {0: "batch"}}, opset_version=17,
                          dynamo=False)


def _write_onnx_metadata(path: Path, metadata: dict[str, str]) -> None:
    try:
        import onnx
    except ImportError:
        raise PosebhError("exporting ONNX metadata needs the onnx package: pip install 'posebh[onnx]'") from None
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    onnx.save(proto, str(path))


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
