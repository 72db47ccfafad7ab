"""The zoo's video clips: the same figures in every frame, in the same order, moving smoothly (tracking truth)."""
import numpy as np
import pytest

from posebh_cli.data.synth import synth_zoo
from posebh_cli.errors import PosebhError
from posebh_cli.evaluation.zoo import clips, load_groundtruth


def test_clip_figures_keep_their_order_and_move_smoothly_and_clip_length_overrides_the_spec(tmp_path):
    synth_zoo(tmp_path, seed=1, sizes={"3dpw": 24, "apt36k": 6}, datasets=["3dpw", "apt36k"], workers=1,
              progress=False, clip_length=12, image_size=(96, 72))
    truth = load_groundtruth(tmp_path / "3dpw" / ".zoo_groundtruth.json")
    sequences = clips(truth, "train")
    assert [len(frames) for frames in sequences.values()] == [12, 12]
    for frames in sequences.values():
        figures = [truth["images"][name] for name in frames]
        assert len({len(f) for f in figures}) == 1            # the same figures in every frame
        # the k-th figure's points barely move from frame to frame, much less than the distance to another figure
        points = np.array([[np.asarray(fig["keypoints"]["coco"])[:, :2] for fig in frame] for frame in figures])
        step = np.linalg.norm(np.diff(points, axis=0), axis=-1).mean()
        assert step < 3.0, step
        if points.shape[1] == 2:
            apart = np.linalg.norm(points[:, 0] - points[:, 1], axis=-1).mean()
            assert apart > 5 * step
    apt = load_groundtruth(tmp_path / "apt36k" / ".zoo_groundtruth.json")
    assert list(clips(apt)) == ["video0000"] and len(clips(apt)["video0000"]) == 8   # 6 + 2 held out


def test_a_bad_clip_length_is_one_line(tmp_path):
    with pytest.raises(PosebhError, match=r"^--clip-length: expected a whole number of frames >= 1, got 0$"):
        synth_zoo(tmp_path, datasets=["3dpw"], clip_length=0, progress=False)
