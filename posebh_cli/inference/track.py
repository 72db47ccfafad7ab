"""Track ids across video frames: greedy matching on OKS, box IoU as the fallback, a few frames of gap tolerance.

Each frame, every live track is compared with every new instance. Where both share at least `min_keypoints`
confident keypoints (score >= `kpt_thr`) their similarity is the OKS over those keypoints, with the skeleton's
sigmas and the mean of the two box areas as the scale (`nms.oks_matrix`, the same OKS that OKS-NMS uses);
pairs are taken greedily, most similar first, when the OKS reaches `oks_thr`. Only then are the tracks and
instances left over matched by the IoU of their boxes (>= `iou_thr`), greedily as well: this catches the
instances with too few confident keypoints, and a person whose pose jumped (a left-right swap, a bad frame)
while the box stayed; a pose match is never overruled by a box match. A track that finds no instance survives
`max_gap` frames and can be picked up again; an instance that finds no track starts a new one with the next id
(ids start at 1 and are never reused). mmpose's inferencers match per frame by OKS or by IoU
(`_track_by_oks`, `_track_by_iou`); this does both in that order and adds the gap.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from posebh_cli.errors import PosebhError
from posebh_cli.evaluation.zoo import box_iou
from posebh_cli.inference.nms import oks_matrix
from posebh_cli.inference.smooth import PoseSmoother


@dataclass(frozen=True)
class TrackSettings:
    """How `PoseTracker` matches; the CLI options named in the errors set the first two."""

    oks_thr: float = 0.3      # --track-thr: the lowest OKS that continues a track
    max_gap: int = 5          # --track-gap: frames a track may go unmatched and still continue
    iou_thr: float = 0.3      # the lowest box IoU that continues a track (fallback)
    kpt_thr: float = 0.3      # keypoints at or above this score take part in the OKS
    min_keypoints: int = 3    # fewer confident keypoints in common: no OKS, only the box IoU can match them

    def __post_init__(self) -> None:
        if not 0.0 < self.oks_thr <= 1.0:
            raise PosebhError(f"--track-thr: expected an OKS in (0, 1], got {self.oks_thr}")
        if isinstance(self.max_gap, bool) or not isinstance(self.max_gap, int) or self.max_gap < 0:
            raise PosebhError(f"--track-gap: expected a whole number of frames >= 0, got {self.max_gap}")
        if not 0.0 < self.iou_thr <= 1.0:
            raise PosebhError(f"track iou_thr: expected an IoU in (0, 1], got {self.iou_thr}")
        if self.min_keypoints < 1:
            raise PosebhError(f"track min_keypoints: expected at least 1, got {self.min_keypoints}")


@dataclass
class Track:
    track_id: int
    keypoints: np.ndarray     # [K, 3] of its last match
    bbox: np.ndarray          # xywh of its last match
    missed: int = 0           # frames since its last match


class PoseTracker:
    """Assigns a stable `track_id` to the instances of consecutive frames.

    >>> tracker = PoseTracker(skeleton.sigmas)
    >>> for instances in frames:               # dicts with `keypoints` [K, 3] and `bbox` xywh
    ...     ids = tracker.update([i["keypoints"] for i in instances], [i["bbox"] for i in instances])
    """

    def __init__(self, sigmas: Sequence[float], settings: TrackSettings | None = None):
        self.sigmas = np.asarray(sigmas, dtype=np.float64)
        self.settings = settings or TrackSettings()
        self.tracks: list[Track] = []
        self.next_id = 1

    @property
    def live_ids(self) -> set[int]:
        return {t.track_id for t in self.tracks}

    def update(self, keypoints: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]) -> list[int]:
        """Track ids of this frame's instances, in their order; call once per frame, also for empty frames."""
        keypoints = [np.asarray(k, dtype=np.float64) for k in keypoints]
        boxes = [np.asarray(b, dtype=np.float64) for b in boxes]
        oks, iou = self._similarities(keypoints, boxes)
        pairs = _greedy(iou, self.settings.iou_thr, _greedy(oks, self.settings.oks_thr, {}))
        matched = set(pairs.values())
        for t, track in enumerate(self.tracks):
            track.missed = 0 if t in matched else track.missed + 1
        ids = []
        for d, (kpts, box) in enumerate(zip(keypoints, boxes)):
            if d in pairs:
                track = self.tracks[pairs[d]]
                track.keypoints, track.bbox = kpts, box
            else:
                track = Track(self.next_id, kpts, box)
                self.next_id += 1
                self.tracks.append(track)
            ids.append(track.track_id)
        self.tracks = [t for t in self.tracks if t.missed <= self.settings.max_gap]
        return ids

    def _similarities(self, keypoints: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """[D, T] OKS (NaN where too few shared confident keypoints) and box IoU of instances and tracks."""
        oks = np.full((len(keypoints), len(self.tracks)), np.nan)
        iou = np.zeros_like(oks)
        thr, least = self.settings.kpt_thr, self.settings.min_keypoints
        for d, (kpts, box) in enumerate(zip(keypoints, boxes)):
            for t, track in enumerate(self.tracks):
                iou[d, t] = box_iou(box, track.bbox)
                shared = (kpts[:, 2] >= thr) & (track.keypoints[:, 2] >= thr)
                if shared.sum() >= least:
                    pair = np.stack([kpts[shared, :2], track.keypoints[shared, :2]])
                    areas = np.array([_area(box), _area(track.bbox)])
                    oks[d, t] = oks_matrix(pair, areas, self.sigmas[shared])[0, 1]
        return oks, iou


def follow_frame(instances: list[dict], tracker: PoseTracker, smoother: PoseSmoother | None = None,
                 t: float = 0.0) -> list[dict]:
    """One video frame's instances with their `track_id` (and, with a smoother, smoothed keypoints at time `t` s)."""
    ids = tracker.update([inst["keypoints"] for inst in instances], [inst["bbox"] for inst in instances])
    out = []
    for inst, track_id in zip(instances, ids):
        inst = {**inst, "track_id": track_id}
        if smoother is not None:
            inst["keypoints"] = smoother(track_id, inst["keypoints"], inst["bbox"], t)
        out.append(inst)
    if smoother is not None:
        smoother.keep(tracker.live_ids)
    return out


def _area(box: np.ndarray) -> float:
    return float(max(box[2], 0.0) * max(box[3], 0.0))


def _greedy(similarity: np.ndarray, threshold: float, pairs: dict[int, int]) -> dict[int, int]:
    """`pairs` (instance -> track index) extended by the most similar free pairs at or above `threshold`."""
    pairs = dict(pairs)
    used = set(pairs.values())
    candidates = [(similarity[d, t], d, t) for d, t in zip(*np.nonzero(similarity >= threshold))]
    for _, d, t in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):
        if d not in pairs and t not in used:
            pairs[int(d)] = int(t)
            used.add(t)
    return pairs


__all__ = ["TrackSettings", "Track", "PoseTracker", "follow_frame"]
