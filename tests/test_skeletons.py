import pytest
import yaml
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.errors import PosebhError
from posebh_cli.skeletons import list_skeletons, load_skeleton, skeleton_from_dict

EXPECTED = {"coco": 17, "aic": 14, "mpii": 16, "ap10k": 17, "apt36k": 17, "coco_wholebody": 133, "interhand": 21,
            "smpl24": 24, "coco_mpii21": 21}


def test_builtin_counts_and_consistency():
    assert set(EXPECTED) <= set(list_skeletons())
    for name, k in EXPECTED.items():
        sk = load_skeleton(name)
        assert sk.num_keypoints == k == len(sk.sigmas) == len(sk.keypoint_colors)
        flip = sk.flip_indices
        assert sorted(flip) == list(range(k))
        assert all(flip[flip[i]] == i for i in range(k))
        for a, b in sk.flip_pairs:  # mirrored names swap left/right
            assert sk.keypoints[a].replace("left", "X") == sk.keypoints[b].replace("right", "X") or name == "coco_wholebody"


def test_exact_sigmas_from_references():
    assert load_skeleton("coco").sigmas[:3] == (0.026, 0.025, 0.025)
    assert load_skeleton("ap10k").sigmas[:5] == (0.025, 0.025, 0.026, 0.035, 0.035)
    assert load_skeleton("aic").sigmas[0] == pytest.approx(0.01388152)
    wb = load_skeleton("coco_wholebody")
    assert wb.parts == {"body": (0, 17), "foot": (17, 23), "face": (23, 91), "lefthand": (91, 112), "righthand": (112, 133)}
    assert wb.sigmas[23:26] == (0.042, 0.043, 0.044) and wb.sigmas[91] == 0.029 and wb.sigmas[-1] == 0.031
    # Face mirror pairs follow the 68-landmark convention: jaw 0<->16, eye corners 36<->45.
    assert wb.flip_indices[23] == 39 and wb.flip_indices[23 + 36] == 23 + 45
    assert load_skeleton("smpl24").sigmas[15] == 0.035  # the jaw
    assert load_skeleton("interhand").keypoints[20] == "wrist"


def test_user_skeleton_yaml_roundtrip(tmp_path):
    sk = load_skeleton("ap10k")
    path = tmp_path / "mine.yaml"
    data = sk.to_dict()
    data["name"] = "mine"
    path.write_text(yaml.safe_dump(data))
    mine = load_skeleton(str(path))
    assert mine.keypoints == sk.keypoints and mine.flip_pairs == sk.flip_pairs and mine.links == sk.links


@pytest.mark.parametrize("change, message", [
    ({"sigmas": [0.1, 0.1]}, "field 'sigmas': expected 3 values"),
    ({"flip_pairs": [["a", "zz"]]}, "field 'flip_pairs': unknown keypoint 'zz'"),
    ({"keypoints": ["a", "a", "b"]}, "field 'keypoints': duplicate names"),
    ({"sigmas": [0.1, float("nan"), 0.1]}, "positive finite"),
    ({"colour": 1}, "unknown key"),
    ({"body_plan": "fish"}, "field 'body_plan'"),
])
def test_bad_user_skeleton(tmp_path, change, message):
    data = {"name": "bad", "keypoints": ["a", "b", "c"], "sigmas": [0.1, 0.1, 0.1]}
    data.update(change)
    with pytest.raises(PosebhError, match=message):
        skeleton_from_dict(data, "bad.yaml")


def test_cli_list_show_and_error(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["skeletons", "list"])
    assert result.exit_code == 0 and "coco_wholebody" in result.output
    result = runner.invoke(app, ["skeletons", "show", "mpii"])
    assert result.exit_code == 0 and "head_top" in result.output
    result = runner.invoke(app, ["skeletons", "show", "nope"])
    assert result.exit_code == 2 and "unknown skeleton 'nope'" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nkeypoints: [a]\nsigmas: [0]\n")
    result = runner.invoke(app, ["skeletons", "show", str(bad)])
    assert result.exit_code == 2 and "bad.yaml: field 'sigmas'" in result.output
