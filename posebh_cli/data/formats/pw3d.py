"""3DPW as 24 SMPL joints in 2D, from ScoreHypo's JSON files or from the official sequence pickles.

ScoreHypo style (what PoseBH's preprocess_3dpw.py reads): SRC/annotations/3DPW_{train,validation,test}.json with
images {id, file_name, sequence, width, height, ...} and annotations {id, image_id, bbox, smpl_joint_img 24 x
(x, y, depth), ...}. A joint is visible when it lies inside the image and its depth is >= 0; file_name becomes
`sequence/file_name` under SRC/imageFiles/. The bulky 3D fields are not copied.

Official: SRC/sequenceFiles/{train,validation,test}/*.pkl (latin1 pickles): the 24 world joints of each actor
(jointPositions, N x 72) are projected with the per-frame extrinsics cam_poses and the intrinsics cam_intrinsics;
frames whose campose_valid is false are skipped; the image is imageFiles/<sequence>/image_%05d.jpg.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from posebh_cli.data.formats.coco import coco_dict_to_split
from posebh_cli.data.formats.common import (ReadOptions, ReadResult, SplitBuilder, as_numbers, box_of_points,
                                            category, load_json, progress, require)
from posebh_cli.errors import input_error
from posebh_cli.skeletons import load_skeleton

SPLITS = {"train": "train", "val": "validation", "test": "test"}  # prepared name -> 3DPW name
NUM_JOINTS = 24
# Joint centres lie inside the body; grow their tight box so the head top, hands and feet fit in the crop.
PKL_BOX_PADDING = 1.2
HEAVY_FIELDS = ("fitted_3d_pose", "smpl_param", "h36m_joints", "smpl_joint_img", "smpl_joint_cam", "joint_2d")


def smpl_keypoints(ann: dict, path: Path, where: str) -> np.ndarray:
    """`smpl_joint_img` (x, y, depth) → [24, 3] with v = 2 where depth >= 0 (outside-image joints: builder)."""
    joints = as_numbers(require(ann, "smpl_joint_img", path, where), NUM_JOINTS * 3, path, where, "smpl_joint_img")
    joints = joints.reshape(NUM_JOINTS, 3).copy()
    joints[:, 2] = np.where(joints[:, 2] >= 0, 2, 0)
    return joints


def read_scorehypo_split(path: Path, split: str, image_root: Path, options: ReadOptions) -> tuple[dict, dict]:
    skeleton = load_skeleton("smpl24")
    data = load_json(path)

    def fix_image(image: dict) -> None:
        sequence = image.get("sequence")
        if not isinstance(sequence, str) or not sequence:
            raise input_error(path, f"expected a non-empty string, got {sequence!r}",
                              record=f"image id={image.get('id')}", field="sequence")
        name = image.get("file_name")
        if isinstance(name, str) and not name.startswith(f"{sequence}/"):  # some copies already carry the folder
            image["file_name"] = f"{sequence}/{name}"

    def keypoints_of(ann: dict, p: Path, where: str) -> np.ndarray:
        kps = smpl_keypoints(ann, p, where)
        for key in HEAVY_FIELDS:
            ann.pop(key, None)
        return kps

    return coco_dict_to_split(data, path, split, skeleton, image_root, options, keypoints_of=keypoints_of,
                              fix_image=fix_image)


class _DataOnlyUnpickler(pickle.Unpickler):
    """Admits only the numpy and builtin types 3DPW's sequence files hold: a pickle cannot run code on load."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("builtins", "list"), ("builtins", "dict"),
               ("builtins", "tuple"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
               ("builtins", "complex"), ("__builtin__", "list"), ("__builtin__", "dict"), ("__builtin__", "set"),
               ("_codecs", "encode"), ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
               ("__builtin__", "object"), ("builtins", "object")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays and plain data "
                                         f"are allowed in a sequence file")
        return super().find_class(module, name)


def load_sequence(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            seq = _DataOnlyUnpickler(f, encoding="latin1").load()
    except Exception as exc:  # a broken pickle raises many unrelated types
        raise input_error(path, f"cannot read pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(seq, dict):
        raise input_error(path, f"expected a dict, got {type(seq).__name__}")
    for key in ("sequence", "jointPositions", "cam_poses", "cam_intrinsics", "img_frame_ids", "campose_valid"):
        require(seq, key, path, "sequence")
    return seq


def read_pickle_split(folder: Path, split: str, image_root: Path, options: ReadOptions) -> tuple[dict, dict]:
    skeleton = load_skeleton("smpl24")
    builder = SplitBuilder(split, folder, image_root, options)
    image_id = ann_id = 0
    for path in progress(sorted(folder.glob("*.pkl")), f"{split} sequences"):
        seq = load_sequence(path)
        name = str(seq["sequence"])
        frames = np.asarray(seq["img_frame_ids"]).reshape(-1)
        num = len(frames)
        poses = as_numbers(seq["cam_poses"], num * 16, path, "sequence", "cam_poses").reshape(num, 4, 4)
        intrinsics = as_numbers(seq["cam_intrinsics"], 9, path, "sequence", "cam_intrinsics").reshape(3, 3)
        actors = [as_numbers(j, num * NUM_JOINTS * 3, path, f"actor {a}", "jointPositions").reshape(num, NUM_JOINTS, 3)
                  for a, j in enumerate(seq["jointPositions"])]
        valid = [as_numbers(v, num, path, f"actor {a}", "campose_valid") > 0 for a, v in enumerate(seq["campose_valid"])]
        if len(valid) != len(actors):
            raise input_error(path, f"{len(valid)} entries for {len(actors)} actors", field="campose_valid")
        for i, frame in enumerate(frames):
            image_id += 1
            where = f"sequence {name} frame {int(frame)}"
            image = {"id": image_id, "file_name": f"{name}/image_{int(frame):05d}.jpg", "width": None,
                     "height": None, "sequence": name, "frame": int(frame)}
            if not builder.add_image(image, where):
                continue
            for actor, joints in enumerate(actors):
                if not valid[actor][i]:
                    continue
                cam = (poses[i, :3, :3] @ joints[i].T).T + poses[i, :3, 3]
                depth = cam[:, 2]
                pixels = (intrinsics @ cam.T).T
                pixels = pixels[:, :2] / np.where(np.abs(pixels[:, 2:]) > 1e-9, pixels[:, 2:], 1e-9)
                inside = ((depth > 0) & (pixels[:, 0] >= 0) & (pixels[:, 0] < image["width"])
                          & (pixels[:, 1] >= 0) & (pixels[:, 1] < image["height"]))
                box = box_of_points(pixels[inside], PKL_BOX_PADDING)
                if box is None:
                    continue
                kps = np.zeros((NUM_JOINTS, 3))
                kps[:, :2] = pixels
                kps[:, 2] = np.where(depth > 0, 2, 0)
                ann_id += 1
                builder.add_annotation({"id": ann_id, "image_id": image_id, "bbox": box, "iscrowd": 0,
                                        "category_id": 1, "actor": actor}, kps, f"{where} actor {actor}")
    return builder.finish([category(skeleton, 1, "person")])


def read_pw3d(src: Path, options: ReadOptions) -> ReadResult:
    """Per split, the ScoreHypo JSON when present, else the official sequence pickles."""
    result = ReadResult(skeleton=load_skeleton("smpl24"), image_root=src / "imageFiles", splits={}, counts={})
    for split, official in SPLITS.items():
        json_path = src / "annotations" / f"3DPW_{official}.json"
        pkl_folder = src / "sequenceFiles" / official
        if json_path.is_file():
            coco, counts = read_scorehypo_split(json_path, split, src / "imageFiles", options)
            result.notes.append(f"{split}: ScoreHypo file {json_path}")
        elif pkl_folder.is_dir() and any(pkl_folder.glob("*.pkl")):
            coco, counts = read_pickle_split(pkl_folder, split, src / "imageFiles", options)
            result.notes.append(f"{split}: official sequence files in {pkl_folder}")
        else:
            continue
        result.splits[split], result.counts[split] = coco, counts
    if not result.splits:
        raise input_error(src / "annotations" / "3DPW_train.json", "file not found (nor sequenceFiles/<split>/*.pkl)")
    return result
