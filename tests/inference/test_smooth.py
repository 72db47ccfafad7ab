import numpy as np
import pytest

from posebh_cli.errors import PosebhError
from posebh_cli.inference.smooth import OneEuroFilter, OneEuroSettings, PoseSmoother

FPS = 30.0


def run(filt, signal: np.ndarray) -> np.ndarray:
    return np.array([filt(x, n / FPS) for n, x in enumerate(signal)])


def acceleration(track: np.ndarray) -> float:
    return float(np.abs(np.diff(track, n=2, axis=0)).mean())


def test_a_noisy_constant_comes_out_much_steadier():
    noisy = 50.0 + np.random.default_rng(0).normal(0, 1.0, (300, 1, 1))   # 10 s of a still point, 1 px noise
    smoothed = run(OneEuroFilter(OneEuroSettings(min_cutoff=1.0, beta=0.0)), noisy)
    assert acceleration(smoothed) < 0.15 * acceleration(noisy)
    assert abs(smoothed[30:].mean() - 50.0) < 0.2 and smoothed[30:].std() < 0.5 * noisy.std()


def test_a_ramp_is_followed_with_bounded_lag_and_beta_cuts_the_lag():
    ramp = (np.arange(90) * 4.0)[:, None, None]                             # 120 px/s
    lag_slow = (ramp - run(OneEuroFilter(OneEuroSettings(min_cutoff=1.0, beta=0.0)), ramp))[-30:]
    lag_fast = (ramp - run(OneEuroFilter(OneEuroSettings(min_cutoff=1.0, beta=0.05)), ramp))[-30:]
    # A first-order low pass trails a ramp by speed x tau = 120 px/s x 1 / (2 pi 1 Hz): about 19 px, steadily.
    assert np.ptp(lag_slow) < 0.5 and 15 < lag_slow.mean() < 20
    assert 0 < lag_fast.mean() < 0.5 * lag_slow.mean()


def test_the_first_sample_passes_and_repeated_times_hold():
    filt = OneEuroFilter()
    np.testing.assert_array_equal(filt(np.array([[3.0, 4.0]]), 1.0), [[3.0, 4.0]])
    np.testing.assert_array_equal(filt(np.array([[9.0, 9.0]]), 1.0), [[3.0, 4.0]])


def test_pose_smoother_keeps_one_filter_per_track_and_forgets_ended_ones():
    smoother = PoseSmoother(OneEuroSettings(min_cutoff=1.0, beta=0.0))
    kpts = np.array([[10.0, 10.0, 0.8], [20.0, 30.0, 0.4]])
    smoother(1, kpts, [0, 0, 40, 80], 0.0)
    smoother(2, kpts + 100, [100, 100, 40, 80], 0.0)
    moved = smoother(1, kpts + [8, 0, 0], [8, 0, 40, 80], 1 / FPS)
    assert np.all((moved[:, 0] > kpts[:, 0]) & (moved[:, 0] < kpts[:, 0] + 8))
    np.testing.assert_array_equal(moved[:, 2], kpts[:, 2])                  # scores as predicted
    smoother.keep({2})
    assert set(smoother.filters) == {2}


def test_the_speed_is_measured_in_box_lengths_so_beta_does_not_depend_on_resolution():
    small = np.array([[10.0, 10.0, 1.0]])
    outs = []
    for zoom in (1.0, 4.0):
        smoother = PoseSmoother(OneEuroSettings(min_cutoff=1.0, beta=0.5))
        for n in range(10):
            out = smoother(1, small * [zoom, zoom, 1] + [n * 5 * zoom, 0, 0], [0, 0, 50 * zoom, 100 * zoom], n / FPS)
        outs.append(out[0, 0] / zoom)
    assert outs[0] == pytest.approx(outs[1])


@pytest.mark.parametrize("kwargs, option", [({"min_cutoff": 0.0}, "--smooth-min-cutoff"),
                                            ({"beta": -1.0}, "--smooth-beta"),
                                            ({"d_cutoff": float("nan")}, "--smooth-d-cutoff")])
def test_bad_settings_name_the_option(kwargs, option):
    with pytest.raises(PosebhError, match=f"^{option}: "):
        OneEuroSettings(**kwargs)
