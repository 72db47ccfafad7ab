"""Top-down prediction: boxes in, keypoints in image coordinates out.

For every box: padded center/scale (1.25, or the recipe's `box_padding` for the dataset), affine crop to the model input, ImageNet normalisation, one forward
pass (plus one on the mirrored crop when flip test is on), decode with the dataset's codec, and the inverse
affine back to the image. Crops of all images are batched together.

Two sources of heatmaps:
- "head": the heatmap head of one training dataset (with its expert in a ViTPose++ backbone);
- "prototypes": the prototype heatmaps (best cosine between pixel embeddings and a keypoint's prototypes) of
  any skeleton in the prototype bank, even one whose head is absent.

The network is a heatmap function (normalised crops -> heatmaps of the target skeleton): `TorchHeatmaps` over a
PoseModel, or `onnx_model.OnnxHeatmaps` over an exported file, whose metadata then describes the target (skeleton,
codec, input size, box padding, mean/std). Everything around the network is shared by both.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from posebh_cli.data.codecs import make_codec
from posebh_cli.data.dataset import IMAGENET_MEAN, IMAGENET_STD, normalise  # the same normalisation as training
from posebh_cli.data.topdown import box_to_center_scale, flip_heatmaps, get_warp_matrix, input_to_image, warp_image
from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import read_json
from posebh_cli.inference.nms import rescore
from posebh_cli.inference.onnx_model import OnnxHeatmaps, is_onnx
from posebh_cli.models.prototypes import bank_entries
from posebh_cli.skeletons import Skeleton, list_skeletons, load_skeleton

BOX_PADDING = 1.25
# ViTPose++ / PoseBH: UDP for COCO and MPII, MSRA for every other dataset.
UDP_DATASETS = ("coco", "mpii")


@dataclass
class Target:
    """What one Predictor predicts: a skeleton, where its heatmaps come from, and which expert runs."""

    name: str                 # dataset name (head) or bank entry name (prototypes)
    skeleton: Skeleton
    dataset_idx: int          # expert / head index in model.datasets
    keypoint_offset: int = 0  # first global prototype index (prototypes only)
    channels: list[int] | None = None  # head channels of `skeleton`'s keypoints, when picked by name


def _bank_entries(model) -> list[tuple[str, Skeleton, int]]:
    """(name, skeleton, global offset) of every skeleton in the prototype bank, in bank order."""
    if getattr(model, "prototypes", None) is None:
        raise PosebhError("this checkpoint has no prototype bank; use the heatmap heads (drop --prototypes)")
    return bank_entries(model)


def _match(name: str | None, skeleton: Skeleton | str | None, entries: list[tuple[str, Skeleton]]) -> int:
    """Index of the entry named `name`, or of the first whose skeleton matches; the first entry by default."""
    available = ", ".join(f"{n} ({sk.name})" for n, sk in entries)
    if name is not None:
        for i, (n, _) in enumerate(entries):
            if n == name:
                return i
        for i, (_, sk) in enumerate(entries):  # a skeleton name is accepted where a dataset name is asked
            if sk.name == name:
                return i
        raise PosebhError(f"the model has no dataset or skeleton '{name}'; available: {available}")
    if skeleton is not None:
        wanted = skeleton if isinstance(skeleton, Skeleton) else load_skeleton(skeleton)
        for i, (_, sk) in enumerate(entries):
            if sk.name == wanted.name and sk.keypoints == wanted.keypoints:
                return i
        raise PosebhError(f"the model has no head with skeleton '{wanted.name}'; available: {available}")
    return 0


def select_by_keypoint_names(model, dataset: str | None, skeleton: Skeleton | str | None) -> Target | None:
    """A head whose skeleton names every keypoint of the wanted skeleton, read through those channels.

    This is how a union-skeleton head (method distill, e.g. coco_mpii21) predicts COCO or MPII: the wanted skeleton
    is `skeleton`, else the built-in skeleton named `dataset`. The selected channels are in the wanted order, so
    flip pairs, sigmas and the codec follow the wanted skeleton and dataset. None when no head covers it.
    """
    if skeleton is None and dataset in list_skeletons():
        skeleton = dataset
    if skeleton is None:
        return None
    wanted = skeleton if isinstance(skeleton, Skeleton) else load_skeleton(skeleton)
    for i, head_skeleton in enumerate(model.skeletons):
        position = {name: k for k, name in enumerate(head_skeleton.keypoints)}
        if all(name in position for name in wanted.keypoints):
            return Target(name=dataset or wanted.name, skeleton=wanted, dataset_idx=i,
                          channels=[position[name] for name in wanted.keypoints])
    return None


def resolve_target(model, dataset: str | None = None, skeleton: Skeleton | str | None = None,
                   source: str = "head") -> Target:
    """Pick the head (or prototype-bank entry) that predicts the requested dataset or skeleton.

    With heads, a request no head matches by name or skeleton falls back to `select_by_keypoint_names`.
    """
    heads = list(zip(model.datasets, model.skeletons))
    if source == "head":
        try:
            i = _match(dataset, skeleton, heads)
        except PosebhError:
            by_names = select_by_keypoint_names(model, dataset, skeleton)
            if by_names is None:
                raise
            return by_names
        return Target(name=heads[i][0], skeleton=heads[i][1], dataset_idx=i)
    if source != "prototypes":
        raise PosebhError(f"source must be 'head' or 'prototypes', got '{source}'")
    entries = _bank_entries(model)
    i = _match(dataset, skeleton, [(n, sk) for n, sk, _ in entries])
    name, sk, offset = entries[i]
    # The expert of the same dataset when the backbone has one; the first expert otherwise.
    dataset_idx = list(model.datasets).index(name) if name in model.datasets else 0
    return Target(name=name, skeleton=sk, dataset_idx=dataset_idx, keypoint_offset=offset)


def load_checkpoint(path: str | Path, device: str | None = None):
    """(model, recipe dict or None) from a checkpoint; the recipe is read from the model.json beside the weights."""
    from posebh_cli.models.checkpoint import META_NAME, load_model

    model = load_model(path, device or "cpu")
    path = Path(path)
    meta_path = path / META_NAME if path.is_dir() else path.parent / META_NAME
    recipe = None
    if meta_path.is_file():
        recipe = read_json(meta_path, "checkpoint metadata").get("recipe")
    return model, recipe if isinstance(recipe, dict) else None


def _input_size(model) -> tuple[int, int]:
    """(w, h) of the model input (models keep img_size as (h, w))."""
    h, w = getattr(model, "img_size", None) or model.backbone.img_size
    return int(w), int(h)


def default_codec(model, dataset: str, recipe: dict | None = None):
    """The codec the recipe (a checkpoint's `recipe` dict) trained `dataset` with; else UDP for coco/mpii and
    MSRA for the rest. The heatmap size is the recipe's `model.heatmap_size` ((h, w)), else a quarter of the input.
    """
    input_w, input_h = _input_size(model)
    recipe = recipe or getattr(model, "recipe", None) or {}
    heatmap_hw = (recipe.get("model") or {}).get("heatmap_size") or (input_h // 4, input_w // 4)
    name, sigma = ("udp" if dataset in UDP_DATASETS else "msra"), 2.0
    for entry in recipe.get("datasets") or []:
        if entry.get("name") == dataset:
            name, sigma = entry.get("codec", name), float(entry.get("sigma", sigma))
    return make_codec(name, input_size=(input_w, input_h), heatmap_size=(int(heatmap_hw[1]), int(heatmap_hw[0])),
                      sigma=sigma)


def default_flip_test(recipe: dict | None = None) -> bool:
    """Flip test, unless the recipe trained without mirrored crops (`train.augmentation.flip: 0`).

    Flip test assumes a mirrored crop is another valid crop with its left/right labels swapped, as on photos. A model
    trained without flips, on data whose sides look different (the synthetic zoo colours them), reads the mirrored
    crop's sides the wrong way round, and averaging the two readings undoes what it learned.
    """
    flip = (((recipe or {}).get("train") or {}).get("augmentation") or {}).get("flip")
    return flip is None or float(flip) > 0


def default_box_padding(dataset: str, recipe: dict | None = None) -> float:
    """The recipe's `box_padding` for `dataset` (1.0 where the annotations pad boxes already, as InterHand), else 1.25."""
    recipe = recipe or {}
    for entry in recipe.get("datasets") or []:
        if entry.get("name") == dataset and entry.get("box_padding") is not None:
            return float(entry["box_padding"])
    return BOX_PADDING


class TorchHeatmaps:
    """A PoseModel as the heatmap function of one target: normalised crops [B, 3, H, W] -> heatmaps [B, K, h, w]
    of its head (through the target's expert and channels), or of its prototype-bank rows."""

    def __init__(self, model, target: Target, source: str):
        self.model, self.target, self.source = model, target, source

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        dataset_idx = torch.full((len(images),), self.target.dataset_idx, dtype=torch.long, device=images.device)
        if self.source == "head":
            out = self.model(images, dataset_idx, heads="own")
            heatmaps = out["heatmaps"][self.target.dataset_idx]
            return heatmaps if self.target.channels is None else heatmaps[:, self.target.channels]
        out = self.model(images, dataset_idx, heads="own", with_embedding=True)
        start = self.target.keypoint_offset
        rows = slice(start, start + self.target.skeleton.num_keypoints)
        bank = self.model.prototypes
        if getattr(bank, "abs_similarity", False):
            # A bank imported from the released code was trained and is scored there with |cos|: a prototype
            # may point away from its embeddings, so score it the same way (models/official.py).
            cos = torch.einsum("bfhw,jmf->bjmhw", F.normalize(out["embeddings"], dim=1), bank.prototypes[rows])
            return cos.abs().amax(dim=2)
        return bank.heatmaps(out["embeddings"], rows)


def _onnx_target(runner: OnnxHeatmaps, dataset: str | None, skeleton: Skeleton | str | None,
                 source: str | None) -> Target:
    """The one target an exported model predicts; a request for another is one error naming the file."""
    meta = runner.meta
    exported = (f"exported {'the prototype heatmaps' if meta.source == 'prototypes' else 'the head'} of "
                f"'{meta.name}' (skeleton '{meta.skeleton.name}')")
    if source is not None and source != meta.source:
        wanted = "prototype heatmaps (--prototypes)" if source == "prototypes" else "a head"
        raise input_error(runner.path, f"{exported}, not {wanted}")
    if dataset is not None and dataset not in (meta.name, meta.skeleton.name):
        option = "--prototypes" if source == "prototypes" else "--dataset"
        raise input_error(runner.path, f"{exported}; {option} is '{dataset}'")
    if skeleton is not None:
        wanted = skeleton if isinstance(skeleton, Skeleton) else load_skeleton(skeleton)
        if (wanted.name, wanted.keypoints) != (meta.skeleton.name, meta.skeleton.keypoints):
            raise input_error(runner.path, f"{exported}; --skeleton is '{wanted.name}'")
    return Target(name=meta.name, skeleton=meta.skeleton, dataset_idx=0)


class Predictor:
    """Batched top-down pose prediction with one model for one skeleton.

    `model` is a PoseModel, a checkpoint path, an exported `.onnx` file or its `OnnxHeatmaps`. With a PoseModel,
    `dataset` / `skeleton` pick the head (the first by default) or, with `source="prototypes"`, the prototype-bank
    skeleton; `recipe` is the checkpoint's recipe dict, read for the dataset's codec and box padding
    (`default_codec`, `default_box_padding`). An ONNX model predicts the one target its metadata describes (codec,
    box padding, input size, mean/std); `dataset` / `skeleton` / `source` must agree with it. `codec` and
    `box_padding` override either. `flip` (flip test) defaults to the recipe's (`default_flip_test`): on, unless
    the model trained without mirrored crops. Everything around the network (crops, normalisation, flip test, decoding,
    back-projection, rescoring) is this class's, whichever `heatmap_fn` runs.

    `predict(images, boxes_per_image, box_scores)` returns, per image, a list of instances:
    {"keypoints": [K, 3] (x, y, score) in image pixels, "bbox": [x, y, w, h], "box_score", "score",
     "center", "scale", "area"} where `score` = box score x mean of the keypoint scores above 0.2 and
    `area` is the area of the padded box (what OKS-NMS uses).
    """

    def __init__(self, model, dataset: str | None = None, skeleton: Skeleton | str | None = None,
                 device: str | torch.device | None = None, batch_size: int = 32, flip: bool | None = None, codec=None,
                 source: str | None = None, recipe: dict | None = None, box_padding: float | None = None):
        if isinstance(model, (str, Path)):
            if is_onnx(model):
                model = OnnxHeatmaps(model, None if device is None else str(device))
            else:
                model, checkpoint_recipe = load_checkpoint(model)
                recipe = recipe or checkpoint_recipe
        self.provider: str | None = None  # the ONNX Runtime execution provider, for an exported model
        if isinstance(model, OnnxHeatmaps):
            meta = model.meta
            self.device = torch.device("cpu")  # crops go to onnxruntime as numpy; decoding runs on the CPU
            self.model, self.provider = model, model.provider
            self.target = _onnx_target(model, dataset, skeleton, source)
            self.source = meta.source
            own_codec, own_padding = meta.codec, meta.box_padding
            own_flip = meta.flip_test
            self.input_size, self.mean, self.std = meta.input_size, meta.mean, meta.std
            self.heatmap_fn = model
        else:
            self.device = torch.device(device) if device is not None else next(model.parameters()).device
            self.model = model.to(self.device).eval()
            self.source = source or "head"
            self.target = resolve_target(model, dataset, skeleton, self.source)
            own_codec = None if codec is not None else default_codec(model, self.target.name, recipe)
            own_padding = default_box_padding(self.target.name, recipe)
            own_flip = default_flip_test(recipe)
            self.input_size, self.mean, self.std = _input_size(model), IMAGENET_MEAN, IMAGENET_STD
            self.heatmap_fn = TorchHeatmaps(self.model, self.target, self.source)
        self.skeleton = self.target.skeleton
        self.codec = codec if codec is not None else own_codec
        self.box_padding = box_padding if box_padding is not None else own_padding
        self.batch_size = max(1, int(batch_size))
        self.flip = flip if flip is not None else own_flip

    # ------------------------------------------------------------------ geometry
    def crop(self, image: np.ndarray, bbox: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(crop [h, w, 3] uint8, center, scale) for one xywh box."""
        width, height = self.input_size
        center, scale = box_to_center_scale(bbox, aspect_ratio=width / height, padding=self.box_padding)
        matrix = get_warp_matrix(center, scale, 0.0, self.input_size, use_udp=self.codec.use_udp)
        return warp_image(image, matrix, self.input_size), center, scale

    def to_tensor(self, crops: list[np.ndarray]) -> torch.Tensor:
        """RGB uint8 crops -> normalised [B, 3, h, w] float32 on the device (ImageNet mean/std, as in training)."""
        if np.array_equal(self.mean, IMAGENET_MEAN) and np.array_equal(self.std, IMAGENET_STD):
            batch = np.stack([normalise(crop) for crop in crops])
        else:  # an exported model whose metadata names other statistics
            batch = np.stack([((crop.astype(np.float32) / 255.0 - self.mean) / self.std).transpose(2, 0, 1)
                              for crop in crops])
        return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)

    # ------------------------------------------------------------------ network
    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        """Heatmaps [B, K, h, w] of the target skeleton for a normalised batch."""
        return self.heatmap_fn(images)

    @torch.no_grad()
    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """Heatmaps of a normalised batch, averaged with the mirrored batch when flip test is on.

        Non-UDP codecs shift the mirrored maps by one pixel to undo the flip's off-by-one (MSRA convention).
        """
        heatmaps = self._forward(images)
        if self.flip:
            flipped = self._forward(images.flip(-1))
            flipped = flip_heatmaps(flipped, self.skeleton.flip_indices, shift=not self.codec.use_udp)
            heatmaps = (heatmaps + flipped) * 0.5
        return heatmaps

    # ------------------------------------------------------------------ prediction
    def predict_crops(self, crops: list[np.ndarray], centers: np.ndarray, scales: np.ndarray,
                      return_heatmaps: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Keypoints [N, K, 3] (x, y, score) in image pixels for crops cut at `centers`/`scales` [N, 2].

        Runs in batches of `batch_size`; also returns the heatmaps [N, K, h, w] when asked (else None).
        """
        keypoints, maps = [], []
        for start in range(0, len(crops), self.batch_size):
            stop = start + self.batch_size
            heatmaps = self.heatmaps(self.to_tensor(crops[start:stop])).float()
            coords, scores = self.codec.decode(heatmaps)  # on the model's device, whole batch at once
            xy = input_to_image(coords.cpu().numpy(), centers[start:stop], scales[start:stop], self.input_size,
                                self.codec.use_udp)
            keypoints.append(np.concatenate([xy, scores.cpu().numpy()[..., None]], axis=-1).astype(np.float32))
            if return_heatmaps:
                maps.append(heatmaps.cpu().numpy())
        if not keypoints:
            return np.zeros((0, self.skeleton.num_keypoints, 3), np.float32), None
        return np.concatenate(keypoints), (np.concatenate(maps) if return_heatmaps else None)

    def predict(self, images: list[np.ndarray], boxes_per_image: list | None = None,
                box_scores: list | None = None, return_heatmaps: bool = False) -> list[list[dict]]:
        """Instances per image. Boxes are xywh; no boxes for an image (None) means the whole image.

        With `return_heatmaps`, each instance also carries its `heatmaps` [K, h, w] and the `matrix` that cut
        its crop (image -> model input), for overlays.
        """
        jobs = []  # (image index, bbox, box score)
        for i, image in enumerate(images):
            boxes = None if boxes_per_image is None else boxes_per_image[i]
            if boxes is None:
                height, width = image.shape[:2]
                boxes, scores = [[0.0, 0.0, float(width), float(height)]], [1.0]
            else:
                scores = [1.0] * len(boxes) if box_scores is None or box_scores[i] is None else box_scores[i]
            jobs.extend((i, [float(v) for v in box], float(s)) for box, s in zip(boxes, scores))

        results: list[list[dict]] = [[] for _ in images]
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start:start + self.batch_size]
            crops, centers, scales = zip(*(self.crop(images[i], box) for i, box, _ in chunk))
            keypoints, maps = self.predict_crops(list(crops), np.stack(centers), np.stack(scales), return_heatmaps)
            instance_scores = rescore(keypoints[:, :, 2], np.array([s for _, _, s in chunk]))
            for j, (i, box, box_score) in enumerate(chunk):
                center, scale = centers[j], scales[j]
                inst = {"keypoints": keypoints[j], "bbox": box, "box_score": box_score,
                        "score": float(instance_scores[j]), "center": center, "scale": scale,
                        "area": float(scale[0] * scale[1])}
                if return_heatmaps:
                    inst["heatmaps"] = maps[j]
                    inst["matrix"] = get_warp_matrix(center, scale, 0.0, self.input_size, self.codec.use_udp)
                results[i].append(inst)
        return results


__all__ = ["Predictor", "TorchHeatmaps", "load_checkpoint", "Target", "resolve_target", "default_codec"]
