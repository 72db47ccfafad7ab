"""Heatmap codecs: keypoints in input pixels <-> Gaussian heatmaps.

Two codecs, as in ViTPose++/PoseBH (one per dataset, chosen in the recipe by name: "msra", "udp", or "dark": MSRA
with both of DARK's changes, as mmpose's `MSRAHeatmap(unbiased=True)`):

* `MSRAHeatmap` - heatmap pixel u = x / stride with stride = input / heatmap (4 for 192x256 -> 48x64).
  Encoding puts the Gaussian peak on the integer pixel int(u + 0.5) (or on the sub-pixel u with
  `unbiased=True`, the DARK encoding). Decoding is argmax + a quarter-pixel step toward the higher
  neighbour (where 1 < x < w - 1 and 1 < y < h - 1), or the DARK Taylor step (`dark=True`).
* `UDPHeatmap` - unbiased data processing: u = x * (hm - 1) / (in - 1), so that the first and last pixel
  centres of input and heatmap coincide; the Gaussian is sub-pixel; decoding is argmax + the DARK-UDP
  Newton step of mmpose 0.x's `post_dark_udp` (reflect-101 blur, no rescaling, (H + eps I)^-1 g at every peak).

In both, the Gaussian is truncated to the (6*sigma + 1)^2 window around the rounded centre, and a keypoint
whose window lies fully off the map (or that is not visible) gets weight 0 and an all-zero channel.

Decoding accepts numpy or torch [B, K, h, w] and works on whole batches at once in torch (on the tensor's
device); numpy input gives numpy output.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from posebh_cli.errors import PosebhError


def gaussian_heatmaps(centres: torch.Tensor, visible: torch.Tensor, size: tuple[int, int], sigma: float,
                      subpixel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Render [..., K] Gaussians at `centres` [..., K, 2] (heatmap pixels) into [..., K, h, w] maps.

    The window is the (6 sigma + 1) square around round(centre); `subpixel` puts the peak at the exact centre
    instead of the rounded one. Returns the maps and a weight [..., K]: 1 where visible and the window touches
    the map, else 0 (those channels are all zero).
    """
    w, h = size
    radius = 3 * sigma
    window_centre = torch.floor(centres + 0.5)
    peak = centres if subpixel else window_centre
    on_map = ((window_centre[..., 0] - radius < w) & (window_centre[..., 0] + radius + 1 > 0)
              & (window_centre[..., 1] - radius < h) & (window_centre[..., 1] + radius + 1 > 0))
    weight = (visible > 0) & on_map

    xs = torch.arange(w, dtype=centres.dtype, device=centres.device)
    ys = torch.arange(h, dtype=centres.dtype, device=centres.device)
    dx = xs - peak[..., 0:1]                                   # [..., K, w]
    dy = ys - peak[..., 1:2]                                   # [..., K, h]
    in_x = (xs - window_centre[..., 0:1]).abs() <= radius
    in_y = (ys - window_centre[..., 1:2]).abs() <= radius
    gx = torch.exp(-dx * dx / (2 * sigma ** 2)) * in_x
    gy = torch.exp(-dy * dy / (2 * sigma ** 2)) * in_y
    maps = gy.unsqueeze(-1) * gx.unsqueeze(-2)                 # separable: [..., K, h, w]
    maps = maps * weight[..., None, None]
    return maps, weight.to(centres.dtype)


def _gaussian_kernel_1d(kernel_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # The sigma OpenCV picks for GaussianBlur(ksize, sigma=0), which the reference decoders use.
    sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(kernel_size, dtype=dtype, device=device) - (kernel_size - 1) / 2
    kernel = torch.exp(-x * x / (2 * sigma * sigma))
    return kernel / kernel.sum()


def blur_heatmaps(heatmaps: torch.Tensor, kernel_size: int = 11) -> torch.Tensor:
    """Gaussian-blur every [h, w] map (zero border), rescaled so each map keeps its original maximum.

    This is the blur of mmpose 0.x's DARK decoder (`_gaussian_blur`), used by `refine_dark`.
    """
    b, k, h, w = heatmaps.shape
    kernel = _gaussian_kernel_1d(kernel_size, heatmaps.dtype, heatmaps.device)
    pad = kernel_size // 2
    x = heatmaps.reshape(b * k, 1, h, w)
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0)), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, pad, pad)), kernel.view(1, 1, -1, 1))
    x = x.reshape(b, k, h, w)
    old_max = heatmaps.amax(dim=(-2, -1), keepdim=True)
    new_max = x.amax(dim=(-2, -1), keepdim=True)
    return x * torch.where(new_max > 0, old_max / new_max.clamp_min(1e-12), torch.zeros_like(new_max))


def _reflect101_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices of a length-n axis padded by `pad` on both sides with OpenCV's default border (BORDER_REFLECT_101:
    ...c b | a b c ... | b a...), valid for any pad, also one larger than the axis."""
    index = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * (n - 1)
    index = index.remainder(period)
    return torch.where(index >= n, period - index, index)


def blur_heatmaps_reflect(heatmaps: torch.Tensor, kernel_size: int = 11) -> torch.Tensor:
    """Gaussian-blur every [h, w] map as cv2.GaussianBlur(map, (k, k), 0) with its default reflect-101 border and
    no rescaling: the blur of mmpose 0.x's `post_dark_udp`, used by `refine_dark_udp`."""
    b, k, h, w = heatmaps.shape
    kernel = _gaussian_kernel_1d(kernel_size, heatmaps.dtype, heatmaps.device)
    pad = kernel_size // 2
    x = heatmaps.reshape(b * k, 1, h, w)
    x = F.conv2d(x[..., _reflect101_index(w, pad, x.device)], kernel.view(1, 1, 1, -1))
    x = F.conv2d(x[..., _reflect101_index(h, pad, x.device), :], kernel.view(1, 1, -1, 1))
    return x.reshape(b, k, h, w)


def argmax_2d(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer peak locations [B, K, 2] (x, y) and peak values [B, K] (values <= 0 give score 0)."""
    b, k, h, w = heatmaps.shape
    values, flat = heatmaps.reshape(b, k, h * w).max(dim=-1)
    coords = torch.stack([flat % w, torch.div(flat, w, rounding_mode="floor")], dim=-1).to(heatmaps.dtype)
    return coords, values.clamp_min(0)


def _sample(maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """maps[b, k, y[b, k], x[b, k]] for integer index tensors [B, K] (clamped to the map)."""
    h, w = maps.shape[-2:]
    flat = (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)).long()
    return maps.flatten(-2).gather(-1, flat.unsqueeze(-1)).squeeze(-1)


def refine_quarter(heatmaps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Move each argmax 0.25 px toward its higher neighbour on both axes, as mmpose 0.x's default decoder.

    Like mmpose, the step is taken only when the peak satisfies 1 < x < w - 1 and 1 < y < h - 1 together (a
    peak on column or row 1, or on any border, is left on its integer pixel); np.sign makes a tie a zero step.
    """
    h, w = heatmaps.shape[-2:]
    x, y = coords[..., 0].long(), coords[..., 1].long()
    step_x = torch.sign(_sample(heatmaps, x + 1, y) - _sample(heatmaps, x - 1, y)) * 0.25
    step_y = torch.sign(_sample(heatmaps, x, y + 1) - _sample(heatmaps, x, y - 1)) * 0.25
    inside = ((x > 1) & (x < w - 1) & (y > 1) & (y < h - 1)).unsqueeze(-1)
    return coords + torch.stack([step_x, step_y], dim=-1) * inside


def _newton_step(dx, dy, dxx, dxy, dyy, eps: float, guarded: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """-(H + eps I)^-1 g for the 2x2 Hessian H = [[dxx, dxy], [dxy, dyy]] and gradient g = (dx, dy).

    By default the step is taken wherever H + eps I is invertible, as mmpose 0.x does (`post_dark_udp`, `_taylor`),
    even where H is not negative definite (a saddle or a valley of a noisy or multi-modal map, where the step
    heads away from the peak). `guarded=True` takes it only where H is negative definite and leaves the other
    points on their integer peak; that changes points near the border and on multi-modal maps
    (see docs/method-notes.md).
    """
    dxx, dyy = dxx + eps, dyy + eps
    det = dxx * dyy - dxy * dxy
    ok = (dxx < 0) & (det > 1e-12) if guarded else det != 0
    det = torch.where(ok, det, torch.ones_like(det))
    off_x = -(dyy * dx - dxy * dy) / det
    off_y = -(dxx * dy - dxy * dx) / det
    zero = torch.zeros_like(off_x)
    return torch.where(ok, off_x, zero), torch.where(ok, off_y, zero)


def refine_dark(heatmaps: torch.Tensor, coords: torch.Tensor, kernel_size: int = 11,
                guarded: bool = False) -> torch.Tensor:
    """DARK: blur, log, then one second-order Taylor step at peaks at least 2 px inside the map."""
    h, w = heatmaps.shape[-2:]
    logs = torch.log(blur_heatmaps(heatmaps, kernel_size).clamp_min(1e-10))
    x, y = coords[..., 0].long(), coords[..., 1].long()

    def at(ox: int, oy: int) -> torch.Tensor:
        return _sample(logs, x + ox, y + oy)

    centre = at(0, 0)
    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    dyy = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    off_x, off_y = _newton_step(dx, dy, dxx, dxy, dyy, eps=0.0, guarded=guarded)
    inside = (x > 1) & (x < w - 2) & (y > 1) & (y < h - 2)
    offset = torch.stack([off_x, off_y], dim=-1) * inside.unsqueeze(-1)
    return coords + offset


def refine_dark_udp(heatmaps: torch.Tensor, coords: torch.Tensor, kernel_size: int = 11,
                    guarded: bool = False) -> torch.Tensor:
    """DARK-UDP as mmpose 0.x's `post_dark_udp`: reflect-101 blur, clip to [1e-3, 50], log, one Newton step
    with (H + eps I)^-1 on the edge-padded map (any peak)."""
    logs = torch.log(blur_heatmaps_reflect(heatmaps, kernel_size).clamp(1e-3, 50.0))
    b, k, h, w = logs.shape
    padded = F.pad(logs.reshape(b * k, 1, h, w), (1, 1, 1, 1), mode="replicate").reshape(b, k, h + 2, w + 2)
    x, y = coords[..., 0].long() + 1, coords[..., 1].long() + 1

    def at(ox: int, oy: int) -> torch.Tensor:
        return _sample(padded, x + ox, y + oy)

    centre = at(0, 0)
    right, left, down, up = at(1, 0), at(-1, 0), at(0, 1), at(0, -1)
    dx = 0.5 * (right - left)
    dy = 0.5 * (down - up)
    dxx = right - 2 * centre + left
    dyy = down - 2 * centre + up
    dxy = 0.5 * (at(1, 1) - right - down + 2 * centre - left - up + at(-1, -1))
    off_x, off_y = _newton_step(dx, dy, dxx, dxy, dyy, eps=float(np.finfo(np.float32).eps), guarded=guarded)
    return coords + torch.stack([off_x, off_y], dim=-1)


def _as_tensor(heatmaps) -> tuple[torch.Tensor, bool]:
    if isinstance(heatmaps, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(heatmaps, dtype=np.float32)), True
    if isinstance(heatmaps, torch.Tensor):
        return heatmaps.float(), False      # fp16/bf16 network outputs are decoded in fp32
    raise TypeError(f"heatmaps must be a numpy array or a torch tensor, got {type(heatmaps).__name__}")


class _HeatmapCodec:
    """Shared encode/decode plumbing; subclasses define `scale` (input pixels per heatmap pixel, (sx, sy))
    and `refine` (the sub-pixel step after argmax)."""

    use_udp: bool = False
    subpixel_encoding: bool = True

    def __init__(self, input_size: tuple[int, int] = (192, 256), heatmap_size: tuple[int, int] = (48, 64),
                 sigma: float = 2.0, blur_kernel_size: int = 11, guarded_newton: bool = False):
        self.guarded_newton = bool(guarded_newton)  # DARK steps only where the Hessian is concave (not mmpose)
        self.input_size = (int(input_size[0]), int(input_size[1]))        # (w, h)
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))  # (w, h)
        self.sigma = float(sigma)
        self.blur_kernel_size = int(blur_kernel_size)

    def encode(self, keypoints_xy: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints [K, 2] in input pixels and visibility [K] -> heatmaps float32 [K, h, w], weights [K]."""
        centres = torch.as_tensor(np.asarray(keypoints_xy, dtype=np.float32)[..., :2]) / torch.tensor(self.scale)
        maps, weight = gaussian_heatmaps(centres, torch.as_tensor(np.asarray(visible, dtype=np.float32)),
                                         self.heatmap_size, self.sigma, self.subpixel_encoding)
        return maps.numpy(), weight.numpy()

    @torch.no_grad()
    def encode_batch(self, coords: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Sub-pixel Gaussian maps [B, K, h, w] for points [B, K, 2] (input pixels), on their device.

        Used to render pseudo-targets from predictions. A channel is zero where its weight is <= 0 or its
        window misses the map; the weights themselves are for the caller's loss.
        """
        scale = torch.tensor(self.scale, dtype=coords.dtype, device=coords.device)
        maps, _ = gaussian_heatmaps(coords / scale, weights, self.heatmap_size, self.sigma, subpixel=True)
        return maps

    @torch.no_grad()
    def decode(self, heatmaps):
        """Heatmaps [B, K, h, w] (numpy or torch) -> coords [B, K, 2] in input pixels and scores [B, K]."""
        maps, from_numpy = _as_tensor(heatmaps)
        if maps.dim() != 4:
            raise ValueError(f"decode expects [B, K, h, w] heatmaps, got shape {tuple(maps.shape)}")
        coords, scores = argmax_2d(maps)
        coords = self.refine(maps, coords)
        coords = coords * torch.tensor(self.scale, dtype=coords.dtype, device=coords.device)
        if from_numpy:
            return coords.numpy(), scores.numpy()
        return coords, scores

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(input_size={self.input_size}, heatmap_size={self.heatmap_size}, "
                f"sigma={self.sigma})")


class MSRAHeatmap(_HeatmapCodec):
    """Gaussian heatmaps with stride input/heatmap; peak on the rounded pixel unless `unbiased`."""

    use_udp = False

    def __init__(self, input_size: tuple[int, int] = (192, 256), heatmap_size: tuple[int, int] = (48, 64),
                 sigma: float = 2.0, unbiased: bool = False, dark: bool = False, blur_kernel_size: int = 11,
                 guarded_newton: bool = False):
        super().__init__(input_size, heatmap_size, sigma, blur_kernel_size, guarded_newton)
        self.unbiased = bool(unbiased)
        self.dark = bool(dark)
        self.subpixel_encoding = self.unbiased

    @property
    def scale(self) -> tuple[float, float]:
        return (self.input_size[0] / self.heatmap_size[0], self.input_size[1] / self.heatmap_size[1])

    def refine(self, heatmaps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        if self.dark:
            return refine_dark(heatmaps, coords, self.blur_kernel_size, self.guarded_newton)
        return refine_quarter(heatmaps, coords)


class UDPHeatmap(_HeatmapCodec):
    """UDP Gaussian heatmaps: scale (in - 1) / (hm - 1), sub-pixel peaks, DARK-UDP decoding."""

    use_udp = True

    @property
    def scale(self) -> tuple[float, float]:
        return ((self.input_size[0] - 1) / (self.heatmap_size[0] - 1),
                (self.input_size[1] - 1) / (self.heatmap_size[1] - 1))

    def refine(self, heatmaps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        return refine_dark_udp(heatmaps, coords, self.blur_kernel_size, self.guarded_newton)


def dark_heatmap(**kwargs) -> MSRAHeatmap:
    """DARK: MSRA heatmaps with the Gaussian peak on the sub-pixel point and the Taylor-step decoding."""
    return MSRAHeatmap(unbiased=True, dark=True, **kwargs)


CODECS: dict[str, Callable[..., _HeatmapCodec]] = {"msra": MSRAHeatmap, "dark": dark_heatmap, "udp": UDPHeatmap}


def make_codec(name: str, **kwargs) -> _HeatmapCodec:
    """A codec by recipe name ("msra", "dark" or "udp"); keyword arguments go to its constructor."""
    if name not in CODECS:
        raise PosebhError(f"unknown codec '{name}'; choose one of {sorted(CODECS)}")
    return CODECS[name](**kwargs)


def dataset_codec(spec, img_size: tuple[int, int]) -> _HeatmapCodec:
    """The codec a recipe dataset (a `DatasetSpec`: codec name, sigma) trains with at the model's input size
    (h, w): heatmaps at a quarter of the input, as every head here outputs."""
    h, w = img_size
    return make_codec(spec.codec, input_size=(w, h), heatmap_size=(w // 4, h // 4), sigma=spec.sigma)

