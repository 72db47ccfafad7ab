"""Run a model over a prepared split and score it with the dataset's protocol.

GT boxes by default (each result carries the `ann_id` it was cut from, which PCKh and InterHand pair on), cleaned
as mmpose 0.x cleans them; with detection boxes (COCO detection list) the boxes are thresholded and used raw.
For the OKS-AP protocols, as mmpose 0.x's evaluation with its default `use_nms=True` on every COCO-style
dataset (COCO, AIC, AP-10K, APT-36K, OCHuman, 3DPW, COCO-WholeBody, with GT or detected boxes): instances are
rescored (box score x mean keypoint score above 0.2) and filtered by OKS-NMS at 0.9, and results carry no box,
so the evaluator takes each result's area (for APm/APl) from its keypoints' extent. PCKh and InterHand pair
results with annotations instead: no NMS there, and results keep their box. Nothing is written to disk.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from posebh_cli.data.dataset import clean_box
from posebh_cli.data.prepared import PreparedDataset, open_prepared
from posebh_cli.errors import PosebhError, input_error
from posebh_cli.evaluation import evaluate_predictions, protocol_for
from posebh_cli.files import read_json
from posebh_cli.inference.io import read_image
from posebh_cli.inference.nms import nms_instances
from posebh_cli.inference.onnx_model import OnnxHeatmaps, is_onnx
from posebh_cli.inference.predictor import Predictor, load_checkpoint

NMS_THRESHOLD = 0.9


def gt_boxes(gt: dict) -> dict[int, list[dict]]:
    """Per image id, the non-crowd annotations with a positive box: {bbox, score 1, ann_id, category_id}.

    Boxes are cleaned as mmpose 0.x does (`clean_box`) where the image size is known.
    """
    sizes = {im["id"]: (im.get("width"), im.get("height")) for im in gt.get("images", [])}
    boxes: dict[int, list[dict]] = {}
    for ann in gt.get("annotations", []):
        x, y, w, h = ann["bbox"]
        if ann.get("iscrowd", 0) or w <= 0 or h <= 0:
            continue
        box = clean_box([x, y, w, h], *sizes.get(ann["image_id"], (None, None)))
        boxes.setdefault(ann["image_id"], []).append({"bbox": box, "score": 1.0, "ann_id": ann["id"],
                                                      "category_id": ann.get("category_id", 1)})
    return boxes


def _detection_boxes(boxes: str | Path | list, score_thr: float) -> dict[int, list[dict]]:
    """Per image id, the detections at or above `score_thr` from a COCO detection list (or its file)."""
    source = boxes if isinstance(boxes, (str, Path)) else "<boxes>"
    if isinstance(boxes, (str, Path)):
        boxes = read_json(boxes, "detections file")
    if not isinstance(boxes, list):
        raise input_error(source, "expected a list of {image_id, bbox, score}")
    out: dict[int, list[dict]] = {}
    for n, det in enumerate(boxes):
        for key in ("image_id", "bbox"):
            if not isinstance(det, dict) or key not in det:
                raise input_error(source, "missing", record=f"#{n}", field=key)
        x, y, w, h = det["bbox"]
        if det.get("score", 1.0) < score_thr or w <= 0 or h <= 0:
            continue
        out.setdefault(det["image_id"], []).append({"bbox": [x, y, w, h], "score": float(det.get("score", 1.0)),
                                                    "category_id": det.get("category_id", 1)})
    return out


def subset_images(gt: dict, image_ids: list[int]) -> dict:
    """The COCO dict restricted to `image_ids` (images and their annotations)."""
    keep = set(image_ids)
    return {**gt, "images": [im for im in gt["images"] if im["id"] in keep],
            "annotations": [a for a in gt.get("annotations", []) if a["image_id"] in keep]}


def uses_oks_nms(protocol: str) -> bool:
    """mmpose 0.x applies OKS-NMS (and writes box-less results) for every OKS-AP dataset, GT boxes or not."""
    return protocol in ("coco", "coco_noarea", "wholebody")


def _results_for_image(image_id: int, instances: list[dict], jobs: list[dict], use_nms: bool,
                       sigmas) -> list[dict]:
    """COCO results entries for one image's instances (predicted from `jobs`, in the same order).

    With `use_nms` (the OKS-AP protocols) the kept instances are written without a box, as mmpose writes them;
    otherwise every instance is written with the box it was cropped from (PCKh/InterHand pairing may use it).
    """
    order = nms_instances(instances, sigmas, NMS_THRESHOLD, later_first=True) if use_nms else range(len(instances))
    results = []
    for k in order:
        inst, job = instances[k], jobs[k]
        entry = {"image_id": image_id, "category_id": job["category_id"],
                 "keypoints": inst["keypoints"].reshape(-1).tolist(), "score": inst["score"]}
        if not use_nms:
            entry["bbox"] = [float(v) for v in inst["bbox"]]
        if "ann_id" in job:
            entry["ann_id"] = job["ann_id"]
        results.append(entry)
    return results


def evaluate_model(model, prepared: PreparedDataset | str | Path, split: str, dataset_name: str | None,
                   flip: bool | None = None, batch_size: int = 32, max_images: int | None = None,
                   boxes: str | Path | list | None = None, source: str = "head", device: str | None = None,
                   recipe: dict | None = None, box_score_thr: float = 0.0,
                   keep_results: list | None = None, codec=None) -> dict[str, float]:
    """Metrics of `model` on `split` of a prepared dataset, predicting with the head `dataset_name`.

    `model` is a PoseModel or an exported model (`onnx_model.OnnxHeatmaps`, which predicts the one target its
    metadata names). `dataset_name` None picks the head whose skeleton is the dataset's. `max_images` scores only
    the first images (by id) of the split, against their own annotations. A PoseModel's train/eval mode is restored.
    `keep_results`, a list, receives the COCO results entries that were scored. `codec` replaces the one the
    recipe names for decoding (e.g. an MSRA codec with DARK refinement).
    """
    if not isinstance(prepared, PreparedDataset):
        prepared = open_prepared(prepared)
    was_training = model.training if isinstance(model, torch.nn.Module) else None
    try:
        predictor = Predictor(model, dataset=dataset_name, skeleton=prepared.skeleton,
                              device=device, batch_size=batch_size, flip=flip, source=source, recipe=recipe,
                              codec=codec)
        if predictor.skeleton.keypoints != prepared.skeleton.keypoints:
            raise PosebhError(f"head '{predictor.target.name}' predicts skeleton '{predictor.skeleton.name}' but "
                              f"{prepared.root} is annotated with '{prepared.skeleton.name}'")
        gt = prepared.load_coco(split)
        images = sorted(gt.get("images", []), key=lambda im: im["id"])[:max_images]
        gt = subset_images(gt, [im["id"] for im in images])
        use_detections = boxes is not None
        jobs_by_image = _detection_boxes(boxes, box_score_thr) if use_detections else gt_boxes(gt)
        results = predict_split(predictor, prepared, split, images, jobs_by_image, use_detections)
        if keep_results is not None:
            keep_results.extend(results)
    finally:
        if was_training is not None:
            model.train(was_training)
    protocol = protocol_for(prepared.skeleton.name, prepared.source_format)
    return evaluate_predictions(gt, results, prepared.skeleton, protocol, gt_name=str(prepared.split_path(split)),
                                results_name="<predictions>")


def predict_split(predictor: Predictor, prepared: PreparedDataset, split: str, images: list[dict],
                  jobs_by_image: dict[int, list[dict]], use_nms: bool) -> list[dict]:
    """Predict every box of every image; images are grouped so that a forward batch is about full."""
    results: list[dict] = []
    group: list[tuple[dict, np.ndarray]] = []
    crops = 0

    def flush() -> None:
        instances = predictor.predict([image for _, image in group],
                                      [[j["bbox"] for j in jobs_by_image[im["id"]]] for im, _ in group],
                                      [[j["score"] for j in jobs_by_image[im["id"]]] for im, _ in group])
        for (im, _), found in zip(group, instances):
            results.extend(_results_for_image(im["id"], found, jobs_by_image[im["id"]], use_nms,
                                              predictor.skeleton.sigmas))
        group.clear()

    for im in tqdm(images, desc=f"evaluate {prepared.name}/{split}", leave=False, disable=None):
        if not jobs_by_image.get(im["id"]):
            continue
        image = read_image(prepared.image_root / im["file_name"])
        if image is None:
            raise input_error(prepared.split_path(split), f"cannot read image {prepared.image_root / im['file_name']}",
                              record=f"image id={im['id']}", field="file_name")
        group.append((im, image))
        crops += len(jobs_by_image[im["id"]])
        if crops >= predictor.batch_size:
            flush()
            crops = 0
    if group:
        flush()
    return results


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, split: str, boxes: str | Path | None = None,
                        flip: bool | None = None, dataset: str | None = None, batch_size: int = 32,
                        device: str | None = None, source: str = "head",
                        keep_results: list | None = None, warn=None) -> dict[str, float]:
    """`posebh evaluate --checkpoint`: load a checkpoint and score it on a prepared split.

    The head is `dataset`, else the head named like the prepared dataset, else the one with its skeleton. An
    exported `.onnx` file runs under ONNX Runtime and scores the one target it was exported with (`warn` gets
    the one line of a GPU asked for that onnxruntime cannot use).
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    prepared = open_prepared(data)
    if is_onnx(checkpoint):
        runner = OnnxHeatmaps(checkpoint, device, warn)
        return evaluate_model(runner, prepared, split, dataset, flip=flip, batch_size=batch_size, boxes=boxes,
                              source=source, keep_results=keep_results)
    model, recipe = load_checkpoint(checkpoint)
    if dataset is None and prepared.name in model.datasets:
        dataset = prepared.name
    return evaluate_model(model, prepared, split, dataset, flip=flip, batch_size=batch_size, boxes=boxes,
                          device=device, recipe=recipe, source=source, keep_results=keep_results)


__all__ = ["evaluate_model", "evaluate_checkpoint", "gt_boxes", "subset_images", "predict_split", "uses_oks_nms"]
