"""ViT backbone of ViTPose / ViTPose++ with the per-dataset expert FFN.

Differences from a classification ViT, all as in ViTPose:
  * the patch conv has padding 2, so 256x192 gives a 16x12 token grid (floor((H + 4 - 16) / 16) + 1);
  * there is no cls token, but `pos_embed` keeps its slot and adds it to every token (`pos[:, 1:] + pos[:, :1]`);
  * a final `last_norm`, and the output is a feature map [B, D, h, w].

ViTPose++ splits the FFN output: the first D - P channels come from a shared `fc2`, the last P from an expert
chosen by each sample's dataset (no gating network). Parameter names match the official checkpoints, so the
importer only renames the heads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_

from posebh_cli.errors import PosebhError, input_error


@dataclass(frozen=True)
class ViTSize:
    embed_dim: int
    depth: int
    num_heads: int
    part_features: int  # P: channels of each expert's share of the FFN output
    drop_path_rate: float


ARCHS: dict[str, ViTSize] = {
    "vit_pico": ViTSize(192, 4, 3, 48, 0.0),
    "vit_tiny": ViTSize(192, 12, 3, 48, 0.1),
    "vit_small": ViTSize(384, 12, 12, 96, 0.1),
    "vit_base": ViTSize(768, 12, 12, 192, 0.3),
    "vit_large": ViTSize(1024, 24, 16, 256, 0.5),
    "vit_huge": ViTSize(1280, 32, 16, 320, 0.55),
}


def token_grid(img_size: tuple[int, int], patch_size: int = 16, padding: int = 2) -> tuple[int, int]:
    """Token grid (h, w) of the padded patch conv."""
    return tuple((s + 2 * padding - patch_size) // patch_size + 1 for s in img_size)


class PatchEmbed(nn.Module):
    def __init__(self, img_size: tuple[int, int], patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        self.grid_size = token_grid(img_size, patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, D]


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class ExpertMlp(nn.Module):
    """fc1 -> GELU -> [shared fc2 (D - P) | expert of the sample's dataset (P)]; plain MLP when num_experts == 0."""

    def __init__(self, dim: int, hidden_dim: int, num_experts: int = 0, part_features: int = 0):
        super().__init__()
        self.part_features = part_features if num_experts else 0
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim - self.part_features)
        self.experts = nn.ModuleList(nn.Linear(hidden_dim, part_features) for _ in range(num_experts))

    def forward(self, x: torch.Tensor, dataset_idx: torch.Tensor | None = None) -> torch.Tensor:
        h = self.act(self.fc1(x))
        shared = self.fc2(h)
        if not self.experts:
            return shared
        # Each expert runs only on its own dataset's rows (the official code runs all experts and masks).
        part = h.new_zeros(h.shape[:-1] + (self.part_features,))
        for e, expert in enumerate(self.experts):
            rows = (dataset_idx == e).nonzero(as_tuple=True)[0]
            if rows.numel():
                part = part.index_copy(0, rows, expert(h.index_select(0, rows)))
        return torch.cat([shared, part], dim=-1)


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 num_experts: int = 0, part_features: int = 0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = ExpertMlp(dim, int(dim * mlp_ratio), num_experts, part_features)

    def forward(self, x: torch.Tensor, dataset_idx: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x), dataset_idx))


class ViT(nn.Module):
    """ViTPose(++) backbone: images [B, 3, H, W] (+ dataset_idx [B] when it has experts) -> [B, D, h, w]."""

    def __init__(self, img_size: tuple[int, int] = (256, 192), patch_size: int = 16, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, num_experts: int = 0,
                 part_features: int = 0, drop_path_rate: float = 0.0):
        super().__init__()
        self.img_size = tuple(img_size)
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_experts = num_experts
        self.patch_embed = PatchEmbed(self.img_size, patch_size, 3, embed_dim)
        self.grid_size = self.patch_embed.grid_size
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear 0 -> rate
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, rates[i], num_experts, part_features) for i in range(depth))
        self.last_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.init_weights()

    def init_weights(self) -> None:
        # MAE's fixed 2-D sin-cos table as the starting point (ViTPose fine-tunes MAE's): a from-scratch
        # model then knows where each token is from step 0 instead of learning it from a 0.02-std draw.
        with torch.no_grad():
            self.pos_embed.zero_()
            self.pos_embed[0, 1:] = sincos_pos_embed_2d(self.grid_size, self.embed_dim)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, dataset_idx: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_experts:
            if dataset_idx is None:
                raise ValueError("this backbone has experts: pass dataset_idx [B]")
            if dataset_idx.shape != (x.shape[0],) or bool(((dataset_idx < 0) | (dataset_idx >= self.num_experts)).any()):
                raise ValueError(f"dataset_idx must be [B] with values in 0..{self.num_experts - 1}")
        B = x.shape[0]
        x = self.patch_embed(x)
        x = x + self.pos_embed[:, 1:] + self.pos_embed[:, :1]
        for block in self.blocks:
            x = block(x, dataset_idx)
        x = self.last_norm(x)
        return x.transpose(1, 2).reshape(B, self.embed_dim, *self.grid_size)

    def init_from_file(self, path: str | Path) -> None:
        """Initialise from a local timm / MAE ViT weights file (.pth, .pt, .safetensors).

        The position embedding is resized bicubically to this token grid (keeping its first slot); a dense fc2 is
        split into the shared rows (first D - P) and the expert rows (last P), as ViTPose++ does.
        """
        path = Path(path)
        state = _read_vit_weights(path)
        own = self.state_dict()
        mapped = {}
        for key, value in state.items():
            key = key.removeprefix("module.").removeprefix("encoder.").removeprefix("backbone.")
            if key == "pos_embed":
                mapped[key] = _resize_pos_embed(value, self.patch_embed.num_patches, self.grid_size)
            elif key.endswith(("mlp.fc2.weight", "mlp.fc2.bias")) and self.num_experts and key in own \
                    and value.shape[0] == self.embed_dim:
                split = self.embed_dim - self.blocks[0].mlp.part_features
                mapped[key] = value[:split]
                prefix, param = key.rsplit(".fc2.", 1)
                for e in range(self.num_experts):
                    mapped[f"{prefix}.experts.{e}.{param}"] = value[split:]
            elif key in own:
                mapped[key] = value
        # The classification norm/head, cls token and MAE decoder have no place here; last_norm stays fresh.
        missing = [k for k in own if k not in mapped and not k.startswith("last_norm.")]
        wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in mapped.items() if v.shape != own[k].shape]
        if missing or wrong:
            problem = "not a ViT of this size:"
            if missing:
                problem += f" missing {_short(missing)}"
            if wrong:
                problem += f" shape mismatch {_short(wrong)}"
            raise input_error(path, problem)
        self.load_state_dict(mapped, strict=False)


def _short(items: list[str], n: int = 4) -> str:
    head = ", ".join(items[:n])
    return head + (f" (+{len(items) - n} more)" if len(items) > n else "")


def _read_vit_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise input_error(path, "weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix == ".npz":
        raise input_error(path, "JAX .npz weights are not read directly: load them into a timm ViT "
                                "(timm.create_model(..., pretrained_cfg_overlay=dict(file=...))) and save its "
                                "state_dict as .pth or .safetensors")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torch.load failure is a bad file, whatever its exception type
        raise input_error(path, f"cannot read as a torch weights file ({type(exc).__name__})") from None
    for key in ("model", "state_dict", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise input_error(path, "expected a dict of tensors")
    return state


def sincos_pos_embed_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """[h * w, dim] fixed position table: half the channels encode the row, half the column (MAE layout)."""
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a dim divisible by 4, got {dim}")
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(grid[0], dtype=torch.float64),
                                torch.arange(grid[1], dtype=torch.float64), indexing="ij")

    def encode(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.reshape(-1, 1) * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(cols), encode(rows)], dim=1).float()


def _resize_pos_embed(pos: torch.Tensor, num_patches: int, grid: tuple[int, int]) -> torch.Tensor:
    """[1, (1+)n, D] with a square (or already matching) grid -> [1, 1 + h*w, D]."""
    pos = pos.reshape(1, -1, pos.shape[-1]).float()
    n = pos.shape[1]
    if n == num_patches + 1:
        return pos
    side = int(math.isqrt(n))
    if side * side == n:  # no cls slot (timm's no_embed_class): the extra slot starts at zero
        cls, patches = torch.zeros_like(pos[:, :1]), pos
    elif side * side == n - 1:
        side = int(math.isqrt(n - 1))
        cls, patches = pos[:, :1], pos[:, 1:]
    else:
        raise PosebhError(f"pos_embed with {n} positions is neither square nor matches the {grid} token grid")
    patches = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([cls, patches.flatten(2).transpose(1, 2)], dim=1)


def create_vit(arch: str, img_size: tuple[int, int] = (256, 192), num_experts: int = 0,
               drop_path_rate: float | None = None) -> ViT:
    """A backbone by size name (`vit_pico` ... `vit_huge`)."""
    if arch not in ARCHS:
        raise PosebhError(f"unknown architecture '{arch}'; choose from {', '.join(ARCHS)}")
    size = ARCHS[arch]
    return ViT(img_size=img_size, embed_dim=size.embed_dim, depth=size.depth, num_heads=size.num_heads,
               num_experts=num_experts, part_features=size.part_features if num_experts else 0,
               drop_path_rate=size.drop_path_rate if drop_path_rate is None else drop_path_rate)
