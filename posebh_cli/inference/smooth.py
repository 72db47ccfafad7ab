"""Keypoint smoothing for videos: the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) per track.

The One-Euro filter is a low-pass filter whose cutoff frequency follows the speed of the signal:
`cutoff = min_cutoff + beta * |speed|`. Slow, jittery points are smoothed hard (little jitter), fast moves open the
filter (little lag). The speed itself is the low-passed derivative (cutoff `d_cutoff`). Times are in seconds,
so the cutoffs are in Hz and one setting serves any frame rate.

`PoseSmoother` keeps one filter per track and filters its keypoints in units of the track's size (the longer
side of its first box), so `beta` means the same for a person who fills the frame and for one far away: the
speed is in box lengths per second. Keypoint scores are left as predicted. The defaults (1 Hz, 2, 1 Hz) cut the
frame-to-frame jitter about fourfold and lower the keypoint error on noisy zoo clips at 25 fps
(`scripts/bench_tracking.py`, docs/benchmarks.md); a lower `beta` smooths more and lags in fast moves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from posebh_cli.errors import PosebhError


@dataclass(frozen=True)
class OneEuroSettings:
    """The filter's three parameters; the CLI options named in the errors set them."""

    min_cutoff: float = 1.0   # --smooth-min-cutoff (Hz): the cutoff at rest; lower = smoother, more lag
    beta: float = 2.0         # --smooth-beta: cutoff gained per box length per second of speed; higher = less lag
    d_cutoff: float = 1.0     # --smooth-d-cutoff (Hz): the cutoff of the speed estimate

    def __post_init__(self) -> None:
        for option, value in (("--smooth-min-cutoff", self.min_cutoff), ("--smooth-d-cutoff", self.d_cutoff)):
            if not (math.isfinite(value) and value > 0):
                raise PosebhError(f"{option}: expected a frequency in Hz > 0, got {value}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise PosebhError(f"--smooth-beta: expected a number >= 0, got {self.beta}")


def _alpha(dt: float, cutoff: float | np.ndarray) -> float | np.ndarray:
    """The smoothing factor of an exponential filter with this cutoff (Hz) at sampling interval `dt` (s)."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter over arrays [..., D]: every row is one point, its speed the norm over the last axis.

    >>> f = OneEuroFilter(OneEuroSettings())
    >>> smoothed = [f(x, t) for t, x in samples]    # t in seconds, increasing
    """

    def __init__(self, settings: OneEuroSettings | None = None):
        self.settings = settings or OneEuroSettings()
        self.x: np.ndarray | None = None     # the last filtered value
        self.dx: np.ndarray | None = None    # the last filtered derivative
        self.t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.x is None:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.t
        if dt <= 0:  # a repeated time stamp adds nothing
            return self.x.copy()
        s = self.settings
        a_d = _alpha(dt, s.d_cutoff)
        self.dx = a_d * (x - self.x) / dt + (1.0 - a_d) * self.dx
        speed = np.linalg.norm(self.dx, axis=-1, keepdims=True)
        a = _alpha(dt, s.min_cutoff + s.beta * speed)
        self.x = a * x + (1.0 - a) * self.x
        self.t = t
        return self.x.copy()


class PoseSmoother:
    """One `OneEuroFilter` per track over its keypoints' (x, y), in units of the track's first box size."""

    def __init__(self, settings: OneEuroSettings | None = None):
        self.settings = settings or OneEuroSettings()
        self.filters: dict[int, tuple[OneEuroFilter, float]] = {}

    def __call__(self, track_id: int, keypoints: np.ndarray, bbox, t: float) -> np.ndarray:
        """The smoothed keypoints [K, 3] of `track_id` at time `t` (s); scores unchanged."""
        keypoints = np.asarray(keypoints, dtype=np.float64)
        if track_id not in self.filters:
            self.filters[track_id] = (OneEuroFilter(self.settings), max(float(bbox[2]), float(bbox[3]), 1.0))
        filt, size = self.filters[track_id]
        out = keypoints.copy()
        out[:, :2] = filt(keypoints[:, :2] / size, t) * size
        return out

    def keep(self, track_ids: set[int]) -> None:
        """Forget the filters of tracks that ended."""
        self.filters = {k: v for k, v in self.filters.items() if k in track_ids}


__all__ = ["OneEuroSettings", "OneEuroFilter", "PoseSmoother"]
