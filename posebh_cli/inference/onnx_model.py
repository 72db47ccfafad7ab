"""Exported pose models under ONNX Runtime: the posebh metadata of an ONNX file, and the heatmap function it runs.

`posebh export` writes a graph from ImageNet-normalised crops `images` [B, 3, H, W] to `heatmaps` [B, K, h, w] of one
skeleton (a dataset's head, or a prototype-bank skeleton's prototype heatmaps). Beside it, in the file's
`metadata_props`, goes everything the pre- and post-processing needs, so the file alone is a complete predictor:

- "posebh": one JSON object (`METADATA_FORMAT`): `posebh_version`, `source` ("head" | "prototypes"), `name` (dataset or
  bank entry), `skeleton` (the full skeleton: names, flip pairs, sigmas, links), `keypoint_names`, `flip_indices`,
  `sigmas` (for OKS-NMS and rescoring), `input_size` and `heatmap_size` ([w, h]), `mean` / `std` (RGB in [0, 1]),
  `box_padding`, `codec` (`codec_spec`: name, sizes, sigma, the sub-pixel step it decodes with, and whether the
  mirrored maps of the flip test are shifted one pixel), `flip_test` (false for a model trained without mirrored
  crops; a file without it means true), `input` / `output` (tensor names);
- a few flat keys for a quick look (`posebh.skeleton`, `posebh.keypoints`, `posebh.input_size`, `posebh.codec`,
  `posebh.source`, `posebh.version`).

`OnnxHeatmaps` opens such a file and is the heatmap function the `Predictor` runs instead of a PoseModel, so crops,
normalisation, flip test, decoding, back-projection and rescoring are the torch path's own code.

`open_session` is THE place that picks ONNX Runtime's execution provider (the pose model's and the box detector's):
`--device cpu` runs the CPU provider, `cuda` / `cuda:N` asks for CUDA (device N) and falls back to the CPU with one
warning line when onnxruntime cannot run it, and no device takes CUDA when this onnxruntime offers it, silently.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from posebh_cli.data.codecs import make_codec
from posebh_cli.data.dataset import IMAGENET_MEAN, IMAGENET_STD
from posebh_cli.errors import PosebhError, input_error
from posebh_cli.skeletons import Skeleton, skeleton_from_dict

METADATA_KEY = "posebh"
METADATA_FORMAT = 1
INPUT_NAME, OUTPUT_NAME = "images", "heatmaps"
CPU_PROVIDER, CUDA_PROVIDER = "CPUExecutionProvider", "CUDAExecutionProvider"


def is_onnx(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


# ---------------------------------------------------------------- execution providers
def _providers(device: str | None, available: list[str]) -> tuple[list, bool]:
    """(providers to ask for, in preference order; whether the user asked for a GPU)."""
    if device is None:
        return ([CUDA_PROVIDER] if CUDA_PROVIDER in available else []) + [CPU_PROVIDER], False
    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return [CPU_PROVIDER], False
    if kind != "cuda" or (index and not index.isdigit()):
        raise PosebhError(f"--device: {device!r} is not a device ONNX Runtime can use (cpu, cuda, cuda:1, ...)")
    cuda = [(CUDA_PROVIDER, {"device_id": int(index or 0)})] if CUDA_PROVIDER in available else []
    return cuda + [CPU_PROVIDER], True


def open_session(path: str | Path, device: str | None = None, warn: Callable[[str], None] | None = None,
                 what: str = "ONNX model"):
    """An onnxruntime InferenceSession of `path` on `device`'s provider; a GPU asked for that cannot run is one
    `warn` line (the session then runs on the CPU). A missing or unreadable file is one PosebhError naming it."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise PosebhError(f"{path}: running an ONNX model needs onnxruntime: pip install 'posebh[onnx]'") from None
    path = Path(path)
    if not path.is_file():
        raise input_error(path, f"{what} not found")
    providers, asked_gpu = _providers(device, ort.get_available_providers())
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # A CUDA provider that fails to load (no cuDNN, say) is logged by onnxruntime's default logger in several
    # lines before it falls back to the CPU; the fallback is our one line, so that logger is quiet meanwhile
    # (onnxruntime has no getter: it goes back to its default, warnings).
    quiet = providers[0] != CPU_PROVIDER
    if quiet:
        ort.set_default_logger_severity(4)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its Python warning about a provider it lacks, likewise
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own error types for unreadable or invalid models
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise input_error(path, f"cannot load the {what} ({first})") from None
    finally:
        if quiet:
            ort.set_default_logger_severity(2)
    if asked_gpu and session.get_providers()[0] == CPU_PROVIDER and warn is not None:
        why = (f"onnxruntime's {CUDA_PROVIDER} did not start (are the CUDA and cuDNN libraries it needs installed?)"
               if CUDA_PROVIDER in ort.get_available_providers() else
               f"this onnxruntime has no {CUDA_PROVIDER} (pip install onnxruntime-gpu)")
        warn(f"--device {device}: {why}; running {path.name} on {CPU_PROVIDER}")
    return session


# ---------------------------------------------------------------- metadata
def codec_spec(codec) -> dict:
    """The codec as JSON: what `codec_from_spec` rebuilds it from, plus the decoding steps spelled out for readers."""
    spec = {"name": "udp" if codec.use_udp else "msra", "input_size": list(codec.input_size),
            "heatmap_size": list(codec.heatmap_size), "sigma": codec.sigma,
            "blur_kernel_size": codec.blur_kernel_size, "guarded_newton": codec.guarded_newton}
    if codec.use_udp:
        spec["refine"] = "dark_udp"  # argmax + mmpose 0.x post_dark_udp Newton step
    else:
        spec.update(unbiased=codec.unbiased, dark=codec.dark, refine="dark" if codec.dark else "quarter_offset")
    spec["flip_shift"] = not codec.use_udp  # the mirrored maps move one pixel right before averaging (MSRA)
    return spec


def codec_from_spec(spec: dict, path: str | Path):
    """The codec `codec_spec` described; a bad entry is one error naming the file and the field."""
    try:
        kwargs = {"input_size": tuple(int(v) for v in spec["input_size"]),
                  "heatmap_size": tuple(int(v) for v in spec["heatmap_size"]), "sigma": float(spec["sigma"]),
                  "blur_kernel_size": int(spec.get("blur_kernel_size", 11)),
                  "guarded_newton": bool(spec.get("guarded_newton", False))}
        if spec["name"] == "msra":
            kwargs.update(unbiased=bool(spec.get("unbiased", False)), dark=bool(spec.get("dark", False)))
        return make_codec(spec["name"], **kwargs)
    except (KeyError, TypeError, ValueError) as exc:
        raise input_error(path, f"bad codec description ({exc!r})", record=f"metadata '{METADATA_KEY}'",
                          field="codec") from None
    except PosebhError as exc:
        raise input_error(path, str(exc), record=f"metadata '{METADATA_KEY}'", field="codec") from None


def export_metadata(name: str, source: str, skeleton: Skeleton, codec, input_size: tuple[int, int],
                    box_padding: float, version: str, flip_test: bool = True) -> dict[str, str]:
    """The `metadata_props` of an exported pose model (string keys and values)."""
    meta = {"format": METADATA_FORMAT, "posebh_version": version, "source": source, "name": name,
            "skeleton": skeleton.to_dict(), "keypoint_names": list(skeleton.keypoints),
            "flip_indices": list(skeleton.flip_indices), "sigmas": list(skeleton.sigmas),
            "input_size": [int(v) for v in input_size], "heatmap_size": list(codec.heatmap_size),
            "mean": [float(v) for v in IMAGENET_MEAN], "std": [float(v) for v in IMAGENET_STD],
            "pixel_format": "RGB, [B, 3, H, W] float32: (pixel / 255 - mean) / std",
            "box_padding": float(box_padding), "codec": codec_spec(codec), "flip_test": bool(flip_test),
            "input": INPUT_NAME, "output": OUTPUT_NAME}
    width, height = input_size
    return {METADATA_KEY: json.dumps(meta), "posebh.version": version, "posebh.source": f"{source} {name}",
            "posebh.skeleton": skeleton.name, "posebh.keypoints": ",".join(skeleton.keypoints),
            "posebh.input_size": f"{width}x{height}", "posebh.codec": meta["codec"]["name"]}


@dataclass
class OnnxPoseMeta:
    """An exported model's description, as the Predictor needs it."""

    name: str
    source: str
    skeleton: Skeleton
    codec: object
    input_size: tuple[int, int]   # (w, h)
    box_padding: float
    mean: np.ndarray
    std: np.ndarray
    version: str
    flip_test: bool = True


def parse_metadata(props: dict[str, str], path: str | Path) -> OnnxPoseMeta:
    """Read the "posebh" entry of `metadata_props`; one error naming the file (and field) if absent or bad."""
    record = f"metadata '{METADATA_KEY}'"
    if METADATA_KEY not in props:
        raise input_error(path, f"has no posebh metadata (metadata_props '{METADATA_KEY}'); export the model "
                          "with `posebh export` to predict with it")
    try:
        meta = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise input_error(path, f"not JSON ({exc.msg})", record=record) from None
    if not isinstance(meta, dict):
        raise input_error(path, "expected a JSON object", record=record)
    if not isinstance(meta.get("format"), int) or meta["format"] > METADATA_FORMAT:
        raise input_error(path, f"format {meta.get('format')!r} is not one this posebh reads (<= {METADATA_FORMAT})",
                          record=record, field="format")

    def field(key: str, check: Callable[[object], bool], expected: str):
        value = meta.get(key)
        if not check(value):
            raise input_error(path, f"expected {expected}, got {value!r}", record=record, field=key)
        return value

    def is_pair(v) -> bool:
        return isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)

    def is_rgb(v) -> bool:
        return isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v)

    source = field("source", lambda v: v in ("head", "prototypes"), "'head' or 'prototypes'")
    name = field("name", lambda v: isinstance(v, str) and v, "a name")
    skeleton = skeleton_from_dict(field("skeleton", lambda v: isinstance(v, dict), "a skeleton object"),
                                  f"{path}: record {record}: skeleton")
    input_size = tuple(field("input_size", is_pair, "[width, height]"))
    padding = field("box_padding", lambda v: isinstance(v, (int, float)) and v > 0, "a positive number")
    mean = np.asarray(field("mean", is_rgb, "3 numbers"), np.float32)
    std = np.asarray(field("std", is_rgb, "3 non-zero numbers"), np.float32)
    if not np.all(std != 0):
        raise input_error(path, f"expected 3 non-zero numbers, got {meta['std']!r}", record=record, field="std")
    flip_test = meta.get("flip_test", True)
    if not isinstance(flip_test, bool):
        raise input_error(path, f"expected true or false, got {flip_test!r}", record=record, field="flip_test")
    codec = codec_from_spec(field("codec", lambda v: isinstance(v, dict), "a codec object"), path)
    if tuple(codec.input_size) != input_size:
        raise input_error(path, f"the codec's input size {list(codec.input_size)} is not the model's "
                          f"{list(input_size)}", record=record, field="codec")
    return OnnxPoseMeta(name=name, source=source, skeleton=skeleton, codec=codec, input_size=input_size,
                        box_padding=float(padding), mean=mean, std=std, version=str(meta.get("posebh_version", "?")),
                        flip_test=flip_test)


# ---------------------------------------------------------------- the heatmap function
class OnnxHeatmaps:
    """An exported pose model as a heatmap function: normalised crops [B, 3, H, W] -> heatmaps [B, K, h, w].

    `meta` describes the target (skeleton, codec, input size, box padding, mean/std); `provider` is the execution
    provider that runs it.
    """

    def __init__(self, path: str | Path, device: str | None = None, warn: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.session = open_session(self.path, device, warn)
        self.meta = parse_metadata(dict(self.session.get_modelmeta().custom_metadata_map), self.path)
        self.provider = self.session.get_providers()[0]
        self._check_signature()

    def _check_signature(self) -> None:
        """The graph takes `images` [B, 3, H, W] at the metadata's input size and gives K maps of the codec's size."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        names = ([i.name for i in inputs], [o.name for o in outputs])
        if names != ([INPUT_NAME], [OUTPUT_NAME]):
            raise input_error(self.path, f"expected one input '{INPUT_NAME}' and one output '{OUTPUT_NAME}', got "
                              f"inputs {names[0]} and outputs {names[1]}")
        width, height = self.meta.input_size
        shape = inputs[0].shape
        if len(shape) != 4 or list(shape[1:]) != [3, height, width]:
            raise input_error(self.path, f"input '{INPUT_NAME}' has shape {shape}, but the metadata says "
                              f"[batch, 3, {height}, {width}]")
        map_w, map_h = self.meta.codec.heatmap_size
        shape = outputs[0].shape
        expected = [self.meta.skeleton.num_keypoints, map_h, map_w]
        if len(shape) != 4 or any(isinstance(got, int) and got != want for got, want in zip(shape[1:], expected)):
            raise input_error(self.path, f"output '{OUTPUT_NAME}' has shape {shape}, but the metadata says "
                              f"[batch, {', '.join(map(str, expected))}]")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        (heatmaps,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(heatmaps)


__all__ = ["OnnxHeatmaps", "OnnxPoseMeta", "open_session", "parse_metadata", "export_metadata", "codec_spec",
           "codec_from_spec", "is_onnx", "METADATA_KEY"]
