import json

import numpy as np
import onnx
import skimage.data
import torch
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from posebh_cli.cli import app
from posebh_cli.inference import io
from posebh_cli.inference.detector import OnnxDetector
from posebh_cli.models.checkpoint import save_checkpoint
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.skeletons import load_skeleton


def _fixed_detector(path, rows):
    """An ONNX 'detector' with input [1, 3, 64, 64] whose output [1, 6, N] is the constant `rows` (2 classes)."""
    const = numpy_helper.from_array(np.asarray(rows, np.float32).T[None].copy(), name="dets")
    nodes = [helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
             helper.make_node("Mul", ["total", "zero"], ["nothing"]),
             helper.make_node("Add", ["nothing", "dets"], ["output0"])]
    graph = helper.make_graph(nodes, "fixed", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)],
                              initializer=[const, numpy_helper.from_array(np.zeros((), np.float32), name="zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by older onnxruntime builds too
    onnx.save(model, str(path))
    return path


# cx, cy, w, h (input pixels), score class 0, score class 1
ROWS = [[32, 32, 20, 40, 0.9, 0.0],
        [33, 32, 20, 40, 0.8, 0.0],    # overlaps the first: removed by NMS
        [10, 10, 8, 8, 0.0, 0.95],     # class 1: not wanted
        [50, 50, 10, 10, 0.1, 0.0]]    # under the score threshold
ROWS += [[0, 0, 0, 0, 0.0, 0.0]] * 4  # real exports have far more boxes than channels; the layout test needs it


def test_boxes_come_back_in_image_pixels(tmp_path):
    detector = OnnxDetector(_fixed_detector(tmp_path / "det.onnx", ROWS), class_ids=(0,), score_thr=0.3)
    # A 256 x 128 (h x w) image letterboxes at ratio 0.25 with 16 px of padding left and right.
    boxes, scores = detector(np.zeros((256, 128, 3), np.uint8))
    assert scores == [np.float32(0.9)]
    np.testing.assert_allclose(boxes[0], [(22 - 16) * 4, 12 * 4, 80, 160], atol=1e-4)
    # The class-1 box lies in the left padding: clipped to nothing, so dropped.
    assert OnnxDetector(tmp_path / "det.onnx", class_ids=(1,))(np.zeros((256, 128, 3), np.uint8)) == ([], [])


def test_predict_with_the_detector(tmp_path):
    torch.manual_seed(0)
    model = PoseModel("vit_pico", ["coco"], [load_skeleton("coco")], img_size=(64, 48))
    ckpt = save_checkpoint(model, tmp_path / "ckpt")
    io.write_image(tmp_path / "astronaut.png", skimage.data.astronaut()[::8, ::8])  # 64 x 64: ratio 1
    det = _fixed_detector(tmp_path / "det.onnx", ROWS)
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "astronaut.png"), "--checkpoint", str(ckpt),
                                      "--detector", str(det), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    [pred] = json.loads((tmp_path / "out" / "astronaut.json").read_text())["predictions"]
    assert pred["bbox"] == [22, 12, 20, 40] and pred["box_score"] == 0.9
