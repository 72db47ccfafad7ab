"""Overlays: skeletons drawn on images, and heatmaps blended on images.

Images are RGB uint8 arrays [H, W, 3] (the colours of a `Skeleton` are RGB too); every function returns a
new image and leaves its input untouched.
"""
from __future__ import annotations

import colorsys
from typing import Iterable

import cv2
import numpy as np

from posebh_cli.skeletons import Skeleton

BOX_COLOR = (255, 255, 255)


def line_sizes(image: np.ndarray) -> tuple[int, int]:
    """(thickness, radius) that read well at this image size: about 0.3% and 0.5% of the longer side."""
    side = max(image.shape[:2])
    return max(1, round(side / 320)), max(2, round(side / 200))


def draw_pose(image: np.ndarray, keypoints: np.ndarray, skeleton: Skeleton, kpt_thr: float = 0.3,
              bbox: Iterable[float] | None = None, radius: int | None = None,
              thickness: int | None = None) -> np.ndarray:
    """One instance: links then keypoints (x, y, score [K, 3]); points under `kpt_thr` are not drawn.

    `bbox` (x, y, w, h) draws the instance's box as a thin white frame. `radius` (keypoint circles) and
    `thickness` (links; the frame takes half) are in pixels; None sizes them to the image (`line_sizes`).
    """
    canvas = np.ascontiguousarray(image).copy()
    auto_thickness, auto_radius = line_sizes(canvas)
    thickness = auto_thickness if thickness is None else thickness
    radius = auto_radius if radius is None else radius
    keypoints = np.asarray(keypoints, dtype=np.float64)
    visible = keypoints[:, 2] >= kpt_thr
    points = [(int(round(x)), int(round(y))) for x, y in keypoints[:, :2]]
    if bbox is not None:
        x, y, w, h = (float(v) for v in bbox)
        cv2.rectangle(canvas, (round(x), round(y)), (round(x + w), round(y + h)), BOX_COLOR, max(1, thickness // 2),
                      cv2.LINE_AA)
    for (a, b), color in zip(skeleton.links, skeleton.link_colors):
        if visible[a] and visible[b]:
            cv2.line(canvas, points[a], points[b], tuple(int(c) for c in color), thickness, cv2.LINE_AA)
    for k, color in enumerate(skeleton.keypoint_colors):
        if visible[k]:
            cv2.circle(canvas, points[k], radius, tuple(int(c) for c in color), -1, cv2.LINE_AA)
    return canvas


def draw_instances(image: np.ndarray, instances: list[dict], skeleton: Skeleton, kpt_thr: float = 0.3,
                   draw_bbox: bool = True, radius: int | None = None, thickness: int | None = None) -> np.ndarray:
    """Every instance (dicts with `keypoints` [K, 3] and `bbox` xywh, as the predictor returns them).

    A tracked instance (with `track_id`, videos) gets its box in the track's colour and an id label on it.
    """
    canvas = np.ascontiguousarray(image).copy()
    for inst in instances:
        bbox = inst.get("bbox") if draw_bbox else None
        if "track_id" in inst and inst.get("bbox") is not None:
            canvas = draw_track(canvas, inst["bbox"], int(inst["track_id"]), frame=bbox is not None,
                                thickness=thickness)
            bbox = None  # drawn in the track's colour
        canvas = draw_pose(canvas, inst["keypoints"], skeleton, kpt_thr, bbox, radius=radius, thickness=thickness)
    return canvas


def track_color(track_id: int) -> tuple[int, int, int]:
    """An RGB colour per track id: hues a golden angle apart, so neighbouring ids never look alike."""
    r, g, b = colorsys.hsv_to_rgb((track_id * 0.618034) % 1.0, 0.85, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


def draw_track(image: np.ndarray, bbox: Iterable[float], track_id: int, frame: bool = True,
               thickness: int | None = None) -> np.ndarray:
    """A track's box (`frame`) in its colour and its id on a label at the box's top-left corner."""
    canvas = np.ascontiguousarray(image).copy()
    color = track_color(track_id)
    x, y, w, h = (float(v) for v in bbox)
    line = max(1, (thickness or line_sizes(canvas)[0]) // 2)
    if frame:
        cv2.rectangle(canvas, (round(x), round(y)), (round(x + w), round(y + h)), color, line, cv2.LINE_AA)
    text = str(track_id)
    scale = max(0.3, max(canvas.shape[:2]) / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    left, top = max(0, round(x)), max(0, round(y))
    cv2.rectangle(canvas, (left, top), (left + tw + 4, top + th + base + 4), color, -1)
    cv2.putText(canvas, text, (left + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """A [H, W] map with values in [0, 1] as an RGB jet image."""
    scaled = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    bgr = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def blend_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a [h, w] heatmap (resized to the image) on the image; the colour weight grows with the heat.

    Weighting by the heat keeps the picture visible where the map is cold.
    """
    height, width = image.shape[:2]
    heat = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    if heat.shape != (height, width):
        heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
    weight = (alpha * heat)[..., None]
    blended = image.astype(np.float32) * (1.0 - weight) + colorize(heat).astype(np.float32) * weight
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def max_heatmap(heatmaps: np.ndarray) -> np.ndarray:
    """The max over keypoints of [K, h, w] heatmaps, each map scaled to a peak of 1 (so weak joints show)."""
    heatmaps = np.maximum(np.asarray(heatmaps, dtype=np.float32), 0.0)
    peaks = heatmaps.reshape(len(heatmaps), -1).max(axis=1)
    scaled = heatmaps / np.maximum(peaks, 1e-6)[:, None, None]
    return scaled.max(axis=0)


def heatmap_to_image(heatmap: np.ndarray, matrix: np.ndarray, input_size: tuple[int, int],
                     image_shape: tuple[int, ...]) -> np.ndarray:
    """Paste a crop's [h, w] heatmap back into image space ([H, W], zero outside the crop).

    `matrix` is the image -> model input affine that cut the crop; `input_size` is the input (w, h).
    """
    upsampled = cv2.resize(np.asarray(heatmap, dtype=np.float32), tuple(input_size), interpolation=cv2.INTER_LINEAR)
    return cv2.warpAffine(upsampled, np.asarray(matrix, dtype=np.float64), (image_shape[1], image_shape[0]),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0.0)


def contact_sheet(rows: list[tuple[str, list[np.ndarray]]], tile_height: int = 192, columns: int = 4) -> np.ndarray:
    """One picture of many overlays: a row per (label, images), up to `columns` images scaled to `tile_height`,
    the label on a dark strip above them; rows are padded to the widest."""
    strip, gap = 22, 4
    lines = []
    for label, images in rows:
        tiles = [cv2.resize(im, (max(1, round(im.shape[1] * tile_height / im.shape[0])), tile_height),
                            interpolation=cv2.INTER_AREA) for im in images[:columns]]
        body = np.full((tile_height, max(1, sum(t.shape[1] for t in tiles) + gap * max(0, len(tiles) - 1)), 3), 32,
                       np.uint8)
        x = 0
        for tile in tiles:
            body[:, x:x + tile.shape[1]] = tile
            x += tile.shape[1] + gap
        head = np.full((strip, body.shape[1], 3), 32, np.uint8)
        cv2.putText(head, label, (4, strip - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (235, 235, 235), 1, cv2.LINE_AA)
        lines.append(np.concatenate([head, body]))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(line, ((0, gap), (0, width - line.shape[1]), (0, 0)), constant_values=32) for line in lines]
    return np.concatenate(lines)


__all__ = ["contact_sheet", "heatmap_to_image", "draw_pose", "draw_instances", "blend_heatmap", "colorize",
           "max_heatmap", "line_sizes", "track_color", "draw_track"]
