import math

import cv2
import numpy as np
import pytest
import torch

from posebh_cli.data.codecs import MSRAHeatmap, UDPHeatmap
from posebh_cli.data.topdown import (affine_points, box_to_center_scale, compose, flip_heatmaps, flip_keypoints,
                                     flip_matrix, get_warp_matrix, input_to_image, invert, warp_image)

INPUT = (192, 256)


def test_box_to_center_scale_fixes_aspect_then_pads():
    center, scale = box_to_center_scale([10, 20, 30, 100], aspect_ratio=0.75, padding=1.25)
    assert center == pytest.approx([25, 70])
    assert scale == pytest.approx([75 * 1.25, 100 * 1.25])           # too narrow: widen
    _, scale = box_to_center_scale([0, 0, 150, 100], aspect_ratio=0.75, padding=1.25)
    assert scale == pytest.approx([150 * 1.25, 200 * 1.25])          # too wide: heighten


def _rotate(v, deg):
    r = math.radians(deg)
    return np.array([v[0] * math.cos(r) - v[1] * math.sin(r), v[0] * math.sin(r) + v[1] * math.cos(r)])


def test_standard_warp_equals_three_point_construction():
    center, scale, rot = np.array([120.0, 90.0]), np.array([60.0, 80.0]), 25.0
    src_dir = _rotate([0, -0.5 * scale[0]], rot)
    dst_c, dst_dir = np.array([INPUT[0] / 2, INPUT[1] / 2]), np.array([0, -0.5 * INPUT[0]])

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    src = np.float32([center, center + src_dir, third(center, center + src_dir)])
    dst = np.float32([dst_c, dst_c + dst_dir, third(dst_c, dst_c + dst_dir)])
    expected = cv2.getAffineTransform(src, dst)
    assert np.allclose(get_warp_matrix(center, scale, rot, INPUT, use_udp=False), expected, atol=1e-4)


def test_udp_warp_maps_crop_corners_to_pixel_centres():
    center, scale = np.array([100.0, 100.0]), np.array([96.0, 128.0])
    matrix = get_warp_matrix(center, scale, 0.0, INPUT, use_udp=True)
    corners = center + np.array([[-48.0, -64.0], [48.0, 64.0]])
    assert np.allclose(affine_points(corners, matrix), [[0, 0], [191, 255]], atol=1e-4)


@pytest.mark.parametrize("use_udp", [False, True])
@pytest.mark.parametrize("rotation", [0.0, 33.0, -70.0])
def test_affine_round_trips(use_udp, rotation):
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 300, (3, 17, 2))
    centers = rng.uniform(100, 200, (3, 2))
    scales = np.stack([rng.uniform(50, 150, 3), rng.uniform(50, 150, 3) * 4 / 3], axis=1)
    crop_points = np.stack([affine_points(points[b], get_warp_matrix(centers[b], scales[b], rotation, INPUT, use_udp))
                            for b in range(3)])
    back = input_to_image(crop_points, centers, scales, INPUT, use_udp, rotations=np.full(3, rotation))
    assert np.allclose(back, points, atol=1e-3)
    matrix = get_warp_matrix(centers[0], scales[0], rotation, INPUT, use_udp)
    assert np.allclose(affine_points(affine_points(points[0], matrix), invert(matrix)), points[0], atol=1e-3)


@pytest.mark.parametrize("use_udp", [False, True])
def test_dot_lands_where_the_point_goes(use_udp):
    image = np.zeros((240, 320, 3), np.uint8)
    dot = np.array([140.0, 100.0])
    image[100, 140] = 255
    matrix = get_warp_matrix(np.array([150.0, 110.0]), np.array([48.0, 64.0]), 20.0, INPUT, use_udp)
    crop = warp_image(image, matrix, INPUT)
    assert crop.shape == (256, 192, 3)
    y, x = np.unravel_index(crop[..., 0].astype(np.float32).argmax(), crop.shape[:2])
    # The dot is magnified 4x: the bright area's centroid is the transformed point.
    mask = crop[..., 0].astype(np.float32)
    ys, xs = np.mgrid[: mask.shape[0], : mask.shape[1]]
    centroid = np.array([(xs * mask).sum(), (ys * mask).sum()]) / mask.sum()
    assert np.allclose(centroid, affine_points(dot, matrix), atol=0.5)
    assert abs(x - affine_points(dot, matrix)[0]) <= 2 and abs(y - affine_points(dot, matrix)[1]) <= 2


def test_flip_matrix_composes_with_warp():
    matrix = get_warp_matrix(np.array([50.0, 60.0]), np.array([30.0, 40.0]), 0.0, INPUT, use_udp=True)
    flipped = compose(flip_matrix(INPUT[0]), matrix)
    p = np.array([[55.0, 61.0]])
    assert affine_points(p, flipped)[0, 0] == pytest.approx(INPUT[0] - 1 - affine_points(p, matrix)[0, 0])


def test_flip_keypoints_mirrors_and_swaps():
    keypoints = np.array([[10.0, 5.0, 2], [20.0, 6.0, 1], [30.0, 7.0, 0]], np.float32)
    flipped = flip_keypoints(keypoints, [1, 0, 2], width=100)
    assert flipped.tolist() == [[79.0, 6.0, 1], [89.0, 5.0, 2], [69.0, 7.0, 0]]


def test_flip_heatmaps_numpy_and_torch_agree():
    heatmaps = np.random.default_rng(0).random((2, 3, 8, 6)).astype(np.float32)
    for shift in (False, True):
        a = flip_heatmaps(heatmaps, [2, 1, 0], shift)
        b = flip_heatmaps(torch.from_numpy(heatmaps), [2, 1, 0], shift).numpy()
        assert np.array_equal(a, b)
    plain = flip_heatmaps(heatmaps, [2, 1, 0], False)
    assert np.array_equal(plain[:, 0], heatmaps[:, 2, :, ::-1])
    shifted = flip_heatmaps(heatmaps, [2, 1, 0], True)
    assert np.array_equal(shifted[..., 1:], plain[..., :-1]) and np.array_equal(shifted[..., 0], plain[..., 0])


def test_udp_flip_of_encoded_heatmaps_equals_encoding_of_flipped_points():
    codec = UDPHeatmap()
    rng = np.random.default_rng(1)
    keypoints = np.concatenate([rng.uniform(20, 170, (4, 1)), rng.uniform(20, 230, (4, 1)), np.ones((4, 1))], 1)
    flip_indices = [1, 0, 3, 2]
    heatmaps, _ = codec.encode(keypoints[:, :2], keypoints[:, 2])
    flipped_points = flip_keypoints(keypoints, flip_indices, INPUT[0])
    expected, _ = codec.encode(flipped_points[:, :2], flipped_points[:, 2])
    assert np.allclose(flip_heatmaps(heatmaps, flip_indices, shift=False), expected, atol=1e-5)


def test_msra_flip_is_closer_with_the_one_pixel_shift():
    codec = MSRAHeatmap()
    rng = np.random.default_rng(2)
    keypoints = np.concatenate([rng.uniform(20, 170, (64, 1)), rng.uniform(20, 230, (64, 1)), np.ones((64, 1))], 1)
    flip_indices = list(range(64))
    heatmaps, _ = codec.encode(keypoints[:, :2], keypoints[:, 2])
    truth = flip_keypoints(keypoints, flip_indices, INPUT[0])[:, :2]
    errors = {}
    for shift in (False, True):
        coords, _ = codec.decode(flip_heatmaps(heatmaps, flip_indices, shift)[None])
        errors[shift] = np.abs(coords[0, :, 0] - truth[:, 0])
    # Unshifted the flip is biased by -3 input px on average, shifted by +1: the shift is the better estimate.
    assert errors[True].mean() < errors[False].mean()
    assert errors[True].max() <= 3.0 + 1e-4 and errors[False].max() <= 5.0 + 1e-4


@pytest.mark.parametrize("use_udp", [False, True])
def test_positive_rotation_turns_content_counter_clockwise(use_udp):
    center = np.array([100.0, 100.0])
    matrix = get_warp_matrix(center, np.array([96.0, 128.0]), 90.0, INPUT, use_udp)
    middle = affine_points(center, matrix)
    right_of_center = affine_points(center + [10.0, 0.0], matrix)
    assert right_of_center[0] == pytest.approx(middle[0], abs=1e-4) and right_of_center[1] < middle[1] - 5
