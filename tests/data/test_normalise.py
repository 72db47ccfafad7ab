"""The table-lookup ImageNet normalisation equals the float arithmetic it replaces, bit for bit."""
import numpy as np

from posebh_cli.data.dataset import IMAGENET_MEAN, IMAGENET_STD, normalise


def test_lookup_matches_arithmetic_for_every_value():
    rgb = np.stack(np.meshgrid(np.arange(256), np.arange(3)), -1)[..., :1].repeat(3, -1).astype(np.uint8)  # [3, 256, 3]
    rgb[..., 1] = rgb[..., 0][:, ::-1]  # other values per channel, so a channel mix-up shows
    expected = ((rgb.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    got = normalise(rgb)
    assert got.dtype == np.float32 and got.shape == (3, 3, 256) and got.flags["C_CONTIGUOUS"]
    assert np.array_equal(got, expected)


def test_float_input_still_normalised():
    rgb = np.full((2, 2, 3), 255.0, np.float64)
    assert np.allclose(normalise(rgb)[:, 0, 0], (1.0 - IMAGENET_MEAN) / IMAGENET_STD)
