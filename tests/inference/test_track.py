import numpy as np
import pytest

from posebh_cli.errors import PosebhError
from posebh_cli.inference.smooth import PoseSmoother
from posebh_cli.inference.track import PoseTracker, TrackSettings, follow_frame
from posebh_cli.skeletons import load_skeleton

SIGMAS = load_skeleton("coco").sigmas
# A standing figure in a 60 x 120 box: 17 COCO points spread over the box (distinct, so OKS can tell poses apart).
POSE = np.stack([np.linspace(10, 50, 17), np.linspace(5, 115, 17)], axis=1)


def person(x: float, y: float = 0.0, score: float = 0.9, pose: np.ndarray = POSE) -> tuple[np.ndarray, list[float]]:
    kpts = np.concatenate([pose + [x, y], np.full((len(pose), 1), score)], axis=1)
    return kpts, [x, y, 60.0, 120.0]


def step(tracker: PoseTracker, people: list) -> list[int]:
    return tracker.update([k for k, _ in people], [b for _, b in people])


def test_ids_stay_with_people_who_move_and_cross():
    tracker = PoseTracker(SIGMAS)
    mirrored = POSE.copy()
    mirrored[:, 0] = 60 - mirrored[:, 0]   # the other person leans the other way
    ids = []
    for t in range(30):  # A walks right, B walks left; they pass through each other around t = 15
        a, b = person(50 + 6 * t), person(230 - 6 * t, pose=mirrored)
        order = [a, b] if t % 2 else [b, a]  # the detector's order says nothing
        got = step(tracker, order)
        ids.append(got if t % 2 else got[::-1])
    assert sorted(ids[0]) == [1, 2] and all(pair == ids[0] for pair in ids), ids


def test_a_gap_within_the_tolerance_keeps_the_id_and_a_longer_one_does_not():
    tracker = PoseTracker(SIGMAS, TrackSettings(max_gap=3))
    assert step(tracker, [person(100)]) == [1]
    for _ in range(3):
        assert step(tracker, []) == []
    assert step(tracker, [person(102)]) == [1]       # unseen 3 frames: picked up again
    for _ in range(4):
        step(tracker, [])
    assert step(tracker, [person(104)]) == [2]       # unseen 4 frames: a new track


def test_newcomers_get_new_ids_and_ids_are_never_reused():
    tracker = PoseTracker(SIGMAS, TrackSettings(max_gap=0))
    assert step(tracker, [person(0)]) == [1]
    assert step(tracker, [person(2), person(200)]) == [1, 2]
    assert step(tracker, [person(200)]) == [2]
    assert step(tracker, [person(4)]) == [3]         # track 1 ended (gap 0); the same place is a new person


def test_box_iou_is_the_fallback_when_too_few_keypoints_are_confident():
    tracker = PoseTracker(SIGMAS)
    step(tracker, [person(100, score=0.1), person(300, score=0.1)])
    # The keypoints are garbage (low score) and jump around; the boxes barely move.
    noisy = [person(x, score=0.1, pose=np.random.default_rng(x).uniform(0, 120, (17, 2))) for x in (303, 98)]
    assert step(tracker, noisy) == [2, 1]
    # A confident pose that jumped (here: every point swapped) in a box that stayed continues by the box.
    tracker = PoseTracker(SIGMAS)
    step(tracker, [person(100)])
    assert step(tracker, [person(101, pose=POSE[::-1])]) == [1]
    # ... but the box never overrules a pose: two people walk into each other's boxes (16 px in a frame) and keep
    # their ids by OKS, where the IoU alone would swap them.
    for settings, expected in ((TrackSettings(), [1, 2]), (TrackSettings(min_keypoints=18), [2, 1])):
        tracker = PoseTracker(SIGMAS, settings)
        step(tracker, [person(100), person(130, pose=POSE[::-1])])
        assert step(tracker, [person(116), person(114, pose=POSE[::-1])]) == expected


def test_follow_frame_sets_ids_and_smooths_keypoints():
    tracker, smoother = PoseTracker(SIGMAS), PoseSmoother()
    first = [{"keypoints": person(100)[0], "bbox": person(100)[1]}]
    second = [{"keypoints": person(104)[0], "bbox": person(104)[1]}]
    out1 = follow_frame(first, tracker, smoother, t=0.0)
    out2 = follow_frame(second, tracker, smoother, t=0.04)
    assert out1[0]["track_id"] == out2[0]["track_id"] == 1 and "track_id" not in second[0]
    moved = out2[0]["keypoints"][:, 0] - 100
    assert np.all(moved > POSE[:, 0]) and np.all(moved < POSE[:, 0] + 4)   # partway: smoothed, not raw
    np.testing.assert_array_equal(out2[0]["keypoints"][:, 2], second[0]["keypoints"][:, 2])


@pytest.mark.parametrize("kwargs, option", [({"oks_thr": 0.0}, "--track-thr"), ({"oks_thr": 1.5}, "--track-thr"),
                                            ({"max_gap": -1}, "--track-gap"), ({"max_gap": 2.5}, "--track-gap")])
def test_bad_settings_name_the_option(kwargs, option):
    with pytest.raises(PosebhError, match=f"^{option}: "):
        TrackSettings(**kwargs)
