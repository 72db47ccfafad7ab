"""Rendering of the synthetic skeleton zoo: backgrounds, textured figures, occluders and keypoint visibility.

Figures are drawn as capsules (limbs) and balls (heads) in far-to-near order. Limb textures carry the side:
stripes on the figure's left parts use a cool colour, on its right parts a warm one, so a flipped image is
distinguishable from an unflipped one. Visibility is decided analytically: a keypoint is occluded (v=1) when an
occluder covers its pixel or when some capsule's front surface lies in front of it; outside the image it is v=0.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from posebh_cli.data.synth.rig import Camera, Figure

OCCLUDED, VISIBLE = 1, 2


def _bgr(h: float, s: float, v: float) -> np.ndarray:
    """One OpenCV HSV colour (h in 0..180) as float BGR."""
    return cv2.cvtColor(np.uint8([[[h % 180, s, v]]]), cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def random_color(rng: np.random.Generator) -> np.ndarray:
    return _bgr(rng.uniform(0, 180), rng.uniform(40, 255), rng.uniform(50, 255))


def side_colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stripe colours: left parts cool (green to blue), right parts warm (red to yellow)."""
    left = _bgr(rng.uniform(60, 120), rng.uniform(150, 255), rng.uniform(150, 255))
    right = _bgr(rng.uniform(-10, 25), rng.uniform(150, 255), rng.uniform(150, 255))
    return left, right


# ----------------------------------------------------------------------------- backgrounds
BACKGROUND_STYLES = ("gradient", "blobs", "clutter", "tiles")


def render_background(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, int]:
    """A cluttered background image (float32 BGR) and its style index."""
    style = int(rng.integers(len(BACKGROUND_STYLES)))
    ends = np.stack([random_color(rng), random_color(rng)])
    ends = ends.reshape(2, 1, 3) if rng.random() < 0.5 else ends.reshape(1, 2, 3)
    img = cv2.resize(ends, (width, height), interpolation=cv2.INTER_LINEAR)       # a linear gradient
    if style == 1:
        cells = rng.uniform(0, 255, (height // 24 + 2, width // 24 + 2, 3)).astype(np.float32)
        img = 0.4 * img + 0.6 * cv2.resize(cells, (width, height), interpolation=cv2.INTER_CUBIC)
    elif style == 3:
        size = int(rng.integers(8, 32))
        small = ((np.arange(height // size + 1)[:, None] + np.arange(width // size + 1)[None]) % 2).astype(np.uint8)
        checker = cv2.resize(small, (small.shape[1] * size, small.shape[0] * size), interpolation=cv2.INTER_NEAREST)
        checker = checker[:height, :width, None].astype(np.float32)
        img = img * (1 - checker) + random_color(rng) * checker
    shapes = int(rng.integers(2, 6)) + (12 if style == 2 else 0)
    for _ in range(shapes):
        draw_random_shape(img, rng, (0, 0, width, height), scale=rng.uniform(0.05, 0.4))
    img += noise(rng, img.shape, rng.uniform(2, 12))
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    return img, style


def noise(rng: np.random.Generator, shape: tuple, sigma: float) -> np.ndarray:
    """Zero-mean uniform pixel noise with standard deviation `sigma` (cheaper than Gaussian, looks the same)."""
    return (rng.random(shape, dtype=np.float32) - 0.5) * np.float32(sigma * np.sqrt(12.0))


def draw_random_shape(img: np.ndarray, rng: np.random.Generator, box: tuple[float, float, float, float],
                      scale: float, mask: np.ndarray | None = None) -> None:
    """A filled rectangle, ellipse, polygon or thick line inside `box` (x, y, w, h); also marks `mask`."""
    x, y, w, h = box
    cx, cy = x + rng.uniform(0, w), y + rng.uniform(0, h)
    size = max(4.0, scale * max(w, h))
    color = tuple(float(c) for c in random_color(rng))
    kind = int(rng.integers(4))
    if kind == 0:
        half = rng.uniform(0.3, 1.0, 2) * size / 2
        pts = np.array([[cx - half[0], cy - half[1]], [cx + half[0], cy - half[1]], [cx + half[0], cy + half[1]],
                        [cx - half[0], cy + half[1]]])
    elif kind == 1:
        axes = (int(rng.uniform(0.2, 0.5) * size), int(rng.uniform(0.2, 0.5) * size))
        pts = cv2.ellipse2Poly((int(cx), int(cy)), axes, int(rng.uniform(0, 180)), 0, 360, 10)
    elif kind == 2:
        n = int(rng.integers(3, 7))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rng.uniform(0.2, 0.5, n) * size
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
    else:
        angle = rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * size / 2, np.sin(angle) * size / 2
        ends = ((int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)))
        thickness = max(1, int(size * rng.uniform(0.05, 0.2)))
        cv2.line(img, *ends, color, thickness)
        if mask is not None:
            layer = np.zeros(img.shape[:2], np.uint8)
            cv2.line(layer, *ends, 1, thickness)
            mask |= layer > 0
        return
    pts = np.round(pts).astype(np.int32)
    cv2.fillPoly(img, [pts], color)
    if mask is not None:
        layer = np.zeros(img.shape[:2], np.uint8)
        cv2.fillPoly(layer, [pts], 1)
        mask |= layer > 0


# ----------------------------------------------------------------------------- figures
def figure_palette(fig: Figure, rng: np.random.Generator, body_colors: dict[str, np.ndarray]) -> None:
    """Store per-part base colours and the side stripe colours on the figure."""
    left, right = side_colors(rng)
    fig.colors = {"parts": body_colors, "left": left, "right": right,
                  "period": float(rng.uniform(0.25, 0.6)), "dark": _bgr(0, 0, rng.uniform(10, 50))}




def draw_capsule(img: np.ndarray, labels: np.ndarray, label: int, pa: np.ndarray, pb: np.ndarray, r: float,
                 base: np.ndarray, stripe: np.ndarray, period_px: float) -> None:
    """A shaded, striped capsule from pa to pb (pixels) with radius r, alpha-blended into img."""
    height, width = img.shape[:2]
    if r < 1.5:   # too thin for texture
        ends = _pt(pa), _pt(pb)
        cv2.line(img, *ends, tuple(float(c) for c in base), max(1, int(round(2 * r))), cv2.LINE_AA)
        cv2.line(labels, *ends, label, max(1, int(round(2 * r))))
        return
    x0, y0 = np.floor(np.minimum(pa, pb) - r - 1).astype(int)
    x1, y1 = np.ceil(np.maximum(pa, pb) + r + 2).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x0 >= x1 or y0 >= y1:
        return
    yy = np.arange(y0, y1, dtype=np.float32)[:, None]
    xx = np.arange(x0, x1, dtype=np.float32)[None, :]
    axis = pb - pa
    length2 = float(axis @ axis)
    if length2 < 1e-6:
        t = np.zeros((1, 1), np.float32)
        along = np.broadcast_to(yy - pa[1], (y1 - y0, x1 - x0))
    else:
        t = np.clip(((xx - pa[0]) * axis[0] + (yy - pa[1]) * axis[1]) / length2, 0, 1)
        along = t * np.sqrt(length2)
    dist = np.hypot(xx - (pa[0] + t * axis[0]), yy - (pa[1] + t * axis[1]))
    alpha = np.clip(r + 0.5 - dist, 0, 1)
    if not alpha.any():
        return
    shade = 1.0 - 0.45 * np.clip(dist / max(r, 0.5), 0, 1) ** 2
    band = (np.sin(2 * np.pi * along / max(period_px, 2.0)) > 0.3).astype(np.float32)
    color = (base * (1 - 0.55 * band[..., None]) + stripe * (0.55 * band[..., None])) * shade[..., None]
    crop = img[y0:y1, x0:x1]
    crop += (color - crop) * alpha[..., None]
    labels[y0:y1, x0:x1][alpha > 0.5] = label


def draw_figures(img: np.ndarray, figures: list[Figure], camera: Camera) -> np.ndarray:
    """Draw every capsule of every figure far to near; return the label map (figure index + 1, 0 = none)."""
    labels = np.zeros(img.shape[:2], np.int16)
    items = []
    for f, fig in enumerate(figures):
        uv = camera.project(fig.joints)
        for capsule in fig.capsules:
            a, b, radius, _ = capsule
            z = (fig.joints[a, 2] + fig.joints[b, 2]) / 2
            items.append((z, f, capsule, uv[a], uv[b], radius * camera.focal[0] / max(z, 1e-3)))
    items.sort(key=lambda item: -item[0])
    for z, f, capsule, pa, pb, r in items:
        fig = figures[f]
        a, b, _, part = capsule
        side = fig.side_of_bone[b]
        base = fig.colors["parts"].get(part, fig.colors["parts"]["default"])
        stripe = fig.colors[side] if side in ("left", "right") else base * 0.6
        period = max(r * 2 * fig.colors["period"] * 3, 3.0)
        draw_capsule(img, labels, f + 1, pa, pb, r, base, stripe, period)
        if a == b and part == "head":
            draw_face(img, fig, camera, fig.joints[a])
    return labels


def _facing(fig: Figure, camera: Camera, names: list[str], center: np.ndarray) -> list[np.ndarray]:
    """Pixels of the named rig points that lie on the camera side of the head centre."""
    index = {p: i for i, p in enumerate(fig.rig.point_names)}
    out = []
    for name in names:
        i = index.get(name)
        if i is not None and fig.points[i, 2] < center[2]:
            out.append(camera.project(fig.points[i]))
    return out


def _pt(p: np.ndarray) -> tuple[int, int]:
    """A pixel position for OpenCV drawing, kept in a range it accepts."""
    return int(round(float(np.clip(p[0], -1e4, 1e4)))), int(round(float(np.clip(p[1], -1e4, 1e4))))


def draw_face(img: np.ndarray, fig: Figure, camera: Camera, center: np.ndarray) -> None:
    """Eyes, nose and mouth marks on a head ball, only where they face the camera."""
    dark = tuple(float(c) for c in fig.colors["dark"])
    scale = camera.focal[0] / max(center[2], 1e-3)
    eye_r = max(1, int(round(scale * 14 * fig.extras.get("size", 1.0))))
    if fig.rig.body_plan == "human":
        for lo in (36, 42):
            pts = _facing(fig, camera, [f"face_{i}" for i in range(lo, lo + 6)], center)
            if len(pts) == 6:
                c = np.mean(pts, 0)
                cv2.circle(img, _pt(c), eye_r, dark, -1, cv2.LINE_AA)
        for lo, hi, closed in ((17, 22, False), (22, 27, False), (48, 60, True)):
            pts = _facing(fig, camera, [f"face_{i}" for i in range(lo, hi)], center)
            if len(pts) == hi - lo:
                color = (40.0, 40.0, 150.0) if closed else dark
                line = np.clip(np.round(pts), -1e4, 1e4).astype(np.int32)
                cv2.polylines(img, [line], closed, color, max(1, eye_r // 2), cv2.LINE_AA)
        nose = _facing(fig, camera, ["face_30"], center)
    else:
        for name in ("left_eye", "right_eye"):
            for p in _facing(fig, camera, [name], center):
                cv2.circle(img, _pt(p), eye_r, dark, -1, cv2.LINE_AA)
        nose = [camera.project(fig.points[fig.rig.point_names.index("nose")])]
    for p in nose:
        cv2.circle(img, _pt(p), max(1, eye_r), (20.0, 20.0, 20.0), -1, cv2.LINE_AA)


def draw_occluders(img: np.ndarray, labels: np.ndarray, rng: np.random.Generator, boxes: list, probability: float = 0.35
                   ) -> np.ndarray:
    """Random shapes over some figures. Returns the occluder mask; covered label pixels become 0."""
    mask = np.zeros(img.shape[:2], bool)
    for box in boxes:
        if rng.random() < probability and box[2] > 2 and box[3] > 2:
            draw_random_shape(img, rng, box, scale=rng.uniform(0.2, 0.55), mask=mask)
    labels[mask] = 0
    return mask


# ----------------------------------------------------------------------------- boxes and visibility
@dataclass
class Capsules:
    """All capsules of an image as arrays: 3D axis ends [C, 3], their pixels [C, 2], radius in mm and pixels [C]."""

    a: np.ndarray
    b: np.ndarray
    pa: np.ndarray
    pb: np.ndarray
    radius: np.ndarray
    rpx: np.ndarray


def capsule_arrays(figures: list[Figure], camera: Camera) -> Capsules:
    a3, b3, radius = [np.zeros((0, 3))], [np.zeros((0, 3))], [np.zeros(0)]
    for fig in figures:
        if fig.capsules:
            a3.append(fig.joints[[c[0] for c in fig.capsules]])
            b3.append(fig.joints[[c[1] for c in fig.capsules]])
            radius.append(np.array([c[2] for c in fig.capsules]))
    a3, b3, radius = np.concatenate(a3), np.concatenate(b3), np.concatenate(radius)
    rpx = radius * camera.focal[0] / np.maximum((a3[:, 2] + b3[:, 2]) / 2, 1e-3)
    return Capsules(a3, b3, camera.project(a3), camera.project(b3), radius, rpx)


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance [N, C] from points p [N, D] to segments a-b [C, D], and the position t [N, C] along them."""
    axis = b - a
    length2 = np.maximum((axis ** 2).sum(1), 1e-9)
    t = np.clip(((p[:, None, :] - a[None]) * axis[None]).sum(-1) / length2[None], 0, 1)
    return np.linalg.norm(p[:, None, :] - (a[None] + t[..., None] * axis[None]), axis=-1), t


def occluded_by_capsules(points: np.ndarray, uv: np.ndarray, depth: np.ndarray, eps: np.ndarray, caps: Capsules,
                         on_surface: np.ndarray) -> np.ndarray:
    """True where some capsule's front surface covers the pixel `uv` [N, 2] nearer than `depth - eps` [N].
    A capsule that contains an inner 3D point (a joint inside its own flesh; not a point `on_surface` [N] of
    the skin) does not hide it."""
    if len(caps.radius) == 0:
        return np.zeros(len(uv), bool)
    dist, t = _segment_distance(uv, caps.pa, caps.pb)
    ratio = dist / np.maximum(caps.rpx[None], 1e-6)
    front = (caps.a[None, :, 2] + t * (caps.b - caps.a)[None, :, 2]
             - caps.radius[None] * np.sqrt(np.clip(1 - ratio ** 2, 0, 1)))
    inside = (_segment_distance(points, caps.a, caps.b)[0] < caps.radius[None]) & ~on_surface[:, None]
    return ((ratio < 1.0) & ~inside & (front < (depth - eps)[:, None])).any(1)


def keypoints_with_visibility(figures: list[Figure], camera: Camera, occluders: np.ndarray, width: int, height: int
                              ) -> list[dict[str, np.ndarray]]:
    """For each figure, every skeleton of its body plan as an array [K, 3] of (x, y, v) in pixels."""
    caps = capsule_arrays(figures, camera)
    out = []
    for fig in figures:
        rig = fig.rig
        uv = camera.project(fig.points)
        depth = fig.points[:, 2] - rig.point_surface * fig.extras.get("size", 1.0)
        eps = np.full(len(uv), rig.eps * fig.extras.get("size", 1.0))
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height) & (fig.points[:, 2] > 0)
        hidden = occluded_by_capsules(fig.points, uv, depth, eps, caps, rig.on_surface)
        px = np.clip(np.floor(uv).astype(int), 0, [width - 1, height - 1])
        hidden |= occluders[px[:, 1], px[:, 0]]
        v = np.where(inside, np.where(hidden, OCCLUDED, VISIBLE), 0)
        per_skeleton = {}
        for name, index in rig.skeleton_index.items():
            per_skeleton[name] = np.concatenate([uv[index], v[index, None]], 1)
        out.append(per_skeleton)
    return out


def figure_boxes(figures: list[Figure], camera: Camera, labels: np.ndarray) -> list[list[float]]:
    """Box [x, y, w, h] of each figure's visible pixels; the clipped capsule extent when nothing is visible."""
    height, width = labels.shape
    caps = capsule_arrays(figures, camera)
    boxes, start = [], 0
    for f, fig in enumerate(figures):
        ys, xs = np.nonzero(labels == f + 1)
        if len(xs):
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        else:
            part = slice(start, start + len(fig.capsules))
            ends = np.concatenate([caps.pa[part], caps.pb[part]])
            r = np.concatenate([caps.rpx[part]] * 2)[:, None]
            (x0, y0), (x1, y1) = np.maximum((ends - r).min(0), 0), np.minimum((ends + r).max(0), [width, height])
        start += len(fig.capsules)
        boxes.append([float(x0), float(y0), float(max(x1 - x0, 0)), float(max(y1 - y0, 0))])
    return boxes


def visible_area(labels: np.ndarray, count: int) -> list[int]:
    """Pixel count of each figure's visible silhouette."""
    areas = np.bincount(labels.ravel().astype(np.int64), minlength=count + 1)
    return [int(a) for a in areas[1:count + 1]]
