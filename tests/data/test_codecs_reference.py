"""Decoders against independent, loop-by-loop re-derivations of mmpose 0.x's post-processing rules.

The expected values below are computed pixel by pixel with OpenCV and numpy from the rules as mmpose 0.x states
them (argmax, then the quarter-pixel step or post_dark_udp), not with the vectorised torch code under test.
"""
import cv2
import numpy as np
import pytest

from posebh_cli.data.codecs import MSRAHeatmap, UDPHeatmap


def quarter_rule(heatmap: np.ndarray) -> tuple[float, float]:
    """argmax, then +-0.25 on both axes when 1 < px < W-1 and 1 < py < H-1 (heatmap pixels)."""
    h, w = heatmap.shape
    py, px = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    x, y = float(px), float(py)
    if 1 < px < w - 1 and 1 < py < h - 1:
        x += 0.25 * np.sign(heatmap[py, px + 1] - heatmap[py, px - 1])
        y += 0.25 * np.sign(heatmap[py + 1, px] - heatmap[py - 1, px])
    return x, y


def dark_udp_rule(heatmap: np.ndarray, kernel: int = 11) -> tuple[float, float]:
    """argmax, cv2.GaussianBlur (default border), clip [1e-3, 50], log, edge pad, x - (H + eps I)^-1 g."""
    py, px = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    blurred = cv2.GaussianBlur(heatmap.astype(np.float32), (kernel, kernel), 0)
    logs = np.log(np.clip(blurred, 0.001, 50)).astype(np.float64)
    p = np.pad(logs, 1, mode="edge")
    cy, cx = py + 1, px + 1
    dx = 0.5 * (p[cy, cx + 1] - p[cy, cx - 1])
    dy = 0.5 * (p[cy + 1, cx] - p[cy - 1, cx])
    dxx = p[cy, cx + 1] - 2 * p[cy, cx] + p[cy, cx - 1]
    dyy = p[cy + 1, cx] - 2 * p[cy, cx] + p[cy - 1, cx]
    dxy = 0.5 * (p[cy + 1, cx + 1] - p[cy, cx + 1] - p[cy + 1, cx] + 2 * p[cy, cx]
                 - p[cy, cx - 1] - p[cy - 1, cx] + p[cy - 1, cx - 1])
    hessian = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
    step = np.linalg.inv(hessian) @ np.array([dx, dy])
    return px - step[0], py - step[1]


@pytest.mark.parametrize("peak", [(1, 20), (2, 20), (46, 30), (47, 30), (10, 1), (10, 2), (10, 62), (10, 63), (20, 30)])
def test_quarter_offset_needs_both_axes_inside(peak):
    rng = np.random.default_rng(sum(peak))
    heatmap = rng.random((64, 48)).astype(np.float32) * 0.5
    heatmap[peak[1], peak[0]] = 1.0
    coords, _ = MSRAHeatmap().decode(heatmap[None, None])
    assert coords[0, 0] / 4.0 == pytest.approx(quarter_rule(heatmap))


def test_quarter_offset_on_row_one_is_zero_on_both_axes():
    # Hand-computed: peak at (20, 1), right neighbour higher than left, so the old per-axis rule moved x by +0.25;
    # mmpose leaves the whole point on its pixel because y = 1 fails 1 < y.
    heatmap = np.zeros((64, 48), np.float32)
    heatmap[1, 20], heatmap[1, 21], heatmap[2, 20] = 1.0, 0.5, 0.3
    coords, _ = MSRAHeatmap().decode(heatmap[None, None])
    assert coords[0, 0].tolist() == [80.0, 4.0]


def test_dark_udp_equals_the_reference_rule_everywhere_on_the_map():
    # Peaks on a grid that reaches every border: there the reflect-101 blur, the clipping and the unguarded
    # Newton step all matter.
    codec = UDPHeatmap()
    xs = np.linspace(-1.5, 47.5, 20)
    ys = np.linspace(-1.5, 63.5, 20)
    points = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2) * np.array(codec.scale)
    heatmaps, weights = codec.encode(points, np.ones(len(points)))
    keep = weights > 0
    coords, _ = codec.decode(heatmaps[None])
    ours = coords[0][keep] / np.array(codec.scale)
    expected = np.array([dark_udp_rule(h) for h in heatmaps[keep]])
    assert np.abs(ours - expected).max() < 2e-3


def test_dark_udp_steps_where_the_hessian_is_not_concave():
    # A spike in a valley between two blobs: the Hessian of the log map is indefinite. mmpose still steps.
    xs, ys = np.arange(48)[None, :], np.arange(64)[:, None]
    heatmap = sum(np.exp(-((xs - x) ** 2 + (ys - 30.0) ** 2) / 8) for x in (15.0, 26.0)).astype(np.float32)
    heatmap[30, 20] = 1.05
    coords, _ = UDPHeatmap().decode(heatmap[None, None])
    expected = dark_udp_rule(heatmap)
    assert abs(expected[0] - 20) > 0.1  # the reference moves the point
    assert coords[0, 0] / np.array(UDPHeatmap().scale) == pytest.approx(expected, abs=2e-3)
    guarded, _ = UDPHeatmap(guarded_newton=True).decode(heatmap[None, None])
    assert guarded[0, 0] / np.array(UDPHeatmap().scale) == pytest.approx([20, 30], abs=1e-5)
