"""Cross-skeleton scoring on the synthetic skeleton zoo.

Every zoo dataset folder holds `.zoo_groundtruth.json`: for each figure of each image, its box and its keypoints
in EVERY skeleton of its body plan (a COCO-like figure also has AIC, MPII and whole-body points). So a head
trained on one skeleton can be scored on the images of another dataset of the same body plan: the COCO head on
the AIC images, the AP-10K head on the APT-36K videos. This measures what PoseBH's prototypes and cross-type
self-supervision are meant to improve: each head's knowledge of poses it only saw under another skeleton.

The prepared annotations of the other dataset give the boxes (as in GT-box evaluation); each is matched to a
hidden figure of the same image by box IoU, and the figure's points in the head's skeleton become the ground
truth. The score is OKS AP with the head skeleton's sigmas and the no-area rule (area = 0.53 * box w * h), the
protocol that needs no segmentation area.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from posebh_cli.data.prepared import PreparedDataset, open_prepared
from posebh_cli.errors import PosebhError, input_error
from posebh_cli.evaluation import evaluate_predictions
from posebh_cli.skeletons import Skeleton

GROUNDTRUTH_FILE = ".zoo_groundtruth.json"
MIN_IOU = 0.5


def find_groundtruth(prepared: PreparedDataset) -> Path:
    """The zoo's hidden ground truth for a prepared zoo dataset: searched upwards from its image root."""
    for folder in [prepared.image_root, *prepared.image_root.parents]:
        candidate = folder / GROUNDTRUTH_FILE
        if candidate.is_file():
            return candidate
    raise PosebhError(f"{prepared.root}: no {GROUNDTRUTH_FILE} above its image root {prepared.image_root} "
                      f"(cross-skeleton scores need a dataset made by 'posebh synth')")


def load_groundtruth(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise input_error(path, f"cannot read the zoo ground truth ({exc})") from None
    for key in ("skeletons", "images"):
        if key not in data:
            raise input_error(path, "missing", field=key)
    return data


def box_iou(a, b) -> float:
    """IoU of two xywh boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    inter = max(w, 0.0) * max(h, 0.0)
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def _figures_of(file_name: str, images: dict[str, list]) -> list | None:
    """The hidden figures of a prepared image: its file name, or the longest path suffix the zoo used as key."""
    parts = Path(file_name).parts
    for start in range(len(parts)):
        key = "/".join(parts[start:])
        if key in images:
            return images[key]
    return None


def _match(annotations: list[dict], figures: list[dict]) -> dict[int, dict]:
    """Greedy one-to-one matching of annotations to figures by box IoU (highest first), IoU >= MIN_IOU."""
    pairs = sorted(((box_iou(a["bbox"], f["bbox"]), i, j) for i, a in enumerate(annotations)
                    for j, f in enumerate(figures)), reverse=True)
    used_a, used_f, out = set(), set(), {}
    for iou, i, j in pairs:
        if iou < MIN_IOU:
            break
        if i in used_a or j in used_f:
            continue
        used_a.add(i)
        used_f.add(j)
        out[annotations[i]["id"]] = figures[j]
    return out


def cross_ground_truth(prepared: PreparedDataset, split: str, skeleton: Skeleton,
                       groundtruth: dict | None = None, max_images: int | None = None) -> dict:
    """A COCO keypoint dict for `split` of `prepared`, annotated in `skeleton` from the zoo's hidden figures.

    Keeps the prepared image ids, annotation ids and boxes; annotations without a matching figure are dropped.
    """
    if groundtruth is None:
        groundtruth = load_groundtruth(find_groundtruth(prepared))
    if skeleton.name not in groundtruth["skeletons"]:
        raise PosebhError(f"{prepared.root}: the zoo ground truth has no '{skeleton.name}' points "
                          f"(it has {', '.join(groundtruth['skeletons'])})")
    coco = prepared.load_coco(split)
    images = sorted(coco.get("images", []), key=lambda im: im["id"])[:max_images]
    by_image: dict[int, list[dict]] = {}
    for ann in coco.get("annotations", []):
        if not ann.get("iscrowd", 0) and ann["bbox"][2] > 0 and ann["bbox"][3] > 0:
            by_image.setdefault(ann["image_id"], []).append(ann)
    annotations = []
    for im in images:
        figures = _figures_of(im["file_name"], groundtruth["images"])
        if figures is None:
            raise input_error(prepared.split_path(split), "image not in the zoo ground truth",
                              record=f"image id={im['id']}", field="file_name")
        for ann_id, fig in _match(by_image.get(im["id"], []), figures).items():
            ann = next(a for a in by_image[im["id"]] if a["id"] == ann_id)
            kps = np.asarray(fig["keypoints"][skeleton.name], np.float64).reshape(-1, 3)
            kps[kps[:, 2] <= 0] = 0.0
            x, y, w, h = ann["bbox"]
            annotations.append({"id": ann_id, "image_id": im["id"], "category_id": 1, "bbox": [x, y, w, h],
                                "area": float(w * h), "iscrowd": 0, "keypoints": kps.reshape(-1).tolist(),
                                "num_keypoints": int((kps[:, 2] > 0).sum())})
    category = {"id": 1, "name": skeleton.name, "supercategory": skeleton.body_plan,
                "keypoints": list(skeleton.keypoints), "skeleton": [[a + 1, b + 1] for a, b in skeleton.links]}
    return {"images": images, "annotations": annotations, "categories": [category]}


def score_head_on(model, head: str, prepared: PreparedDataset | str | Path, split: str = "val",
                  flip: bool = True, batch_size: int = 32, max_images: int | None = None,
                  device: str | None = None, groundtruth: dict | None = None) -> dict[str, float]:
    """OKS AP (no-area rule) of `model`'s head `head` on another zoo dataset's images, against hidden points."""
    from posebh_cli.inference.evaluate import gt_boxes, predict_split
    from posebh_cli.inference.predictor import Predictor

    if not isinstance(prepared, PreparedDataset):
        prepared = open_prepared(prepared)
    was_training = model.training
    try:
        predictor = Predictor(model, dataset=head, device=device, batch_size=batch_size, flip=flip)
        gt = cross_ground_truth(prepared, split, predictor.skeleton, groundtruth, max_images)
        if not gt["annotations"]:
            return {}
        results = predict_split(predictor, prepared, split, gt["images"], gt_boxes(gt), use_nms=False)
    finally:
        model.train(was_training)
    return evaluate_predictions(gt, results, predictor.skeleton, "coco_noarea",
                                gt_name=f"{prepared.root} (zoo ground truth as {head})", results_name="<predictions>")


def cross_skeleton_scores(model, prepared: dict[str, PreparedDataset | str | Path], split: str = "val",
                          flip: bool = True, batch_size: int = 32, max_images: int | None = None,
                          device: str | None = None, heads: list[str] | None = None) -> dict[str, float]:
    """AP of every head of `model` on every OTHER dataset in `prepared` whose zoo figures have its skeleton.

    `prepared` maps dataset names (the model's head names) to prepared zoo datasets. `heads` names what to
    predict when it is not the model's heads: datasets a union-skeleton head covers, read through their
    keypoint names (method distill). Returns {"<head>@<dataset>": AP}; pairs of different body plans are skipped.
    """
    from posebh_cli.inference.predictor import resolve_target

    opened = {name: p if isinstance(p, PreparedDataset) else open_prepared(p) for name, p in prepared.items()}
    truths = {name: load_groundtruth(find_groundtruth(p)) for name, p in opened.items()}
    wanted = model.datasets if heads is None else heads
    scores = {}
    for head in wanted:
        skeleton = resolve_target(model, head).skeleton
        for name, ds in opened.items():
            if name == head or skeleton.name not in truths[name]["skeletons"]:
                continue
            metrics = score_head_on(model, head, ds, split, flip, batch_size, max_images, device, truths[name])
            if "AP" in metrics:
                scores[f"{head}@{name}"] = metrics["AP"]
    return scores


__all__ = ["find_groundtruth", "load_groundtruth", "cross_ground_truth", "score_head_on", "cross_skeleton_scores",
           "box_iou"]
