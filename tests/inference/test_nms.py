import numpy as np

from posebh_cli.inference.nms import oks_matrix, oks_nms, rescore


def test_rescore_uses_box_score_times_mean_of_confident_keypoints():
    scores = np.array([[0.9, 0.5, 0.1, 0.2], [0.1, 0.05, 0.2, 0.0]])
    out = rescore(scores, np.array([0.8, 0.9]))
    assert np.isclose(out[0], 0.8 * (0.9 + 0.5) / 2)  # 0.1 and 0.2 are not above 0.2
    assert out[1] == 0.0


def test_oks_is_one_for_identical_poses_and_matches_the_formula():
    rng = np.random.default_rng(0)
    kpts = rng.uniform(0, 100, size=(1, 5, 2))
    shifted = kpts + np.array([3.0, 4.0])  # every keypoint 5 px away
    sigmas = np.full(5, 0.05)
    oks = oks_matrix(np.concatenate([kpts, shifted]), np.array([1000.0, 3000.0]), sigmas)
    assert np.isclose(oks[0, 0], 1.0)
    expected = np.exp(-25.0 / (0.1 ** 2) / 2000.0 / 2.0)
    assert np.isclose(oks[0, 1], expected) and np.isclose(oks[1, 0], expected)


def test_oks_nms_suppresses_near_duplicates_only():
    base = np.stack([np.linspace(0, 50, 17), np.linspace(0, 80, 17)], axis=1)
    kpts = np.stack([base, base + 0.5, base + 200.0])  # 1 is a duplicate of 0, 2 is elsewhere
    areas = np.full(3, 5000.0)
    sigmas = np.full(17, 0.05)
    keep = oks_nms(kpts, np.array([0.7, 0.9, 0.8]), areas, sigmas, threshold=0.9)
    assert keep == [1, 2]
    # With a threshold above the duplicate's OKS nothing is suppressed.
    oks01 = oks_matrix(kpts, areas, sigmas)[0, 1]
    assert sorted(oks_nms(kpts, np.array([0.7, 0.9, 0.8]), areas, sigmas, threshold=min(oks01 + 1e-6, 1.0))) == [0, 1, 2]
    assert oks_nms(np.zeros((0, 17, 2)), np.zeros(0), np.zeros(0), sigmas) == []
