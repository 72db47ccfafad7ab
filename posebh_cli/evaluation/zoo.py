"""Scoring against the synthetic skeleton zoo's hidden ground truth (the one matcher of annotations to figures).

Every zoo dataset folder holds `.zoo_groundtruth.json`: for each figure of each image, its box and its keypoints
in EVERY skeleton of its body plan (a COCO-like figure also has AIC, MPII and whole-body points). So a head
trained on one skeleton can be scored on the images of another dataset of the same body plan: the COCO head on
the AIC images, the AP-10K head on the APT-36K videos. This measures what PoseBH's prototypes and cross-type
self-supervision are meant to improve: each head's knowledge of poses it only saw under another skeleton.

The prepared annotations of the other dataset give the boxes (as in GT-box evaluation); each is matched to a
hidden figure of the same image by box IoU, and the figure's points in the head's skeleton become the ground
truth. The score is OKS AP with the head skeleton's sigmas and the no-area rule (area = 0.53 * box w * h), the
protocol that needs no segmentation area. Running a model to get the predictions is `inference/zoo.py`'s job.
The video datasets' figures keep their order through a clip, which gives each an identity (`clips`) to score
tracking against.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from posebh_cli.data.prepared import PreparedDataset
from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import read_json
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
    data = read_json(path, "zoo ground truth")
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


def match_figures(annotations: list[dict], figures: list[dict]) -> dict[int, dict]:
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
        for ann_id, fig in match_figures(by_image.get(im["id"], []), figures).items():
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


def clips(groundtruth: dict, split: str | None = None) -> dict[str, list[str]]:
    """The zoo's clips: clip name -> the keys of its images in frame order (of one split, or of all).

    A clip is an APT-36K video, a 3DPW sequence or an InterHand2.6M camera recording: the folder part of its
    images' keys. Within a clip the k-th hidden figure of every frame is the same figure, moving smoothly (also
    through frames where it is hidden or outside the image), so (clip, k) is the figure's identity for tracking.
    """
    out: dict[str, list[str]] = {}
    for name in (groundtruth["splits"].get(split, []) if split else
                 [n for names in groundtruth["splits"].values() for n in names]):
        out.setdefault(name.rpartition("/")[0], []).append(name)
    return out


def select_points(gt: dict, results: list[dict], skeleton: Skeleton, points: tuple[str, ...]) -> tuple[dict, list]:
    """Ground truth and results restricted to `points` of `skeleton` (e.g. the points a union head adds)."""
    index = [skeleton.index(p) for p in points]

    def keep(flat) -> list[float]:
        return np.asarray(flat, dtype=float).reshape(-1, 3)[index].reshape(-1).tolist()

    annotations = []
    for ann in gt["annotations"]:
        kps = keep(ann["keypoints"])
        annotations.append({**ann, "keypoints": kps, "num_keypoints": int(sum(v > 0 for v in kps[2::3]))})
    category = {"id": 1, "name": "person", "keypoints": list(points)}
    results = [{**r, "keypoints": keep(r["keypoints"]), "category_id": 1} for r in results]
    return {"images": gt["images"], "annotations": annotations, "categories": [category]}, results


__all__ = ["GROUNDTRUTH_FILE", "find_groundtruth", "load_groundtruth", "cross_ground_truth", "match_figures",
           "select_points", "box_iou", "clips"]
