"""Import official mmcv-layout checkpoints ({'state_dict': ...}): ViTPose, ViTPose++ (MoE) and PoseBH.

The backbone keys already match ours (`backbone.*`); heads and the proto head are renamed:
  keypoint_head.*                      -> heads.0.*          (COCO in ViTPose++/PoseBH)
  associate_keypoint_heads.i.*         -> heads.{i+1}.*      (AIC, MPII, AP-10K, APT-36K, COCO-WholeBody)
  proto_head.{deconv_layers,neck,head} -> embedding.*
  proto_head.kpt_prototype.prototypes  -> prototypes.prototypes   [J, M, F]
`proto_head.cluster_prototype.*` (PoseBH's clustered prototypes, a training-time object) is dropped.
The architecture is read from the tensor shapes; the number of attention heads comes from the size table.
"""
from __future__ import annotations

import importlib
import math
import pickle
import re
import warnings
from pathlib import Path

import torch

from posebh_cli.errors import input_error
from posebh_cli.models.pose_model import ModelConfig, PoseModel, load_state_strict
from posebh_cli.models.vit import ARCHS, token_grid
from posebh_cli.skeletons import Skeleton, load_skeleton

# ViTPose++ / PoseBH head order and keypoint counts.
VITPOSE_PLUS_DATASETS = ["coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody"]
VITPOSE_PLUS_KEYPOINTS = [17, 14, 16, 17, 17, 133]
# A single-head file is named by its keypoint count.
SINGLE_HEAD_DATASETS = {17: "coco", 14: "aic", 16: "mpii", 133: "coco_wholebody", 21: "interhand", 24: "smpl24"}


def read_official_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an mmcv checkpoint (`state_dict`), without a DDP `module.` prefix."""
    path = Path(path)
    try:
        ckpt = _safe_torch_load(path)
    except Exception as exc:  # any unpickling failure means "not a checkpoint we can read safely"
        raise input_error(path, f"cannot read as a PyTorch checkpoint ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise input_error(path, "expected an mmcv checkpoint: a dict with 'state_dict' holding tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _safe_torch_load(path: Path):
    """torch.load(weights_only=True); mmcv's `meta` may hold numpy scalars/arrays, which are allowed as data."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        if not names or not all(n.startswith("numpy.") for n in names):
            raise
    import numpy as np

    allowed = [(_resolve(n), n) for n in names] + [getattr(np.dtypes, n) for n in np.dtypes.__all__]
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def _resolve(dotted: str):
    module, _, attr = dotted.rpartition(".")
    with warnings.catch_warnings():  # numpy.core.* names from numpy 1.x pickles warn on import
        warnings.simplefilter("ignore")
        return getattr(importlib.import_module(module), attr)


def convert_official_state(state: dict[str, torch.Tensor], source: str | Path,
                           datasets: list[str] | None = None) -> tuple[ModelConfig, list[Skeleton], dict]:
    """Infer the model from an official state dict and rename its keys to ours."""
    arch, depth, dim = _infer_arch(state, source)
    num_experts, dense_fc2 = _infer_experts(state, depth, dim)
    img_size = _infer_img_size(state, source)
    head_sizes = _head_sizes(state, source)
    names = datasets or _dataset_names(head_sizes, source)
    if len(names) != len(head_sizes):
        raise input_error(source, f"{len(head_sizes)} heads in the file, {len(names)} dataset names given")
    skeletons = [load_skeleton(n) for n in names]
    for name, sk, k in zip(names, skeletons, head_sizes):
        if sk.num_keypoints != k:
            raise input_error(source, f"head for '{name}' has {k} outputs, skeleton '{sk.name}' has "
                                      f"{sk.num_keypoints} keypoints")
    if num_experts and num_experts != len(head_sizes):
        raise input_error(source, f"{num_experts} experts but {len(head_sizes)} heads; expected one expert per head")

    protos = state.get("proto_head.kpt_prototype.prototypes")
    config = ModelConfig(arch=arch, datasets=list(names), num_experts=num_experts, with_embedding=protos is not None,
                         embed_dim=protos.shape[2] if protos is not None else 64,
                         prototypes_per_keypoint=protos.shape[1] if protos is not None else 3,
                         img_size=img_size, num_keypoints=list(head_sizes))
    mapped = {}
    for key, value in state.items():
        new = _rename(key, dense_fc2)
        if new is not None:
            mapped[new] = value
    return config, skeletons, mapped


def load_official(path: str | Path, datasets: list[str] | None = None) -> PoseModel:
    """An official ViTPose / ViTPose++ / PoseBH `.pth` as a PoseModel (strict: every tensor must find its place)."""
    state = read_official_state(path)
    config, skeletons, mapped = convert_official_state(state, path, datasets)
    with torch.device("meta"):  # no random init for weights that are about to be replaced
        model = PoseModel.from_config(config, skeletons)
    # Old BN checkpoints may lack the step counter; it carries no weights.
    for key in model.state_dict():
        if key.endswith("num_batches_tracked") and key not in mapped:
            mapped[key] = torch.zeros((), dtype=torch.long)
    load_state_strict(model, mapped, path)
    if model.prototypes is not None:
        # The released code scores prototypes with |cos|, so a prototype of this bank may point away from its
        # embeddings. Scorers honour the flag (|cos|) and PoseBH training aligns the signs from data first.
        model.prototypes.abs_similarity = True
    return model


def _rename(key: str, dense_fc2: bool) -> str | None:
    """Our name for an official key; None for keys we deliberately drop."""
    if key.startswith("backbone."):
        # model_split.py leaves the expert tensors in its dense per-dataset files (an upstream bug): drop them.
        if dense_fc2 and ".mlp.experts." in key:
            return None
        return key
    if key.startswith("keypoint_head."):
        return "heads.0." + key.removeprefix("keypoint_head.")
    m = re.match(r"associate_keypoint_heads\.(\d+)\.(.*)", key)
    if m:
        return f"heads.{int(m.group(1)) + 1}.{m.group(2)}"
    if key.startswith("proto_head.cluster_prototype."):
        return None
    if key == "proto_head.kpt_prototype.prototypes":
        return "prototypes.prototypes"
    if key.startswith(("proto_head.deconv_layers.", "proto_head.neck.", "proto_head.head.")):
        return "embedding." + key.removeprefix("proto_head.")
    return key  # unknown: reported as unexpected by the strict load


def _infer_arch(state: dict, source) -> tuple[str, int, int]:
    weight = state.get("backbone.patch_embed.proj.weight")
    if weight is None:
        raise input_error(source, "not a ViTPose checkpoint: missing backbone.patch_embed.proj.weight")
    dim = weight.shape[0]
    depth = len({k.split(".")[2] for k in state if re.match(r"backbone\.blocks\.\d+\.", k)})
    for name, size in ARCHS.items():
        if size.embed_dim == dim and size.depth == depth:
            return name, depth, dim
    raise input_error(source, f"unknown ViT size: width {dim}, depth {depth} (known: "
                              + ", ".join(f"{n} {s.embed_dim}/{s.depth}" for n, s in ARCHS.items()) + ")")


def _infer_experts(state: dict, depth: int, dim: int) -> tuple[int, bool]:
    """(number of experts, whether fc2 is dense). A dense fc2 means a plain ViT even if expert keys linger."""
    dense = state["backbone.blocks.0.mlp.fc2.weight"].shape[0] == dim if "backbone.blocks.0.mlp.fc2.weight" in state \
        else True
    experts = len({k.split(".")[5] for k in state if re.match(r"backbone\.blocks\.0\.mlp\.experts\.\d+\.", k)})
    return (0 if dense else experts), dense


def _infer_img_size(state: dict, source) -> tuple[int, int]:
    pos = state.get("backbone.pos_embed")
    if pos is None:
        raise input_error(source, "not a ViTPose checkpoint: missing backbone.pos_embed")
    n = pos.shape[1] - 1
    # ViTPose inputs are 4:3 (h:w); the token grid is (h/16, w/16) with the padded patch conv.
    gw = int(round(math.sqrt(n * 3 / 4)))
    gh = n // gw if gw else 0
    if gh * gw != n or token_grid((gh * 16, gw * 16)) != (gh, gw):
        raise input_error(source, f"cannot infer the input size from pos_embed with {n} patches")
    return gh * 16, gw * 16


def _head_sizes(state: dict, source) -> list[int]:
    if "keypoint_head.final_layer.weight" not in state:
        raise input_error(source, "not a top-down heatmap checkpoint: missing keypoint_head.final_layer.weight")
    sizes = [state["keypoint_head.final_layer.weight"].shape[0]]
    i = 0
    while f"associate_keypoint_heads.{i}.final_layer.weight" in state:
        sizes.append(state[f"associate_keypoint_heads.{i}.final_layer.weight"].shape[0])
        i += 1
    return sizes


def _dataset_names(head_sizes: list[int], source) -> list[str]:
    n = len(head_sizes)
    if n > 1 and head_sizes == VITPOSE_PLUS_KEYPOINTS[:n]:
        return VITPOSE_PLUS_DATASETS[:n]
    if n == 1 and head_sizes[0] in SINGLE_HEAD_DATASETS:
        return [SINGLE_HEAD_DATASETS[head_sizes[0]]]
    raise input_error(source, f"cannot name the datasets of heads with {head_sizes} keypoints; "
                              "pass the dataset names explicitly")


def hf_vitpose_to_ours(hf_state: dict, depth: int, head: int = 0) -> dict:
    """HF transformers `VitPoseForPoseEstimation` weights renamed to ours (q, k, v stacked into qkv; the expert
    FFN keeps its layout); HF's single head becomes our head `head`."""
    out = {"backbone.pos_embed": hf_state["backbone.embeddings.position_embeddings"],
           "backbone.patch_embed.proj.weight": hf_state["backbone.embeddings.patch_embeddings.projection.weight"],
           "backbone.patch_embed.proj.bias": hf_state["backbone.embeddings.patch_embeddings.projection.bias"],
           "backbone.last_norm.weight": hf_state["backbone.layernorm.weight"],
           "backbone.last_norm.bias": hf_state["backbone.layernorm.bias"]}
    for i in range(depth):
        src, dst = f"backbone.encoder.layer.{i}", f"backbone.blocks.{i}"
        att = f"{src}.attention.attention"
        for p in ("weight", "bias"):
            out[f"{dst}.attn.qkv.{p}"] = torch.cat([hf_state[f"{att}.{n}.{p}"] for n in ("query", "key", "value")])
            out[f"{dst}.attn.proj.{p}"] = hf_state[f"{src}.attention.output.dense.{p}"]
            out[f"{dst}.norm1.{p}"] = hf_state[f"{src}.layernorm_before.{p}"]
            out[f"{dst}.norm2.{p}"] = hf_state[f"{src}.layernorm_after.{p}"]
    for key, value in hf_state.items():
        if ".mlp." in key:
            out[key.replace("backbone.encoder.layer.", "backbone.blocks.")] = value
    names = {"deconv1": "deconv_layers.0", "batchnorm1": "deconv_layers.1", "deconv2": "deconv_layers.3",
             "batchnorm2": "deconv_layers.4", "conv": "final_layer"}
    for key, value in hf_state.items():
        if key.startswith("head."):
            module, param = key[len("head."):].split(".", 1)
            out[f"heads.{head}.{names[module]}.{param}"] = value
    return out
