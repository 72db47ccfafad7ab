"""Native file writers of the synthetic skeleton zoo: one function per dataset format and folder layout.

Each writer gets the dataset's temporary folder, its spec and the rendered records per split (see
`synth.make_image`), and writes the annotation files exactly where `posebh prepare-data FORMAT --src DIR`
expects them, plus the hidden ground truth `.zoo_groundtruth.json`. Pixel coordinates are 0-based except
where the format says otherwise (MPII is 1-based, as in Matlab).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from posebh_cli.data.synth.rig import SPECIES
from posebh_cli.data.synth.spec import DatasetSpec, dump_json, hex_name, seeded_rng
from posebh_cli.skeletons import load_skeleton

SPLIT_BASE = {"train": 0, "val": 500000, "test": 800000, "all": 0}   # keeps image ids unique across splits
AIC_DIRS = {"train": "ai_challenger_keypoint_train_20170902/keypoint_train_images_20170902",
            "val": "ai_challenger_keypoint_validation_20170911/keypoint_validation_images_20170911"}
CLIPS_PER_CAPTURE = 4


def image_id(split: str, index: int) -> int:
    return SPLIT_BASE[split] + index + 1


def _interhand_ids(spec: DatasetSpec, split: str, index: int) -> tuple[int, int, int, str]:
    clip = index // spec.clip_length
    capture = SPLIT_BASE[split] // 1000 + clip // CLIPS_PER_CAPTURE
    camera = 400000 + clip % CLIPS_PER_CAPTURE
    return capture, camera, index, f"seq{clip:04d}"


def _3dpw_sequence(spec: DatasetSpec, split: str, index: int) -> str:
    return f"synth_{split}_{index // spec.clip_length:03d}"


def image_path(spec: DatasetSpec, split: str, index: int, seed: int) -> str:
    """Where image `index` of `split` lives inside the dataset folder."""
    iid = image_id(split, index)
    name = spec.name
    if name in ("coco", "coco_wholebody"):
        return f"{split}2017/{iid:012d}.jpg"
    if name == "aic":
        return f"{AIC_DIRS[split]}/{hex_name(seed, 'aic', split, index)}.jpg"
    if name == "mpii":
        return f"images/{iid:09d}.jpg"
    if name == "ap10k":
        return f"data/{iid:012d}.jpg"
    if name == "apt36k":
        clip, frame = divmod(index, spec.clip_length)
        return f"images/video{clip:04d}/frame{frame:04d}.jpg"
    if name == "interhand":
        capture, camera, frame_idx, seq = _interhand_ids(spec, split, index)
        return f"images/{split}/Capture{capture}/{seq}/cam{camera}/image{frame_idx:05d}.jpg"
    if name == "3dpw":
        return f"imageFiles/{_3dpw_sequence(spec, split, index)}/image_{index % spec.clip_length:05d}.jpg"
    raise KeyError(name)


def annotation_name(spec: DatasetSpec, split: str, path: str) -> str:
    """The image name as the dataset's annotations write it (relative to its image folder)."""
    if spec.name == "apt36k":
        return path.split("/", 1)[1]
    if spec.name == "interhand":
        return path.split("/", 2)[2]
    return path.rsplit("/", 1)[1]


# ----------------------------------------------------------------------------- shared pieces
def _r(x) -> float:
    return round(float(x), 2)


def coco_keypoints(kps: np.ndarray) -> tuple[list[float], int]:
    """Flat COCO keypoints (x, y, v); unlabelled (v=0) points are written as 0, 0, 0."""
    flat = []
    for x, y, v in kps:
        flat += [_r(x), _r(y), int(v)] if v > 0 else [0, 0, 0]
    return flat, int((kps[:, 2] > 0).sum())


def category(skeleton: str, cat_id: int = 1, name: str = "person", supercategory: str = "person") -> dict:
    sk = load_skeleton(skeleton)
    return {"id": cat_id, "name": name, "supercategory": supercategory, "keypoints": list(sk.keypoints),
            "skeleton": [[a + 1, b + 1] for a, b in sk.links]}


def _box(box) -> list[float]:
    return [_r(v) for v in box]


def _annotated_box(fig: dict) -> list[float] | None:
    """The figure's box as written, or None when nothing of it is visible (real annotators would not box it)."""
    box = _box(fig["bbox"])
    return box if fig["area"] > 0 and box[2] > 0 and box[3] > 0 else None


def _points_box(kps: np.ndarray) -> list[float]:
    """Tight box [x, y, w, h] around the labelled points; zeros when there are none."""
    pts = kps[kps[:, 2] > 0, :2]
    if len(pts) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    lo, hi = pts.min(0), pts.max(0)
    return _box([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])


def coco_images_and_annotations(spec: DatasetSpec, split: str, records: list[dict], coco_fields: bool = True,
                                extra_image=None, extra_ann=None) -> tuple[list, list]:
    """COCO `images` and `annotations` lists; `extra_image(rec)` / `extra_ann(rec, k, fig)` add format fields."""
    images, annotations = [], []
    for rec in records:
        iid = image_id(split, rec["index"])
        image = {"file_name": annotation_name(spec, split, rec["path"]), "id": iid,
                 "height": rec["height"], "width": rec["width"]}
        if extra_image:
            image.update(extra_image(rec))
        images.append(image)
        for k, fig in enumerate(rec["figures"]):
            box = _annotated_box(fig)
            if box is None:
                continue
            flat, num = coco_keypoints(fig["keypoints"][spec.skeleton])
            ann = {"id": iid * 10 + k, "image_id": iid, "category_id": 1, "bbox": box,
                   "keypoints": flat, "num_keypoints": num}
            if coco_fields:
                ann.update({"area": float(fig["area"]), "iscrowd": 0, "segmentation": []})
            if extra_ann:
                ann.update(extra_ann(rec, k, fig))
            annotations.append(ann)
    return images, annotations


def write_groundtruth(root: Path, spec: DatasetSpec, records: dict[str, list[dict]], key=None) -> None:
    """`.zoo_groundtruth.json`: every figure's box and its keypoints in every skeleton of the body plan."""
    first = next((f for recs in records.values() for r in recs for f in r["figures"]), None)
    skeletons = list(first["keypoints"]) if first else []
    images, splits = {}, {}
    for split, recs in records.items():
        splits[split] = []
        for rec in recs:
            name = key(split, rec) if key else annotation_name(spec, split, rec["path"])
            splits[split].append(name)
            images[name] = [{"bbox": _box(f["bbox"]),
                             "keypoints": {sk: [[_r(x), _r(y), int(v)] for x, y, v in kps]
                                           for sk, kps in f["keypoints"].items()}}
                            for f in rec["figures"]]
    dump_json(root / ".zoo_groundtruth.json", {"dataset": spec.name, "body_plan": spec.body_plan,
                                                "skeleton": spec.skeleton, "skeletons": skeletons,
                                                "splits": splits, "images": images})


# ----------------------------------------------------------------------------- COCO and COCO-WholeBody
def write_coco(root: Path, spec: DatasetSpec, records: dict[str, list[dict]], seed: int) -> None:
    for split, recs in records.items():
        images, anns = coco_images_and_annotations(spec, split, recs)
        dump_json(root / "annotations" / f"person_keypoints_{split}2017.json",
                  {"images": images, "annotations": anns, "categories": [category(spec.skeleton)]})
        if split == "val":
            dump_json(root / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json",
                      detections(anns, images, seeded_rng(seed, "coco", "detections")))
    write_groundtruth(root, spec, records)


def detections(annotations: list[dict], images: list[dict], rng: np.random.Generator) -> list[dict]:
    """A person detector's output: ground-truth boxes jittered and rescored, a few misses and false positives."""
    out = []
    for ann in annotations:
        if rng.random() < 0.05:
            continue
        x, y, w, h = ann["bbox"]
        jitter = rng.normal(0, 0.06, 4) * np.array([w, h, w, h])
        box = [x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]), max(1.0, h + jitter[3])]
        out.append({"image_id": ann["image_id"], "category_id": 1, "bbox": _box(box),
                    "score": round(float(rng.uniform(0.55, 1.0)), 4)})
    for image in images:
        if rng.random() < 0.3:
            w, h = rng.uniform(0.1, 0.4) * image["width"], rng.uniform(0.2, 0.6) * image["height"]
            x, y = rng.uniform(0, image["width"] - w), rng.uniform(0, image["height"] - h)
            out.append({"image_id": image["id"], "category_id": 1, "bbox": _box([x, y, w, h]),
                        "score": round(float(rng.uniform(0.05, 0.5)), 4)})
    return out


# COCO-WholeBody labels a face or hand only where it is clear enough for an annotator to place its points
# (`face_valid`, `lefthand_valid`, `righthand_valid`); other parts are all-zero arrays. The zoo's stand-in for
# "clear enough": the part's box is at least this many pixels on its longer side, where a face's 17 contour
# points or a finger's 4 joints lie about 2 px or more apart. Feet (3 points each) are labelled with the body.
MIN_LABELLED_PART_PX = 32.0


def labelled_part(kps: np.ndarray, part: str) -> bool:
    """Whether COCO-WholeBody would label this part of a figure (its points `kps`, one row per point)."""
    visible = kps[:, 2] > 0
    if not visible.any():
        return False
    if part == "foot":
        return True
    extent = kps[visible, :2].max(0) - kps[visible, :2].min(0)
    return bool(extent.max() >= MIN_LABELLED_PART_PX)


def write_coco_wholebody(root: Path, spec: DatasetSpec, records: dict[str, list[dict]], seed: int) -> None:
    sk = load_skeleton(spec.skeleton)
    parts = sk.parts

    def extra(rec, k, fig):
        kps = fig["keypoints"][spec.skeleton]
        fields = {}
        for part, key in (("foot", "foot_kpts"), ("face", "face_kpts"), ("lefthand", "lefthand_kpts"),
                          ("righthand", "righthand_kpts")):
            a, b = parts[part]
            valid = labelled_part(kps[a:b], part)
            labelled = kps[a:b] if valid else np.zeros_like(kps[a:b])
            fields[key] = coco_keypoints(labelled)[0]
            fields[f"{part}_valid"] = valid
            if part != "foot":
                fields[f"{part}_box"] = _points_box(labelled)
        a, b = parts["body"]
        fields["keypoints"], fields["num_keypoints"] = coco_keypoints(kps[a:b])
        return fields

    for split, recs in records.items():
        images, anns = coco_images_and_annotations(spec, split, recs, extra_ann=extra)
        dump_json(root / "annotations" / f"coco_wholebody_{split}_v1.0.json",
                  {"images": images, "annotations": anns, "categories": [category("coco")]})
    write_groundtruth(root, spec, records)


# ----------------------------------------------------------------------------- AI Challenger (mmpose conversion)
def write_aic(root: Path, spec: DatasetSpec, records: dict[str, list[dict]], seed: int) -> None:
    for split, recs in records.items():
        images, anns = coco_images_and_annotations(spec, split, recs, coco_fields=False)
        dump_json(root / "annotations" / f"aic_{split}.json",
                  {"images": images, "annotations": anns, "categories": [category(spec.skeleton)]})
    write_groundtruth(root, spec, records)


# ----------------------------------------------------------------------------- MPII
# MPII's own joint abbreviations in `dataset_joints` of the evaluation .mat file, by our keypoint name.
MPII_ABBREVIATIONS = {"right_ankle": "rank", "right_knee": "rkne", "right_hip": "rhip", "left_hip": "lhip",
                      "left_knee": "lkne", "left_ankle": "lank", "pelvis": "pelv", "thorax": "thor",
                      "upper_neck": "neck", "head_top": "head", "right_wrist": "rwri", "right_elbow": "relb",
                      "right_shoulder": "rsho", "left_shoulder": "lsho", "left_elbow": "lelb", "left_wrist": "lwri"}


def mpii_head_box(kps: np.ndarray, sk) -> list[list[float]]:
    """A square head box [[x1, y1], [x2, y2]] (1-based) around head_top and upper_neck, sized so that
    0.6 x its diagonal (the PCKh head size) equals their distance."""
    top, neck = kps[sk.index("head_top"), :2], kps[sk.index("upper_neck"), :2]
    center = (top + neck) / 2 + 1
    half = np.linalg.norm(top - neck) / (0.6 * np.sqrt(2)) / 2
    return [[_r(center[0] - half), _r(center[1] - half)], [_r(center[0] + half), _r(center[1] + half)]]


def write_mpii(root: Path, spec: DatasetSpec, records: dict[str, list[dict]], seed: int) -> None:
    sk = load_skeleton(spec.skeleton)
    for split, recs in records.items():
        people, gt_pos, gt_missing, gt_heads = [], [], [], []
        for rec in recs:
            for fig in rec["figures"]:
                kps = fig["keypoints"][spec.skeleton]
                labelled = kps[:, 2] > 0
                if labelled.sum() < 1:
                    continue
                x, y, w, h = fig["bbox"]
                side = max(h, w)
                # MPII's rough person position sits above the box centre; readers move it down by 15/200 of the
                # person size, as mmpose does, so write it that much higher.
                center = [x + w / 2 + 1, y + h / 2 + 1 - 15 / 200 * side]
                joints = [[_r(px + 1), _r(py + 1)] if ok else [-1.0, -1.0] for (px, py, _), ok in zip(kps, labelled)]
                people.append({"image": annotation_name(spec, split, rec["path"]),
                               "center": [_r(c) for c in center], "scale": round(side / 200, 4),
                               "joints": joints, "joints_vis": [int(v) for v in labelled]})
                gt_pos.append(np.where(labelled[:, None], kps[:, :2] + 1, 0.0))
                gt_missing.append(~labelled)
                gt_heads.append(mpii_head_box(kps, sk))
        dump_json(root / "annotations" / f"mpii_{split}.json", people)
        if split == "val":
            names = np.empty((1, sk.num_keypoints), dtype=object)
            for i, kp in enumerate(sk.keypoints):
                names[0, i] = MPII_ABBREVIATIONS[kp]
            k = sk.num_keypoints
            scipy.io.savemat(root / "annotations" / "mpii_gt_val.mat", {
                "dataset_joints": names,
                "jnt_missing": np.array(gt_missing, dtype=np.uint8).reshape(-1, k).T,
                "pos_gt_src": np.array(gt_pos, dtype=np.float64).reshape(-1, k, 2).transpose(1, 2, 0),
                "headboxes_src": np.array(gt_heads, dtype=np.float64).reshape(-1, 2, 2).transpose(1, 2, 0),
            })
    write_groundtruth(root, spec, records)


# ----------------------------------------------------------------------------- AP-10K and APT-36K
def _species_categories(skeleton: str) -> list[dict]:
    return [category(skeleton, s.id, s.name, s.family) for s in SPECIES]


def write_ap10k(root: Path, spec: DatasetSpec, records: dict[str, list[dict]], seed: int) -> None:
    for split, recs in records.items():
        images, anns = coco_images_and_annotations(
            spec, split, recs, extra_image=lambda rec: {"background": rec["background"] + 1},
            extra_ann=lambda rec, k, fig: {"category_id": fig["species"].id})
        dump_json(root / "annotations" / f"ap10k-{split}-split1.json",
                  {"images": images, "annotations": anns, "categories": _species_categories(spec.skeleton)})
    write_groundtruth(root, spec, records)


def write_apt36k(root: Path, spec: DatasetSpec, records: dict[str, list[dict]], seed: int) -> None:
    images, anns = [], []
    for split, recs in records.items():
        i, a = coco_images_and_annotations(
            spec, split, recs, extra_image=lambda rec: {"video_id": rec["clip"] + 1, "frame_id": rec["frame"]},
            extra_ann=lambda rec, k, fig: {"category_id": fig["species"].id, "video_id": rec["clip"] + 1,
                                           "track_id": k + 1})
        images += i
        anns += a
    dump_json(root / "annotations" / "apt36k_annotations.json",
              {"images": images, "annotations": anns, "categories": _species_categories(spec.skeleton)})
    write_groundtruth(root, spec, records)


# ----------------------------------------------------------------------------- InterHand2.6M
def write_interhand(root: Path, spec: DatasetSpec, records: dict[str, list[dict]], seed: int) -> None:
    for split, recs in records.items():
        images, anns, cameras, joints = [], [], {}, {}
        for rec in recs:
            capture, cam, frame_idx, seq = _interhand_ids(spec, split, rec["index"])
            iid = image_id(split, rec["index"])
            images.append({"id": iid, "file_name": annotation_name(spec, split, rec["path"]),
                           "width": rec["width"], "height": rec["height"], "capture": capture,
                           "subject": capture % 10 + 1, "seq_name": seq, "camera": str(cam), "frame_idx": frame_idx})
            R, campos = rec["extrinsics"]
            camera = rec["camera"]
            entry = cameras.setdefault(str(capture), {"campos": {}, "camrot": {}, "focal": {}, "princpt": {}})
            entry["campos"][str(cam)] = [_r(v) for v in campos]
            entry["camrot"][str(cam)] = [[round(float(v), 6) for v in row] for row in R]
            entry["focal"][str(cam)] = [_r(v) for v in camera.focal]
            entry["princpt"][str(cam)] = [_r(v) for v in camera.princpt]
            world = np.zeros((42, 3))
            valid3d = np.zeros(42, int)
            valid2d = np.zeros(42, int)
            for fig in rec["figures"]:
                lo = 0 if fig["side"] == "right" else 21       # right hand 0-20, left hand 21-41
                world[lo:lo + 21] = fig["camera_xyz"] @ R + campos   # camera = R (world - campos)
                valid3d[lo:lo + 21] = 1
                valid2d[lo:lo + 21] = fig["keypoints"][spec.skeleton][:, 2] > 0
            hand_type = rec["info"]["hand_type"]
            x0 = min(f["bbox"][0] for f in rec["figures"])
            y0 = min(f["bbox"][1] for f in rec["figures"])
            x1 = max(f["bbox"][0] + f["bbox"][2] for f in rec["figures"])
            y1 = max(f["bbox"][1] + f["bbox"][3] for f in rec["figures"])
            anns.append({"id": iid, "image_id": iid, "bbox": _box([x0, y0, x1 - x0, y1 - y0]),
                         "joint_valid": [int(v) for v in valid2d], "hand_type": hand_type, "hand_type_valid": 1})
            joints.setdefault(str(capture), {})[str(frame_idx)] = {
                "world_coord": [[_r(v) for v in p] for p in world], "joint_valid": [int(v) for v in valid3d],
                "hand_type": hand_type, "hand_type_valid": 1}
        folder = root / "annotations" / split
        dump_json(folder / f"InterHand2.6M_{split}_data.json",
                  {"images": images, "annotations": anns, "categories": [category(spec.skeleton, name="hand",
                                                                                   supercategory="hand")]})
        dump_json(folder / f"InterHand2.6M_{split}_camera.json", cameras)
        dump_json(folder / f"InterHand2.6M_{split}_joint_3d.json", joints)
    write_groundtruth(root, spec, records)


# ----------------------------------------------------------------------------- 3DPW (ScoreHypo-processed JSON)
def write_3dpw(root: Path, spec: DatasetSpec, records: dict[str, list[dict]], seed: int) -> None:
    for split, recs in records.items():
        images, anns = [], []
        for rec in recs:
            iid = image_id(split, rec["index"])
            camera = rec["camera"]
            images.append({"id": iid, "file_name": annotation_name(spec, split, rec["path"]),
                           "sequence": _3dpw_sequence(spec, split, rec["index"]), "width": rec["width"],
                           "height": rec["height"],
                           "cam_param": {"focal": [_r(v) for v in camera.focal], "princpt": [_r(v) for v in camera.princpt]}})
            for k, fig in enumerate(rec["figures"]):
                box = _annotated_box(fig)
                if box is None:
                    continue
                cam = fig["camera_xyz"]
                uv = fig["keypoints"][spec.skeleton][:, :2]
                anns.append({"id": iid * 10 + k, "image_id": iid, "bbox": box,
                             "smpl_joint_img": [[_r(u), _r(v), _r(z)] for (u, v), z in zip(uv, cam[:, 2])],
                             "smpl_joint_cam": [[_r(c) for c in p] for p in cam]})
        dump_json(root / "annotations" / f"3DPW_{split}.json", {"images": images, "annotations": anns})
    write_groundtruth(root, spec, records,
                      key=lambda split, rec: f"{_3dpw_sequence(spec, split, rec['index'])}/"
                                             f"{annotation_name(spec, split, rec['path'])}")


WRITERS = {"coco": write_coco, "aic": write_aic, "mpii": write_mpii, "coco_wholebody": write_coco_wholebody,
           "ap10k": write_ap10k, "apt36k": write_apt36k, "interhand": write_interhand, "3dpw": write_3dpw}
