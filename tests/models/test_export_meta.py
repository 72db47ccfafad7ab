"""`posebh export` to ONNX: the metadata the file carries, prototype-skeleton exports, and one-line errors."""
import json

import pytest
import torch
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.errors import PosebhError
from posebh_cli.models.checkpoint import save_checkpoint
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import load_skeleton, skeleton_from_dict

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
runner = CliRunner()

# A skeleton no YAML of the package knows: the file alone must carry it.
BIRD = skeleton_from_dict({"name": "bird3", "keypoints": ["beak", "left_wing", "right_wing"],
                           "flip_pairs": [["left_wing", "right_wing"]], "sigmas": [0.03, 0.05, 0.05],
                           "links": [["beak", "left_wing"], ["beak", "right_wing"]], "body_plan": "quadruped"})
RECIPE = {"model": {"img_size": [64, 48]},
          "datasets": [{"name": "coco", "codec": "udp", "sigma": 2.0},
                       {"name": "ap10k", "codec": "msra", "sigma": 1.5, "box_padding": 1.1}]}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = PoseModel("vit_pico", ["coco", "ap10k"], [load_skeleton("coco"), load_skeleton("ap10k")],
                      with_embedding=True, img_size=(64, 48), prototype_only=[("birds", BIRD)])
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "run", recipe=RECIPE)


def _export(*args):
    return runner.invoke(app, ["export", *map(str, args)])


def _props(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_export_writes_the_metadata_predict_needs(checkpoint, tmp_path):
    out = tmp_path / "ap10k.onnx"
    result = _export("--checkpoint", checkpoint, "--dataset", "ap10k", "--out", out)
    assert result.exit_code == 0, result.output
    assert "head ap10k, 17 keypoints" in result.output and "max abs difference" in result.output
    props = _props(out)
    meta = json.loads(props["posebh"])
    ap10k = load_skeleton("ap10k")
    assert meta["source"] == "head" and meta["name"] == "ap10k" and meta["skeleton"]["name"] == "ap10k"
    assert meta["keypoint_names"] == list(ap10k.keypoints) and meta["flip_indices"] == ap10k.flip_indices
    assert meta["sigmas"] == pytest.approx(ap10k.sigmas)
    assert meta["input_size"] == [48, 64] and meta["heatmap_size"] == [12, 16]
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406]) and meta["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert meta["box_padding"] == pytest.approx(1.1)  # the recipe's, as the torch Predictor reads it
    codec = meta["codec"]
    assert (codec["name"], codec["sigma"], codec["refine"]) == ("msra", 1.5, "quarter_offset") and codec["flip_shift"]
    assert codec["dark"] is False and codec["heatmap_size"] == [12, 16]
    assert meta["posebh_version"] and meta["input"] == "images" and meta["output"] == "heatmaps"
    assert props["posebh.skeleton"] == "ap10k" and props["posebh.input_size"] == "48x64"
    assert props["posebh.codec"] == "msra" and props["posebh.keypoints"].split(",") == list(ap10k.keypoints)
    # The default is the first head; UDP spells out its decoder and takes no flip shift.
    assert _export("--checkpoint", checkpoint, "--out", tmp_path / "coco.onnx").exit_code == 0
    coco = json.loads(_props(tmp_path / "coco.onnx")["posebh"])
    assert coco["name"] == "coco" and coco["codec"]["refine"] == "dark_udp" and not coco["codec"]["flip_shift"]
    assert meta["flip_test"] is True and coco["flip_test"] is True   # the recipe names no flip augmentation


def test_a_model_trained_without_flips_exports_without_flip_test(tmp_path):
    from posebh_cli.inference.onnx_model import parse_metadata
    from posebh_cli.inference.predictor import Predictor

    torch.manual_seed(0)
    model = PoseModel("vit_pico", ["coco"], [load_skeleton("coco")], img_size=(64, 48))
    no_flips = save_checkpoint(model, tmp_path / "run", recipe={**RECIPE, "train": {"augmentation": {"flip": 0.0}}})
    out = tmp_path / "coco.onnx"
    assert _export("--checkpoint", no_flips, "--out", out).exit_code == 0
    props = _props(out)
    assert json.loads(props["posebh"])["flip_test"] is False
    assert Predictor(out).flip is False and Predictor(out, flip=True).flip is True
    older = json.loads(props["posebh"])
    del older["flip_test"]   # a file exported before the field existed is flip-tested, as then
    assert parse_metadata({"posebh": json.dumps(older)}, out).flip_test is True
    with pytest.raises(PosebhError, match="field 'flip_test': expected true or false"):
        parse_metadata({"posebh": json.dumps({**older, "flip_test": "no"})}, out)


def test_export_a_prototype_skeleton(checkpoint, tmp_path):
    from posebh_cli.inference.predictor import Predictor

    out = tmp_path / "birds.onnx"
    result = _export("--checkpoint", checkpoint, "--prototypes", "birds", "--out", out)
    assert result.exit_code == 0, result.output
    assert "prototype heatmaps of birds, 3 keypoints" in result.output
    meta = json.loads(_props(out)["posebh"])
    assert meta["source"] == "prototypes" and meta["name"] == "birds"
    assert skeleton_from_dict(meta["skeleton"]) == BIRD and meta["flip_indices"] == [0, 2, 1]
    # The graph's heatmaps are the torch Predictor's prototype heatmaps of the same rows and expert.
    reference = Predictor(checkpoint, dataset="birds", source="prototypes", flip=False)
    images = torch.randn(3, 3, 64, 48)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = reference._forward(images)
    assert got.shape == (3, 3, 16, 12)
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-5, rtol=1e-5)


def test_export_errors_are_one_line(checkpoint, tmp_path):
    cases = [(["--dataset", "coco", "--prototypes", "birds"], "drop --dataset"),
             (["--prototypes", "nope"], "no dataset or skeleton 'nope'"),
             (["--dataset", "mpii"], "no dataset or skeleton 'mpii'")]
    for args, message in cases:
        result = _export("--checkpoint", checkpoint, *args, "--out", tmp_path / "x.onnx")
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    plain = save_checkpoint(PoseModel("vit_pico", ["coco"], [load_skeleton("coco")], img_size=(64, 48)),
                            tmp_path / "plain")
    result = _export("--checkpoint", plain, "--prototypes", "coco", "--out", tmp_path / "x.onnx")
    assert result.exit_code == 2 and "no prototype bank" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]  # nothing half-written
