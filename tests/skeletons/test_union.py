"""Union skeletons by keypoint name, mapping files, and channel maps into a union."""
import pytest

from posebh_cli.errors import PosebhError
from posebh_cli.skeletons import load_skeleton
from posebh_cli.skeletons.union import channel_map, load_mapping, union_skeleton

COCO, MPII, AIC = load_skeleton("coco"), load_skeleton("mpii"), load_skeleton("aic")


def test_coco_mpii_union_is_the_builtin_21_point_skeleton():
    union, maps = union_skeleton([COCO, MPII])
    builtin = load_skeleton("coco_mpii21")
    assert union.keypoints == builtin.keypoints
    assert sorted(union.flip_pairs) == sorted(builtin.flip_pairs)
    assert maps[0] == list(range(17))
    for k, channel in enumerate(maps[1]):  # every MPII channel lands on the union point of the same name
        assert union.keypoints[channel] == MPII.keypoints[k]
    assert union.sigmas[:17] == COCO.sigmas
    assert union.sigmas[union.index("head_top")] == MPII.sigmas[MPII.index("head_top")]
    assert channel_map(MPII, builtin) == maps[1]


def test_mapping_merges_renamed_points(tmp_path):
    path = tmp_path / "mapping.yaml"
    path.write_text("aic: {neck: upper_neck}\n")
    mapping = load_mapping(path)
    union, maps = union_skeleton([COCO, MPII, AIC], mapping)
    assert union.num_keypoints == 21  # AIC adds nothing: neck is MPII's upper_neck, head_top is shared
    assert maps[2][AIC.index("neck")] == union.index("upper_neck")
    assert maps[2][AIC.index("head_top")] == union.index("head_top")
    without, _ = union_skeleton([COCO, MPII, AIC])
    assert without.num_keypoints == 22 and without.keypoints[-1] == "neck"


def test_unmapped_keypoint_names_the_source_and_point():
    with pytest.raises(PosebhError, match="teacher 'mpii'.*keypoint 'neck'"):
        channel_map(AIC, load_skeleton("coco_mpii21"), who="teacher 'mpii'")
    with pytest.raises(PosebhError, match="no keypoint 'nek'"):
        union_skeleton([COCO, AIC], {"aic": {"nek": "upper_neck"}})


def test_bad_mapping_files(tmp_path):
    with pytest.raises(PosebhError, match="mapping file not found"):
        load_mapping(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("aic: [neck, upper_neck]\n")
    with pytest.raises(PosebhError, match="bad.yaml: field 'aic'"):
        load_mapping(bad)
    with pytest.raises(PosebhError, match="two of its keypoints the name 'head_top'"):
        union_skeleton([COCO, AIC], {"aic": {"neck": "head_top"}})


def test_conflicting_mirrors_are_refused():
    # with AIC's left_hip and left_knee swapped by name, left_knee would mirror to right_knee and to right_hip
    with pytest.raises(PosebhError, match="mirrors 'left_knee' to 'right_hip'"):
        union_skeleton([COCO, AIC], {"aic": {"left_knee": "left_hip", "left_hip": "left_knee"}})
