"""An optional ONNX box detector for `posebh predict --detector`, run with onnxruntime.

It reads YOLO-style exports (ultralytics YOLOv8 / YOLO11 `format=onnx`): one RGB input [1, 3, S, S] in [0, 1]
of a letterboxed image (grey 114 padding, centred), and one output [1, 4 + C, N] (or [1, N, 4 + C]) holding
box centre x, y, width, height in input pixels followed by C class scores. Boxes of the wanted classes above
the score threshold go through class-agnostic IoU-NMS and come back in image pixels as xywh.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from posebh_cli.errors import input_error
from posebh_cli.inference.onnx_model import open_session

PAD_VALUE = 114
DEFAULT_INPUT = 640


class OnnxDetector:
    def __init__(self, path: str | Path, class_ids: tuple[int, ...] = (0,), score_thr: float = 0.3,
                 iou_thr: float = 0.45, device: str | None = None, warn: Callable[[str], None] | None = None):
        path = Path(path)
        # The provider rule and its fallback warning are the pose model's (onnx_model.open_session).
        self.session = open_session(path, device, warn, what="detector model")
        self.provider = self.session.get_providers()[0]
        self.path = path
        spec = self.session.get_inputs()[0]
        _check_detector_signature(path, self.session)
        height, width = spec.shape[2:4]
        # Dynamic axes come back as names; the usual export size is used then.
        self.input_size = (width if isinstance(width, int) else DEFAULT_INPUT,
                           height if isinstance(height, int) else DEFAULT_INPUT)
        self.input_name = spec.name
        self.class_ids = tuple(class_ids)
        self.score_thr, self.iou_thr = score_thr, iou_thr

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """(input [1, 3, S, S] float32, resize ratio, padding offset (x, y)) for an RGB image."""
        in_w, in_h = self.input_size
        ratio = min(in_w / image.shape[1], in_h / image.shape[0])
        new_w, new_h = round(image.shape[1] * ratio), round(image.shape[0] * ratio)
        pad = np.array([(in_w - new_w) / 2, (in_h - new_h) / 2])
        canvas = np.full((in_h, in_w, 3), PAD_VALUE, np.uint8)
        left, top = int(round(pad[0] - 0.1)), int(round(pad[1] - 0.1))
        canvas[top:top + new_h, left:left + new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        tensor = canvas.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
        return tensor, ratio, np.array([left, top], dtype=np.float64)

    def __call__(self, image: np.ndarray) -> tuple[list[list[float]], list[float]]:
        """Boxes [[x, y, w, h], ...] in image pixels and their scores, best first."""
        tensor, ratio, offset = self.letterbox(image)
        try:
            output = np.asarray(self.session.run(None, {self.input_name: tensor})[0])[0]
        except Exception as exc:  # onnxruntime's own error types
            raise input_error(self.path, f"is not a YOLO-style detector: running it failed "
                              f"({str(exc).splitlines()[0]})") from None
        if output.ndim != 2 or min(output.shape) < 5:
            raise input_error(self.path, f"is not a YOLO-style detector: output of shape {list(output.shape)} "
                              f"per image, expected [4 + classes, boxes]")
        if output.shape[0] > output.shape[1]:  # [N, 4 + C] layout: there are more boxes than channels
            output = output.T
        centres, sizes, class_scores = output[:2].T, output[2:4].T, output[4:].T
        wanted = [c for c in self.class_ids if c < class_scores.shape[1]]
        if not wanted:
            return [], []
        scores = class_scores[:, wanted].max(axis=1)
        keep = scores >= self.score_thr
        top_left = (centres[keep] - sizes[keep] / 2 - offset) / ratio
        bottom_right = (centres[keep] + sizes[keep] / 2 - offset) / ratio
        limits = np.array([image.shape[1], image.shape[0]], dtype=np.float64)
        top_left, bottom_right = np.clip(top_left, 0, limits), np.clip(bottom_right, 0, limits)
        boxes = np.concatenate([top_left, bottom_right - top_left], axis=1)
        scores = scores[keep]
        inside = (boxes[:, 2] >= 1) & (boxes[:, 3] >= 1)  # boxes left with no area inside the image
        boxes, scores = boxes[inside], scores[inside]
        if not len(scores):
            return [], []
        kept = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.score_thr, self.iou_thr)
        order = sorted(np.asarray(kept).reshape(-1).tolist(), key=lambda i: -scores[i])
        return [boxes[i].tolist() for i in order], [float(scores[i]) for i in order]


def _check_detector_signature(path: Path, session) -> None:
    """One image input [1, 3, H, W] and one output [1, 4 + classes, boxes] (or transposed), as YOLO exports have."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = inputs[0].shape if len(inputs) == 1 else None
    if shape is None or len(shape) != 4 or shape[1] not in (3, None) and isinstance(shape[1], int):
        raise input_error(path, f"is not a YOLO-style detector: expected one image input [1, 3, H, W], got "
                          f"{[list(i.shape) for i in inputs]}")
    if "float" not in inputs[0].type:
        raise input_error(path, f"is not a YOLO-style detector: its input is {inputs[0].type}, not a float tensor")
    if not outputs or len(outputs[0].shape) != 3:
        raise input_error(path, f"is not a YOLO-style detector: expected an output [1, 4 + classes, boxes], got "
                          f"{[list(o.shape) for o in outputs]}")


__all__ = ["OnnxDetector"]
