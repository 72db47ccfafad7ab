import pytest
import torch
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.errors import PosebhError
from posebh_cli.models.checkpoint import save_checkpoint
from posebh_cli.models.export import export_model
from posebh_cli.models.pose_model import PoseModel

from model_builders import randomize_, skeletons

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_(PoseModel("vit_pico", ["coco", "aic"], skeletons(["coco", "aic"]), img_size=(64, 48)))
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "run")


def test_onnx_parity(checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    result = export_model(checkpoint, "aic", "onnx", tmp_path / "aic.onnx")
    assert result.num_keypoints == 14 and result.max_abs_diff < 1e-4
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "aic.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"images": torch.randn(3, 3, 64, 48).numpy()})  # dynamic batch
    assert out.shape == (3, 14, 16, 12) and abs(out).max() > 1e-3


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_via_cli(checkpoint, tmp_path):
    out = tmp_path / "coco.pt"
    result = runner.invoke(app, ["export", "--checkpoint", str(checkpoint), "--dataset", "coco", "--format", "torchscript",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "max abs difference" in result.output
    from posebh_cli import load_model

    reference = load_model(checkpoint).heatmaps(torch.ones(1, 3, 64, 48), dataset="coco")
    with torch.no_grad():
        got = torch.jit.load(str(out))(torch.ones(1, 3, 64, 48))
    torch.testing.assert_close(got, reference, atol=1e-5, rtol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco.pt"]


def test_export_errors(checkpoint, tmp_path):
    with pytest.raises(PosebhError, match="no dataset 'mpii'"):
        export_model(checkpoint, "mpii", "onnx", tmp_path / "x.onnx")
    result = runner.invoke(app, ["export", "--checkpoint", str(checkpoint), "--dataset", "coco", "--format", "tflite",
                                 "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unknown export format" in result.output
    assert list(tmp_path.iterdir()) == []
