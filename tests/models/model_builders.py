"""Shared builders for the model tests: official-layout state dicts written from the published key list."""
from __future__ import annotations

import torch

from posebh_cli.skeletons import load_skeleton

SIX = ["coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody"]
SIX_K = [17, 14, 16, 17, 17, 133]


def skeletons(names):
    return [load_skeleton(n) for n in names]


def _bn(prefix: str, ch: int, make) -> dict:
    return {f"{prefix}.weight": make(ch), f"{prefix}.bias": make(ch), f"{prefix}.running_mean": make(ch),
            f"{prefix}.running_var": make(ch).abs() + 0.5, f"{prefix}.num_batches_tracked": torch.tensor(7)}


def official_state(dim: int, depth: int, part: int, num_experts: int = 6, head_k=SIX_K, grid=(16, 12),
                   posebh: bool = False, device: str = "cpu") -> dict[str, torch.Tensor]:
    """An mmcv ViTPose++ (or PoseBH) state dict with the official key names and shapes, random values.

    Written from reference/posebh-official-code.md §2.5, independently of our model code.
    """
    def make(*shape):
        return torch.randn(*shape, device=device) * 0.05 if device != "meta" else torch.empty(*shape, device="meta")

    s = {"backbone.pos_embed": make(1, grid[0] * grid[1] + 1, dim),
         "backbone.patch_embed.proj.weight": make(dim, 3, 16, 16), "backbone.patch_embed.proj.bias": make(dim)}
    shared = dim - part if num_experts else dim
    for i in range(depth):
        b = f"backbone.blocks.{i}"
        s.update({f"{b}.norm1.weight": make(dim), f"{b}.norm1.bias": make(dim),
                  f"{b}.attn.qkv.weight": make(3 * dim, dim), f"{b}.attn.qkv.bias": make(3 * dim),
                  f"{b}.attn.proj.weight": make(dim, dim), f"{b}.attn.proj.bias": make(dim),
                  f"{b}.norm2.weight": make(dim), f"{b}.norm2.bias": make(dim),
                  f"{b}.mlp.fc1.weight": make(4 * dim, dim), f"{b}.mlp.fc1.bias": make(4 * dim),
                  f"{b}.mlp.fc2.weight": make(shared, 4 * dim), f"{b}.mlp.fc2.bias": make(shared)})
        for e in range(num_experts):
            s[f"{b}.mlp.experts.{e}.weight"] = make(part, 4 * dim)
            s[f"{b}.mlp.experts.{e}.bias"] = make(part)
    s["backbone.last_norm.weight"], s["backbone.last_norm.bias"] = make(dim), make(dim)
    for h, k in enumerate(head_k):
        p = "keypoint_head" if h == 0 else f"associate_keypoint_heads.{h - 1}"
        s[f"{p}.deconv_layers.0.weight"] = make(dim, 256, 4, 4)
        s.update(_bn(f"{p}.deconv_layers.1", 256, make))
        s[f"{p}.deconv_layers.3.weight"] = make(256, 256, 4, 4)
        s.update(_bn(f"{p}.deconv_layers.4", 256, make))
        s[f"{p}.final_layer.weight"], s[f"{p}.final_layer.bias"] = make(k, 256, 1, 1), make(k)
    if posebh:
        p = "proto_head"
        s[f"{p}.deconv_layers.0.weight"] = make(dim, 256, 4, 4)
        s.update(_bn(f"{p}.deconv_layers.1", 256, make))
        s[f"{p}.deconv_layers.3.weight"] = make(256, 256, 4, 4)
        s.update(_bn(f"{p}.deconv_layers.4", 256, make))
        s[f"{p}.neck.conv1.weight"], s[f"{p}.neck.conv1.bias"] = make(64, 256, 3, 3), make(64)
        s.update(_bn(f"{p}.neck.bn1", 64, make))
        s[f"{p}.neck.conv2.weight"], s[f"{p}.neck.conv2.bias"] = make(64, 64, 3, 3), make(64)
        s.update(_bn(f"{p}.neck.bn2", 64, make))
        s[f"{p}.neck.downsample.0.weight"] = make(64, 256, 1, 1)
        s.update(_bn(f"{p}.neck.downsample.1", 64, make))
        s[f"{p}.head.0.weight"], s[f"{p}.head.0.bias"] = make(64, 64, 3, 3), make(64)
        s.update(_bn(f"{p}.head.1", 64, make))
        s[f"{p}.head.3.weight"], s[f"{p}.head.3.bias"] = make(64, 64, 1, 1), make(64)
        s[f"{p}.kpt_prototype.prototypes"] = make(sum(head_k), 3, 64)
        s[f"{p}.cluster_prototype.prototypes"] = make(96, 3, 64)
    return s


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every tensor a visible random value (the default head init is ~1e-3, too small to test parity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.05)
                if name.endswith("running_var"):
                    t.abs_().add_(0.5)
                elif t.ndim == 1 and name.endswith("weight"):  # norm scales near 1 keep activations O(1)
                    t.add_(1.0)
    return model
