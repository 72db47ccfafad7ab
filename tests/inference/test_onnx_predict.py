"""`posebh predict --checkpoint model.onnx`: the exported model through ONNX Runtime with the torch path's own
pre/post-processing (parity with the torch Predictor, with and without flip), the provider line, one-line errors."""
import json

import numpy as np
import pytest
import skimage.data
import torch
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.commands.export import export_command
from posebh_cli.errors import PosebhError
from posebh_cli.inference import io
from posebh_cli.inference.onnx_model import OnnxHeatmaps, _providers
from posebh_cli.inference.predictor import Predictor
from posebh_cli.inference.run import run_predict
from posebh_cli.models.checkpoint import save_checkpoint
from posebh_cli.models.export import export_model
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.models.store import resolve_checkpoint
from posebh_cli.skeletons import load_skeleton, skeleton_from_dict

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
runner = CliRunner()

IMAGES = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]
BOXES = [None, [[20, 10, 380, 280], [100, 50, 150, 200]], [[30, 20, 500, 350]]]


def _max_keypoint_difference(a, b) -> tuple[float, float]:
    """(max |xy| difference in px, max |score| difference) between two Predictor.predict results."""
    xy = score = 0.0
    for insts_a, insts_b in zip(a, b, strict=True):
        for p, q in zip(insts_a, insts_b, strict=True):
            xy = max(xy, float(np.abs(p["keypoints"][:, :2] - q["keypoints"][:, :2]).max()))
            score = max(score, float(np.abs(p["keypoints"][:, 2] - q["keypoints"][:, 2]).max()))
    return xy, score


def _self_sensitivity(predictor, instance, noise: float = 1e-7, draws: int = 4) -> np.ndarray:
    """How far (image px) torch's own decoding moves each keypoint when its heatmaps change by float32 rounding
    noise (a few ulps, the size of the ONNX Runtime vs PyTorch difference). Where the DARK-UDP Newton step is
    ill-conditioned (a nearly singular Hessian on a flat map) that is far more than 0.01 px, for any two runtimes."""
    maps = torch.from_numpy(instance["heatmaps"][None])
    reference, _ = predictor.codec.decode(maps)
    generator = torch.Generator().manual_seed(0)
    moved = np.zeros(len(instance["keypoints"]))
    for _ in range(draws):
        coords, _ = predictor.codec.decode(maps + noise * torch.randn(maps.shape, generator=generator))
        moved = np.maximum(moved, (coords - reference).abs().amax(-1)[0].numpy())
    return moved * instance["scale"][0] / predictor.input_size[0]  # input px -> image px


@pytest.fixture(scope="module")
def zoo_base_onnx(tmp_path_factory):
    """The shipped zoo-base model's MSRA head (ap10k) and UDP head (coco), exported once."""
    folder = tmp_path_factory.mktemp("onnx")
    return {name: export_command("zoo-base", name, "onnx", folder / f"{name}.onnx", device="cpu").path
            for name in ("ap10k", "coco")}


@pytest.mark.parametrize("dataset", ["ap10k", "coco"])
def test_onnx_predict_matches_torch(zoo_base_onnx, dataset):
    torch_path = Predictor(resolve_checkpoint("zoo-base"), dataset=dataset, batch_size=4)
    onnx_path = Predictor(zoo_base_onnx[dataset], batch_size=4)
    assert onnx_path.provider == "CPUExecutionProvider" and onnx_path.target.name == dataset
    assert (onnx_path.codec.use_udp, onnx_path.box_padding) == (torch_path.codec.use_udp, torch_path.box_padding)
    for flip in (False, True):
        torch_path.flip = onnx_path.flip = flip
        expected = torch_path.predict(IMAGES, BOXES, return_heatmaps=True)
        got = onnx_path.predict(IMAGES, BOXES, return_heatmaps=True)
        worst = {"stable": 0.0, "all": 0.0, "heatmaps": 0.0}
        unstable = total = 0
        for insts_a, insts_b in zip(expected, got, strict=True):
            for a, b in zip(insts_a, insts_b, strict=True):
                worst["heatmaps"] = max(worst["heatmaps"], float(np.abs(a["heatmaps"] - b["heatmaps"]).max()))
                moved = np.abs(a["keypoints"][:, :2] - b["keypoints"][:, :2]).max(axis=1)
                stable = _self_sensitivity(torch_path, a) < 0.01
                worst["all"] = max(worst["all"], float(moved.max()))
                worst["stable"] = max(worst["stable"], float(moved[stable].max(initial=0.0)))
                unstable += int((~stable).sum())
                total += len(stable)
                assert np.abs(a["keypoints"][:, 2] - b["keypoints"][:, 2]).max() < 1e-4
        print(f"{dataset} flip={flip}: max keypoint difference {worst['stable']:.2e} px over the {total - unstable} "
              f"well-conditioned of {total} keypoints ({worst['all']:.2e} px over all); "
              f"heatmaps {worst['heatmaps']:.1e}")
        assert worst["heatmaps"] < 1e-5 and worst["stable"] < 0.01
        assert unstable <= 0.05 * total  # the ill-conditioned decodes are rare; MSRA has none


@pytest.fixture(scope="module")
def proto_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    bird = skeleton_from_dict({"name": "bird3", "keypoints": ["beak", "left_wing", "right_wing"],
                               "flip_pairs": [["left_wing", "right_wing"]], "sigmas": [0.03, 0.05, 0.05]})
    model = PoseModel("vit_pico", ["coco", "ap10k"], [load_skeleton("coco"), load_skeleton("ap10k")],
                      with_embedding=True, img_size=(64, 48), prototype_only=[("birds", bird)])
    recipe = {"datasets": [{"name": "coco", "codec": "udp"}, {"name": "ap10k", "codec": "msra"}]}
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "run", recipe=recipe)


def test_onnx_prototype_skeleton_matches_torch(proto_checkpoint, tmp_path):
    path = export_command(str(proto_checkpoint), None, "onnx", tmp_path / "birds.onnx", device="cpu",
                          prototypes="birds").path
    image = np.zeros((120, 90, 3), np.uint8)
    image[30:90, 20:70] = (200, 120, 40)
    for flip in (False, True):
        torch_path = Predictor(proto_checkpoint, dataset="birds", source="prototypes", flip=flip)
        onnx_path = Predictor(path, flip=flip)
        assert onnx_path.source == "prototypes" and onnx_path.skeleton.name == "bird3"
        heatmaps = onnx_path.heatmaps(onnx_path.to_tensor([onnx_path.crop(image, [10, 10, 70, 90])[0]]))
        expected = torch_path.heatmaps(torch_path.to_tensor([torch_path.crop(image, [10, 10, 70, 90])[0]]))
        torch.testing.assert_close(heatmaps, expected, atol=1e-5, rtol=1e-5)
        xy, _ = _max_keypoint_difference(torch_path.predict([image], [[[10, 10, 70, 90]]]),
                                         onnx_path.predict([image], [[[10, 10, 70, 90]]]))
        print(f"prototypes flip={flip}: max keypoint difference {xy:.2e} px")
        assert xy < 0.01


def _predict(*args):
    return runner.invoke(app, ["predict", *map(str, args)])


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A tiny coco model, exported with its metadata, plus a photo to predict."""
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    model = PoseModel("vit_pico", ["coco"], [load_skeleton("coco")], img_size=(64, 48))
    checkpoint = save_checkpoint(model, folder / "run")
    path = export_command(str(checkpoint), "coco", "onnx", folder / "coco.onnx", device="cpu").path
    io.write_image(folder / "astronaut.png", skimage.data.astronaut()[::8, ::8])
    return {"checkpoint": checkpoint, "onnx": path, "photo": folder / "astronaut.png"}


def test_cli_predict_with_onnx_prints_the_provider(tiny_onnx, tmp_path):
    result = _predict(tiny_onnx["photo"], "--checkpoint", tiny_onnx["onnx"], "--out", tmp_path / "out", "--skeleton",
                      "coco", "--dataset", "coco")
    assert result.exit_code == 0, result.output
    assert "onnxruntime: CPUExecutionProvider" in result.output and "head coco (skeleton coco)" in result.output
    record = json.loads((tmp_path / "out" / "astronaut.json").read_text())
    assert record["skeleton"] == "coco" and len(record["predictions"][0]["keypoints"]) == 17 * 3
    # The torch checkpoint prints no provider line.
    result = _predict(tiny_onnx["photo"], "--checkpoint", tiny_onnx["checkpoint"], "--out", tmp_path / "torch")
    assert result.exit_code == 0 and "onnxruntime" not in result.output


def test_bad_onnx_files_are_one_line_errors(tiny_onnx, tmp_path):
    bare = export_model(tiny_onnx["checkpoint"], "coco", "onnx", tmp_path / "bare.onnx").path  # no metadata
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not a protobuf at all")
    proto = onnx.load(str(tiny_onnx["onnx"]))
    meta = next(p for p in proto.metadata_props if p.key == "posebh")
    meta.value = json.dumps({**json.loads(meta.value), "box_padding": "wide"})
    onnx.save(proto, str(tmp_path / "badfield.onnx"))
    cases = [(["--checkpoint", bare], "bare.onnx: has no posebh metadata"),
             (["--checkpoint", corrupt], "corrupt.onnx: cannot load the ONNX model"),
             (["--checkpoint", tmp_path / "badfield.onnx"], "field 'box_padding'"),
             (["--checkpoint", tiny_onnx["onnx"], "--skeleton", "ap10k"], "coco.onnx: exported the head of 'coco' "
              "(skeleton 'coco'); --skeleton is 'ap10k'"),
             (["--checkpoint", tiny_onnx["onnx"], "--dataset", "aic"], "--dataset is 'aic'"),
             (["--checkpoint", tiny_onnx["onnx"], "--prototypes", "coco"], "not prototype heatmaps"),
             (["--checkpoint", tiny_onnx["onnx"], "--device", "tpu"], "--device: 'tpu'")]
    for args, message in cases:
        result = _predict(tiny_onnx["photo"], *args, "--out", tmp_path / "out")
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "out").exists()


def test_gpu_asked_for_without_a_gpu_provider_warns_once(tiny_onnx, tmp_path):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    lines = []
    summary = run_predict(tiny_onnx["photo"], tiny_onnx["onnx"], tmp_path / "out", device="cuda:0",
                          warn=lines.append)
    assert summary.provider == "CPUExecutionProvider" and summary.instances == 1
    assert len(lines) == 1 and "CUDAExecutionProvider" in lines[0] and "\n" not in lines[0]
    assert OnnxHeatmaps(tiny_onnx["onnx"], "cpu", warn=lines.append).provider == "CPUExecutionProvider"
    assert OnnxHeatmaps(tiny_onnx["onnx"], None, warn=lines.append).provider == "CPUExecutionProvider"
    assert len(lines) == 1  # cpu, or no device at all, never warns


def test_a_cuda_provider_that_does_not_start_is_one_line(tiny_onnx, monkeypatch):
    # onnxruntime-gpu lists CUDA even where its libraries are missing; the session then runs on the CPU.
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a real CUDA provider, which may start")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    lines = []
    assert OnnxHeatmaps(tiny_onnx["onnx"], "cuda", warn=lines.append).provider == "CPUExecutionProvider"
    assert lines == ["--device cuda: onnxruntime's CUDAExecutionProvider did not start (are the CUDA and cuDNN "
                     "libraries it needs installed?); running coco.onnx on CPUExecutionProvider"]


def test_provider_rule():
    assert _providers("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == (["CPUExecutionProvider"], False)
    assert _providers(None, ["CUDAExecutionProvider", "CPUExecutionProvider"])[0][0] == "CUDAExecutionProvider"
    assert _providers("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == (
        [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"], True)
    assert _providers("cuda", ["CPUExecutionProvider"]) == (["CPUExecutionProvider"], True)
    for bad in ("gpu", "cuda:x", "cpu:0"):
        with pytest.raises(PosebhError, match="--device"):
            _providers(bad, ["CPUExecutionProvider"])


def test_evaluate_an_onnx_file_scores_as_its_torch_model(zoo_base_onnx, tmp_path):
    """`posebh evaluate --checkpoint x.onnx` scores the exported head like the PyTorch checkpoint it came from (the
    MSRA head decodes to the same keypoints: see the parity test above); another skeleton is one line, exit 2."""
    from builders import make_prepared

    data = make_prepared(tmp_path / "ap10k", "ap10k", "ap10k", num_images=4)
    scores, keypoints = {}, {}
    for name, checkpoint in (("onnx", zoo_base_onnx["ap10k"]), ("torch", "zoo-base")):
        out, predictions = tmp_path / f"{name}.json", tmp_path / f"{name}-predictions.json"
        result = runner.invoke(app, ["evaluate", "--checkpoint", str(checkpoint), "--data", str(data),
                                     "--dataset", "ap10k", "--device", "cpu", "--out", str(out),
                                     "--save-predictions", str(predictions)])
        assert result.exit_code == 0, result.output
        scores[name] = json.loads(out.read_text())
        keypoints[name] = np.array([entry["keypoints"] for entry in json.loads(predictions.read_text())])
    assert keypoints["onnx"].shape == keypoints["torch"].shape == (8, 17 * 3)
    np.testing.assert_allclose(keypoints["onnx"], keypoints["torch"], atol=1e-3)
    assert scores["onnx"].keys() == scores["torch"].keys() and "AP" in scores["onnx"]
    for key, value in scores["torch"].items():
        assert scores["onnx"][key] == pytest.approx(value, abs=1e-6), key
    coco = make_prepared(tmp_path / "coco", "coco", "coco", num_images=2)
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(zoo_base_onnx["ap10k"]), "--data", str(coco)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "ap10k.onnx" in result.output and "coco" in result.output
