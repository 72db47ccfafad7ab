"""Top-down geometry: person box -> (center, scale) -> affine crop, point transforms, flips.

Conventions:
* `scale` is the crop size in image pixels (w, h), already padded (mmpose 1.x; 0.x divided it by 200).
* `rotation` is in degrees; a positive angle turns the content counter-clockwise on screen (about `center`).
* Standard warp (MSRA datasets): `center` goes to (W/2, H/2) of the input and one image pixel is
  W / scale_w input pixels, the same matrix as the classic 3-point `cv2.getAffineTransform` construction.
* UDP warp (UDP datasets): `center` goes to ((W-1)/2, (H-1)/2) and the factor is (W-1)/scale_w per axis,
  so pixel centres at both ends of the crop line up (unbiased data processing).
* Horizontal flip of an input of width W maps x to W - 1 - x.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch


def box_to_center_scale(bbox_xywh, aspect_ratio: float = 192 / 256,
                        padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """Box [x, y, w, h] -> center [2] and scale [2] (pixels): grow the short side to w/h = aspect_ratio, then pad."""
    x, y, w, h = (float(v) for v in bbox_xywh[:4])
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    scale = np.array([w, h], dtype=np.float32) * padding
    return center, scale


def _rotation(deg: float) -> np.ndarray:
    rad = math.radians(deg)
    c, s = math.cos(rad), math.sin(rad)
    return np.array([[c, -s], [s, c]], dtype=np.float64)


def get_warp_matrix(center, scale, rotation: float, output_size: tuple[int, int], use_udp: bool) -> np.ndarray:
    """The [2, 3] matrix taking image pixels to crop pixels of size `output_size` (w, h)."""
    out_w, out_h = output_size
    if use_udp:
        factor = np.array([(out_w - 1) / scale[0], (out_h - 1) / scale[1]], dtype=np.float64)
        target = np.array([(out_w - 1) * 0.5, (out_h - 1) * 0.5])
    else:
        # The 3-point construction uses the width for both axes, so the factor is isotropic.
        factor = np.full(2, out_w / scale[0], dtype=np.float64)
        target = np.array([out_w * 0.5, out_h * 0.5])
    linear = factor[:, None] * _rotation(-rotation)
    shift = target - linear @ np.asarray(center, dtype=np.float64)
    return np.concatenate([linear, shift[:, None]], axis=1).astype(np.float32)


def flip_matrix(width: int) -> np.ndarray:
    """[2, 3] matrix of the horizontal flip x -> width - 1 - x."""
    return np.array([[-1, 0, width - 1], [0, 1, 0]], dtype=np.float32)


def compose(second: np.ndarray, first: np.ndarray) -> np.ndarray:
    """[2, 3] matrix of applying `first`, then `second`."""
    a = np.vstack([second, [0, 0, 1]]).astype(np.float64)
    b = np.vstack([first, [0, 0, 1]]).astype(np.float64)
    return (a @ b)[:2].astype(np.float32)


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64)).astype(np.float32)


def affine_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a [2, 3] matrix to points [..., 2]."""
    points = np.asarray(points, dtype=np.float32)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_image(image: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Crop an image with a [2, 3] matrix (bilinear, black border) to `output_size` (w, h)."""
    return cv2.warpAffine(image, matrix, (int(output_size[0]), int(output_size[1])), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def input_to_image(points, centers, scales, input_size: tuple[int, int], use_udp: bool, rotations=None) -> np.ndarray:
    """Map crop points [B, K, 2] (input pixels) back to image pixels; centers/scales [B, 2], rotations [B].

    Closed-form inverse of `get_warp_matrix`, vectorised over the batch.
    """
    points = np.asarray(points, dtype=np.float64)
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    scales = np.asarray(scales, dtype=np.float64).reshape(-1, 2)
    out_w, out_h = input_size
    if use_udp:
        factor = np.stack([(out_w - 1) / scales[:, 0], (out_h - 1) / scales[:, 1]], axis=-1)
        target = np.array([(out_w - 1) * 0.5, (out_h - 1) * 0.5])
    else:
        factor = np.repeat((out_w / scales[:, 0])[:, None], 2, axis=1)
        target = np.array([out_w * 0.5, out_h * 0.5])
    local = (points - target) / factor[:, None, :]
    if rotations is not None:
        rad = np.radians(np.asarray(rotations, dtype=np.float64).reshape(-1))
        c, s = np.cos(rad)[:, None], np.sin(rad)[:, None]
        # Undo R(-rotation): apply R(+rotation).
        local = np.stack([c * local[..., 0] - s * local[..., 1], s * local[..., 0] + c * local[..., 1]], axis=-1)
    return (local + centers[:, None, :]).astype(np.float32)


def flip_keypoints(keypoints: np.ndarray, flip_indices, width: int) -> np.ndarray:
    """Mirror keypoints [K, >=2] in an image of `width` and swap left/right channels (extra columns follow)."""
    flipped = np.array(keypoints, dtype=np.float32, copy=True)
    flipped[:, 0] = width - 1 - flipped[:, 0]
    return flipped[list(flip_indices)]


def flip_heatmaps(heatmaps, flip_indices, shift: bool):
    """Mirror heatmaps [..., K, h, w] (numpy or torch) and swap channels by `flip_indices`.

    `shift` moves the mirrored maps one pixel right, compensating the 3/4-pixel asymmetry of MSRA heatmaps
    (stride 4) under x -> W - 1 - x; UDP heatmaps need no shift.
    """
    index = list(flip_indices)
    if isinstance(heatmaps, torch.Tensor):
        flipped = heatmaps.flip(-1)[..., index, :, :]
        if shift:
            flipped = torch.cat([flipped[..., :1], flipped[..., :-1]], dim=-1)
        return flipped
    flipped = np.asarray(heatmaps)[..., index, :, ::-1]
    if shift:
        flipped = np.concatenate([flipped[..., :1], flipped[..., :-1]], axis=-1)
    return np.ascontiguousarray(flipped)
