import cv2
import numpy as np
import pytest
import torch

from posebh_cli.data.codecs import MSRAHeatmap, UDPHeatmap, blur_heatmaps, make_codec
from posebh_cli.errors import PosebhError


def interior_points(n: int, seed: int = 0, input_size=(192, 256)) -> np.ndarray:
    # Keep peaks >= 5 heatmap px from the border so the 11-px blur of the DARK decoders sees the whole Gaussian.
    rng = np.random.default_rng(seed)
    return rng.uniform([20, 20], [input_size[0] - 20, input_size[1] - 20], (n, 2)).astype(np.float32)


def roundtrip(codec, points):
    heatmaps, weights = codec.encode(points, np.ones(len(points)))
    coords, scores = codec.decode(heatmaps[None])
    return heatmaps, weights, coords[0], scores[0]


def test_msra_encode_peak_on_rounded_pixel_and_window():
    codec = MSRAHeatmap()
    heatmaps, weights = codec.encode(np.array([[41.0, 62.5]]), np.array([1]))
    assert heatmaps.shape == (1, 64, 48) and heatmaps.dtype == np.float32
    y, x = np.unravel_index(heatmaps[0].argmax(), heatmaps[0].shape)
    assert (x, y) == (int(41 / 4 + 0.5), int(62.5 / 4 + 0.5)) == (10, 16)
    assert heatmaps[0, 16, 10] == pytest.approx(1.0)
    assert heatmaps[0, 16, 10 + 6] > 0 and heatmaps[0, 16, 10 + 7] == 0     # radius 3 sigma = 6
    assert weights[0] == 1


def test_msra_roundtrip_within_half_stride():
    # Integer-pixel encoding: the error is the rounding, at most half a heatmap pixel (2 input px at stride 4).
    points = interior_points(200)
    _, _, coords, scores = roundtrip(MSRAHeatmap(), points)
    assert np.abs(coords - points).max() <= 2.0 + 1e-4
    assert np.allclose(scores, 1.0)


def test_msra_quarter_offset_moves_toward_higher_neighbour():
    heatmaps = np.zeros((1, 1, 64, 48), np.float32)
    heatmaps[0, 0, 20, 10] = 1.0
    heatmaps[0, 0, 20, 11] = 0.5
    heatmaps[0, 0, 19, 10] = 0.5
    coords, scores = MSRAHeatmap().decode(heatmaps)
    assert coords[0, 0] == pytest.approx([(10.25) * 4, (19.75) * 4])
    assert scores[0, 0] == pytest.approx(1.0)


def test_unbiased_msra_with_dark_recovers_subpixel_points():
    points = interior_points(200, seed=1)
    _, _, coords, _ = roundtrip(MSRAHeatmap(unbiased=True, dark=True), points)
    assert np.abs(coords - points).max() < 0.05


def test_udp_roundtrip_is_tight():
    points = interior_points(200, seed=2)
    heatmaps, _, coords, scores = roundtrip(UDPHeatmap(), points)
    # < 0.02 px in the middle; within 5 heatmap px of the border mmpose's reflect-101 blur costs up to ~0.06 px.
    assert np.median(np.abs(coords - points)) < 0.02
    assert np.abs(coords - points).max() < 0.1
    assert scores.min() > 0.9
    # Exact scale: the last input pixel centre is the last heatmap pixel centre.
    last, _ = UDPHeatmap().encode(np.array([[191.0, 255.0]]), np.array([1]))
    assert last[0, 63, 47] == pytest.approx(1.0)


@pytest.mark.parametrize("codec", [MSRAHeatmap(), UDPHeatmap(), MSRAHeatmap(unbiased=True, dark=True)])
def test_other_sizes(codec):
    small = type(codec)(input_size=(96, 128), heatmap_size=(24, 32), sigma=1.5)
    points = interior_points(50, seed=3, input_size=(96, 128))
    heatmaps, _, coords, _ = roundtrip(small, points)
    assert heatmaps.shape == (50, 32, 24)
    assert np.abs(coords - points).max() <= 2.0 + 1e-4


def test_points_outside_map_and_invisible_get_zero_weight():
    codec = UDPHeatmap()
    points = np.array([[-40.0, 100.0], [100.0, 300.0], [100.0, 100.0], [-5.0, 100.0]], np.float32)
    heatmaps, weights = codec.encode(points, np.array([1, 1, 0, 1]))
    assert list(weights) == [0, 0, 0, 1]      # the last one's window still overlaps the map
    assert heatmaps[:3].max() == 0 and heatmaps[3].max() > 0
    coords, scores = codec.decode(heatmaps[None])
    assert list(scores[0, :3]) == [0, 0, 0]


def test_nonpositive_heatmaps_score_zero():
    heatmaps = -np.ones((2, 3, 64, 48), np.float32)
    for codec in (MSRAHeatmap(), UDPHeatmap()):
        _, scores = codec.decode(heatmaps)
        assert scores.shape == (2, 3) and np.all(scores == 0)


@pytest.mark.parametrize("codec", [MSRAHeatmap(), MSRAHeatmap(dark=True), UDPHeatmap()])
def test_torch_and_numpy_decode_agree(codec):
    heatmaps = np.stack([codec.encode(interior_points(5, seed=s), np.ones(5))[0] for s in range(3)])
    heatmaps += np.random.default_rng(0).uniform(0, 0.01, heatmaps.shape).astype(np.float32)
    coords_np, scores_np = codec.decode(heatmaps)
    coords_t, scores_t = codec.decode(torch.from_numpy(heatmaps))
    assert isinstance(coords_t, torch.Tensor) and isinstance(coords_np, np.ndarray)
    assert coords_np.shape == (3, 5, 2) and scores_np.shape == (3, 5)
    assert np.allclose(coords_t.numpy(), coords_np) and np.allclose(scores_t.numpy(), scores_np)


@pytest.mark.parametrize("codec", [MSRAHeatmap(), UDPHeatmap()])
def test_encode_batch_matches_subpixel_encode(codec):
    points = torch.from_numpy(np.stack([interior_points(4, seed=s) for s in range(2)]))
    weights = torch.tensor([[1.0, 0.0, 0.3, 1.0], [1.0, 1.0, 1.0, 0.0]])
    maps = codec.encode_batch(points, weights)
    assert maps.shape == (2, 4, 64, 48)
    assert maps[0, 1].max() == 0 and maps[1, 3].max() == 0
    reference = UDPHeatmap() if codec.use_udp else MSRAHeatmap(unbiased=True)
    expected, _ = reference.encode(points[0].numpy(), np.ones(4))
    assert np.allclose(maps[0, 0].numpy(), expected[0], atol=1e-6)
    coords, _ = codec.decode(maps)
    keep = weights > 0
    assert (coords - points)[keep].abs().max() < 0.25 * codec.scale[0] + 1e-4


def test_make_codec():
    assert isinstance(make_codec("udp"), UDPHeatmap)
    codec = make_codec("msra", sigma=3.0, dark=True)
    assert isinstance(codec, MSRAHeatmap) and codec.sigma == 3.0 and codec.dark and not codec.use_udp
    dark = make_codec("dark", sigma=3.0)
    assert isinstance(dark, MSRAHeatmap) and dark.sigma == 3.0 and dark.unbiased and dark.dark
    with pytest.raises(PosebhError, match="unknown codec 'simcc'"):
        make_codec("simcc")


def test_recipes_accept_every_codec_name():
    from posebh_cli.data.codecs import CODECS
    from posebh_cli.recipe import CODECS as RECIPE_CODECS
    assert set(RECIPE_CODECS) == set(CODECS)


@pytest.mark.parametrize("codec", [MSRAHeatmap(dark=True, guarded_newton=True), UDPHeatmap(guarded_newton=True)])
def test_guarded_newton_step_skips_a_saddle(codec):
    # A lone spike between two blobs: after blurring, the argmax sits in a valley (a saddle of the log map);
    # a Newton step there heads for the saddle point of the quadratic model; the guarded option stays put.
    xs, ys = np.arange(48)[None, :], np.arange(64)[:, None]
    blobs = sum(np.exp(-((xs - x) ** 2 + (ys - 30.0) ** 2) / 8) for x in (15.0, 26.0))
    heatmaps = blobs.astype(np.float32)[None, None]
    heatmaps[0, 0, 30, 20] = 1.05
    coords, scores = codec.decode(heatmaps)
    assert scores[0, 0] == pytest.approx(1.05)
    assert np.allclose(coords[0, 0] / np.array(codec.scale), [20, 30], atol=1e-5)


def test_decode_half_precision_tensors():
    codec = UDPHeatmap()
    points = interior_points(3, seed=4)
    heatmaps = torch.from_numpy(codec.encode(points, np.ones(3))[0])[None]
    coords, scores = codec.decode(heatmaps.to(torch.bfloat16))
    assert coords.dtype == torch.float32 and np.abs(coords[0].numpy() - points).max() < 0.5


def test_blur_matches_opencv_on_a_zero_border():
    # The reference decoders blur each map with cv2.GaussianBlur(k, sigma=0) on a zero border, then restore the max.
    heatmaps = np.random.default_rng(5).random((1, 2, 20, 16)).astype(np.float32)
    ours = blur_heatmaps(torch.from_numpy(heatmaps), 11).numpy()
    for k in range(2):
        canvas = np.pad(heatmaps[0, k], 5)
        blurred = cv2.GaussianBlur(canvas, (11, 11), 0)[5:-5, 5:-5]
        blurred *= heatmaps[0, k].max() / blurred.max()
        assert np.allclose(ours[0, k], blurred, atol=1e-5)
