"""Small hand-written dataset files in each format's native layout, for the reader tests.

Every image is a 64x48 JPEG written with cv2; every file holds 1-3 people per image. The functions return the
dataset root and take no options: tests break a copy with `edit_json` to exercise the error paths.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import scipy.io

W, H = 64, 48


def write_image(path: Path, width: int = W, height: int = H) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((height, width, 3), 127, np.uint8)
    cv2.rectangle(image, (10, 8), (40, 40), (30, 200, 60), -1)
    assert cv2.imwrite(str(path), image)


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def edit_json(path: Path, change) -> None:
    """Load a JSON file, let `change(data)` modify it in place, write it back."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def keypoints(num: int, seed: int, outside: int = 0) -> list[float]:
    """num x [x, y, v] inside the 64x48 image (v cycles 2, 2, 1, 0); the first `outside` points lie at x=70."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(num):
        v = (2, 2, 1, 0)[i % 4]
        x, y = (float(rng.uniform(5, 58)), float(rng.uniform(5, 42))) if v else (0.0, 0.0)
        if i < outside:
            x, v = 70.0, 2
        out += [round(x, 2), round(y, 2), v]
    return out


def _coco_split(split: str, num: int, prefix_id: int, category_id: int = 1, extra_image=None, extra_ann=None):
    """Two images; the first has two people (one with a keypoint outside the image), the second one crowd region."""
    images, anns = [], []
    for i in range(2):
        image = {"id": prefix_id + i, "file_name": f"{prefix_id + i:012d}.jpg", "width": W, "height": H}
        images.append({**image, **(extra_image(i) if extra_image else {})})
    people = [(0, keypoints(num, 1, outside=1), 0), (0, keypoints(num, 2), 0), (1, [0] * (num * 3), 1)]
    for j, (i, kps, crowd) in enumerate(people):
        ann = {"id": prefix_id * 10 + j, "image_id": prefix_id + i, "category_id": category_id, "keypoints": kps,
               "num_keypoints": sum(1 for v in kps[2::3] if v > 0), "bbox": [4.0, 3.0, 50.0, 40.0],
               "area": 1500.0, "iscrowd": crowd, "segmentation": []}
        anns.append({**ann, **(extra_ann(j) if extra_ann else {})})
    return images, anns


def coco_sample(root: Path) -> Path:
    for split, first in (("train", 100), ("val", 200)):
        images, anns = _coco_split(split, 17, first)
        cats = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": [], "skeleton": []}]
        write_json(root / f"annotations/person_keypoints_{split}2017.json",
                   {"images": images, "annotations": anns, "categories": cats})
        for image in images:
            write_image(root / f"{split}2017" / image["file_name"])
    dets = [{"image_id": 200, "bbox": [5.0, 4.0, 40.0, 30.0], "score": 0.9, "category_id": 1},
            {"image_id": 201, "bbox": [1.0, 1.0, 20.0, 20.0], "score": 0.3, "category_id": 1}]
    write_json(root / "person_detection_results/COCO_val2017_detections_AP_H_56_person.json", dets)
    return root


AIC_RELEASES = {"train": ("ai_challenger_keypoint_train_20170902", "keypoint_train_images_20170902"),
                "val": ("ai_challenger_keypoint_validation_20170911", "keypoint_validation_images_20170911")}


def aic_mmpose_sample(root: Path) -> Path:
    for split, first in (("train", 100), ("val", 200)):
        images, anns = _coco_split(split, 14, first)
        for ann in anns:
            del ann["area"], ann["iscrowd"], ann["segmentation"]
        anns = anns[:2]  # mmpose's AIC files have no crowd regions
        write_json(root / f"annotations/aic_{split}.json", {"images": images, "annotations": anns,
                                                            "categories": [{"id": 1, "name": "person"}]})
        release, folder = AIC_RELEASES[split]
        for image in images:
            write_image(root / release / folder / image["file_name"])
    return root


def aic_original_sample(root: Path) -> Path:
    names = {"train": "keypoint_train_annotations_20170909.json", "val": "keypoint_validation_annotations_20170911.json"}
    for split in ("train", "val"):
        release, folder = AIC_RELEASES[split]
        records = []
        for i in range(2):
            name = f"{split}{i:04d}abcdef"
            write_image(root / release / folder / f"{name}.jpg")
            people = {}
            boxes = {}
            for h in range(i + 1):
                kps = keypoints(14, 10 * i + h)
                codes = [{2: 1, 1: 2, 0: 3}[v] for v in kps[2::3]]  # COCO v back to AIC codes
                kps[2::3] = codes
                people[f"human{h + 1}"] = [int(round(v)) for v in kps]
                boxes[f"human{h + 1}"] = [4, 3, 54, 43]
            records.append({"image_id": name, "url": "http://example", "human_annotations": boxes,
                            "keypoint_annotations": people})
        write_json(root / release / names[split], records)
    return root


MPII_VAL_PEOPLE = 3


def mpii_sample(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 2), ("val", MPII_VAL_PEOPLE)):
        people = []
        for p in range(count):
            image = f"{split}_{p // 2:05d}.jpg"  # two people share the first image
            write_image(root / "images" / image)
            joints = rng.uniform(6, 40, size=(16, 2)).round(1)
            vis = [1] * 16
            vis[p % 16] = 0
            joints[p % 16] = 0  # unlabelled joints are zeros in mmpose's file, Matlab-style 1-based otherwise
            people.append({"image": image, "center": [32.0, 22.0], "scale": 0.18, "joints": joints.tolist(),
                           "joints_vis": vis})
        write_json(root / f"annotations/mpii_{split}.json", people)
        if split == "val":
            n = len(people)
            pos = np.stack([np.asarray(p["joints"]) for p in people], axis=-1)  # [16, 2, N]
            missing = np.stack([1 - np.asarray(p["joints_vis"]) for p in people], axis=-1)
            heads = np.zeros((2, 2, n))
            for k in range(n):
                heads[:, :, k] = [[20 + k, 5], [30 + k, 15]]  # [[x1, y1], [x2, y2]], 1-based
            names = np.array([["rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thrx", "neck", "head",
                               "rwri", "relb", "rsho", "lsho", "lelb", "lwri"]], dtype=object)
            scipy.io.savemat(root / "annotations/mpii_gt_val.mat",
                             {"dataset_joints": names, "jnt_missing": missing, "pos_gt_src": pos, "headboxes_src": heads})
    return root


def ap10k_sample(root: Path) -> Path:
    cats = [{"id": 1, "name": "antelope", "supercategory": "Bovidae"}, {"id": 2, "name": "cat", "supercategory": "Felidae"}]
    for split, first in (("train", 100), ("val", 200), ("test", 300)):
        images, anns = _coco_split(split, 17, first, category_id=2, extra_image=lambda i: {"background": 1})
        write_json(root / f"annotations/ap10k-{split}-split1.json",
                   {"images": images, "annotations": anns, "categories": cats})
        for image in images:
            write_image(root / "data" / image["file_name"])
    return root


APT_VIDEOS = 10  # per category; two categories, two frames per video


def apt36k_sample(root: Path) -> Path:
    images, anns = [], []
    cats = [{"id": 1, "name": "dog", "supercategory": "animal"}, {"id": 2, "name": "horse", "supercategory": "animal"}]
    for cat in (1, 2):
        for v in range(APT_VIDEOS):
            video = cat * 100 + v
            for frame in range(2):
                image_id = len(images) + 1
                relative = f"{cats[cat - 1]['name']}\\clip{v}\\image{frame:04d}.png"
                name = f"D:\\apt36k\\{relative}" if v % 2 else relative  # absolute Windows paths happen too
                key = "video_id" if v % 3 else "video"
                images.append({"id": image_id, "file_name": name, "width": W, "height": H, key: video,
                               "frame_id": frame})
                write_image(root / "images" / relative.replace("\\", "/"))
                anns.append({"id": image_id * 10, "image_id": image_id, "category_id": cat, "video_id": video,
                             "keypoints": keypoints(17, image_id), "num_keypoints": 12, "bbox": [4, 3, 50, 40],
                             "area": 2000, "is_crowd": 0})
    write_json(root / "annotations/apt36k_annotations.json", {"images": images, "annotations": anns, "categories": cats})
    return root


def wholebody_sample(root: Path) -> Path:
    def parts(j: int) -> dict:
        return {"foot_kpts": keypoints(6, 30 + j), "face_kpts": [1.0, 1.0, 1.5] * 68,
                "lefthand_kpts": [20.0, 20.0, 0.4] * 21, "righthand_kpts": keypoints(21, 40 + j),
                "face_box": [0, 0, 10, 10], "lefthand_box": [15, 15, 10, 10], "righthand_box": [30, 30, 10, 10],
                "foot_valid": True, "face_valid": j == 0, "lefthand_valid": True, "righthand_valid": j != 0}

    for split, first in (("train", 100), ("val", 200)):
        images, anns = _coco_split(split, 17, first, extra_ann=parts)
        write_json(root / f"annotations/coco_wholebody_{split}_v1.0.json",
                   {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]})
        for image in images:
            write_image(root / f"{split}2017" / image["file_name"])
    return root


FOCAL, PRINCPT, DEPTH = 50.0, (32.0, 24.0), 1000.0


def hand_world(side: int, rng) -> np.ndarray:
    """21 world joints (mm) of one hand in front of the camera: right hands on the left of the image."""
    x = rng.uniform(-300, -100, 21) if side == 0 else rng.uniform(100, 300, 21)
    y = rng.uniform(-300, 300, 21)
    return np.stack([x, y, np.full(21, DEPTH)], axis=1)


def interhand_sample(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        base = root / "annotations" / split
        camera = {"7": {"campos": {"400262": [0.0, 0.0, 0.0]}, "camrot": {"400262": np.eye(3).tolist()},
                        "focal": {"400262": [FOCAL, FOCAL]}, "princpt": {"400262": list(PRINCPT)}}}
        images, anns, joints = [], [], {"7": {}}
        for i in range(2):
            image_id = i + 1
            file_name = f"Capture7/ROM/cam400262/image{i:04d}.jpg"
            images.append({"id": image_id, "file_name": file_name, "width": W, "height": H, "capture": 7,
                           "subject": 1, "seq_name": "ROM", "camera": "400262", "frame_idx": i})
            write_image(root / "images" / split / file_name)
            world = np.concatenate([hand_world(0, rng), hand_world(1, rng)])
            valid = [1] * 21 + ([1] * 10 + [0] * 10 + [1])  # left hand: wrist valid but only 11 joints
            joints["7"][str(i)] = {"world_coord": world.round(3).tolist(), "joint_valid": valid,
                                   "hand_type": "interacting", "hand_type_valid": True}
            anns.append({"id": 50 + i, "image_id": image_id, "bbox": [0, 0, 60, 40], "joint_valid": [[v] for v in valid],
                         "hand_type": "interacting", "hand_type_valid": 1})
        write_json(base / f"InterHand2.6M_{split}_data.json", {"images": images, "annotations": anns,
                                                               "categories": [{"id": 1, "name": "hand"}]})
        write_json(base / f"InterHand2.6M_{split}_camera.json", camera)
        write_json(base / f"InterHand2.6M_{split}_joint_3d.json", joints)
    return root


def pw3d_json_sample(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        images, anns = [], []
        for i in range(2):
            images.append({"id": i + 1, "file_name": f"image_{i:05d}.jpg", "sequence": f"courtyard_{split}_00",
                           "width": W, "height": H, "cam_param": {"focal": [50, 50], "princpt": [32, 24]}})
            write_image(root / "imageFiles" / f"courtyard_{split}_00" / f"image_{i:05d}.jpg")
            joints = np.stack([rng.uniform(5, 58, 24), rng.uniform(5, 42, 24), rng.uniform(1, 5, 24)], axis=1)
            joints[0] = [70.0, 10.0, 3.0]  # outside the image
            joints[1, 2] = -0.5  # behind the camera
            anns.append({"id": 10 + i, "image_id": i + 1, "bbox": [4.0, 3.0, 50.0, 40.0],
                         "smpl_joint_img": joints.round(3).tolist(), "smpl_joint_cam": joints.tolist(),
                         "smpl_param": {"pose": [0.0] * 72}, "h36m_joints": [[0, 0, 0]] * 17, "fitted_3d_pose": []})
        write_json(root / f"annotations/3DPW_{split}.json", {"images": images, "annotations": anns})
    return root


PW3D_K = np.array([[50.0, 0.0, 32.0], [0.0, 50.0, 24.0], [0.0, 0.0, 1.0]])


def pw3d_pickle_sample(root: Path) -> Path:
    """One official-style sequence: 2 frames, 1 actor at 5 m; the second frame's camera pose is invalid."""
    rng = np.random.default_rng(1)
    world = np.stack([rng.uniform(-1, 1, 24), rng.uniform(-1, 1, 24), np.full(24, 5.0)], axis=1)
    seq = {"sequence": "downtown_walk_00", "jointPositions": [np.tile(world.reshape(1, 72), (2, 1))],
           "cam_poses": np.tile(np.eye(4), (2, 1, 1)), "cam_intrinsics": PW3D_K, "img_frame_ids": np.array([0, 1]),
           "campose_valid": [np.array([1, 0])], "poses": np.zeros((2, 72)), "genders": ["m"]}
    for split in ("train", "test"):
        folder = root / "sequenceFiles" / split
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "downtown_walk_00.pkl", "wb") as f:
            pickle.dump(seq, f, protocol=2)
        for frame in (0, 1):
            write_image(root / "imageFiles" / "downtown_walk_00" / f"image_{frame:05d}.jpg")
    return root


SAMPLES = {"coco": coco_sample, "aic": aic_mmpose_sample, "mpii": mpii_sample, "ap10k": ap10k_sample,
           "apt36k": apt36k_sample, "coco_wholebody": wholebody_sample, "interhand": interhand_sample,
           "3dpw": pw3d_json_sample}
