"""Heatmap head (ViTPose "classic" decoder) and the PoseBH keypoint embedding network.

Module indices match the official checkpoints: `deconv_layers.{0,3}` are the transposed convs, `{1,4}` their BN.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def deconv_layers(in_channels: int, channels: int = 256) -> nn.Sequential:
    """Two stride-2 transposed convs: a 16x12 feature map becomes 64x48."""
    layers = []
    for i in range(2):
        layers += [nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, 4, stride=2, padding=1, bias=False),
                   nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _init_small(module: nn.Module) -> None:
    """ViTPose/PoseBH head init: conv weights N(0, 0.001), biases 0, BN identity."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=0.001)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class HeatmapHead(nn.Module):
    """[B, D, h, w] -> [B, K, 4h, 4w] heatmaps."""

    def __init__(self, in_channels: int, num_keypoints: int, channels: int = 256):
        super().__init__()
        self.deconv_layers = deconv_layers(in_channels, channels)
        self.final_layer = nn.Conv2d(channels, num_keypoints, kernel_size=1)
        _init_small(self)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(features))


class ResBlock(nn.Module):
    """Two 3x3 convs with BN and SiLU, plus a 1x1 conv + BN shortcut (the channel count changes)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.downsample(x))


class KeypointEmbedding(nn.Module):
    """PoseBH's embedding net: [B, D, h, w] -> [B, F, 4h, 4w] per-pixel embeddings (not normalised here)."""

    def __init__(self, in_channels: int, embed_dim: int = 64, channels: int = 64, deconv_channels: int = 256):
        super().__init__()
        self.deconv_layers = deconv_layers(in_channels, deconv_channels)
        self.neck = ResBlock(deconv_channels, channels)
        self.head = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.SiLU(inplace=True),
                                  nn.Conv2d(channels, embed_dim, 1))
        _init_small(self)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.neck(self.deconv_layers(features)))
