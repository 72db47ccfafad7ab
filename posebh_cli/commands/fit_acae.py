"""`posebh fit-acae`: export every head's pseudo-GT on the recipe's training crops, fit the ACAE, write it.

The ACAE network, its fitting and its file live in `models/acae.py`; this is the glue that runs a model on data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.progress import track
from torch import Tensor

from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import atomic_folder
from posebh_cli.models.acae import (ACAE, chiral_layout, default_latents, draw_latents, fit_acae, save_acae,
                                    split_latents)


@dataclass
class PseudoGT:
    poses: np.ndarray       # [N, J, 2] crop-normalised (x / input width, y / input height)
    head_scores: np.ndarray  # [N, H] mean max-heatmap score per head
    dataset: np.ndarray     # [N] index into the exported datasets
    ann_ids: np.ndarray     # [N]
    sample_crop: np.ndarray | None  # RGB crop of the first kept instance, for the overlay


@torch.no_grad()
def head_coordinates(model, images: Tensor, head_indices: list[int], codecs: list,
                     flip: bool = True) -> tuple[Tensor, Tensor]:
    """Decoded coordinates [B, J, 2] (input pixels) and max-heatmap scores [B, J] of the listed heads.

    Each head runs with its own expert (one pass per head when the backbone has experts), with flip test if `flip`.
    """
    from posebh_cli.data.topdown import flip_heatmaps

    def heads_on(x: Tensor) -> list[Tensor]:
        if not model.backbone.num_experts:
            maps = model(x, None, heads="all")["heatmaps"]
            return [maps[d] for d in head_indices]
        return [model(x, torch.full((len(x),), d, dtype=torch.long, device=x.device), heads="own")["heatmaps"][d]
                for d in head_indices]

    maps = heads_on(images)
    if flip:
        mirrored = heads_on(images.flip(-1))
        maps = [(m + flip_heatmaps(f, model.skeletons[d].flip_indices, shift=not c.use_udp)) * 0.5
                for m, f, d, c in zip(maps, mirrored, head_indices, codecs)]
    decoded = [c.decode(m.float()) for m, c in zip(maps, codecs)]
    return torch.cat([xy for xy, _ in decoded], 1), torch.cat([s for _, s in decoded], 1)


def export_pseudo_gt(model, recipe, head_names: list[str], max_instances: int, min_score: float, use_gt: bool,
                     batch_size: int = 32, device: str | torch.device = "cpu", progress: bool = True,
                     flip: bool = True) -> PseudoGT:
    """Predict every listed head on GT-box crops of the recipe datasets whose head is listed (no augmentation)."""
    from posebh_cli.data.codecs import dataset_codec
    from posebh_cli.data.dataset import normalise
    from posebh_cli.data.prepared import open_prepared
    from posebh_cli.data.topdown import affine_points, box_to_center_scale, get_warp_matrix, warp_image

    h, w = recipe.model.img_size
    specs = {s.name: s for s in recipe.datasets}
    head_indices = [model.datasets.index(n) for n in head_names]
    codecs = [dataset_codec(specs[n], (h, w)) for n in head_names]
    sizes = [model.skeletons[d].num_keypoints for d in head_indices]
    offsets = np.cumsum([0, *sizes])
    scale = np.array([w, h], dtype=np.float32)
    model = model.to(device).eval()
    poses, scores, datasets, ann_ids, sample = [], [], [], [], None
    for di, name in enumerate(head_names):
        spec = specs[name]
        instances = open_prepared(spec.path).instances(spec.train_split)
        if len(instances) > max_instances:  # evenly spread over the split, deterministic
            instances = [instances[i] for i in np.linspace(0, len(instances) - 1, max_instances).round().astype(int)]
        for start in track(range(0, len(instances), batch_size), description=f"pseudo-GT {name}",
                           disable=not progress, transient=True):
            chunk = instances[start:start + batch_size]
            crops, matrices = [], []
            for inst in chunk:
                image = cv2.imread(str(inst.image_path), cv2.IMREAD_COLOR)
                if image is None:
                    raise input_error(inst.image_path, "image file is missing or cannot be decoded",
                                      record=f"annotation id={inst.ann_id}", field="file_name")
                center, box_scale = box_to_center_scale(inst.bbox, aspect_ratio=w / h)
                matrix = get_warp_matrix(center, box_scale, 0.0, (w, h), use_udp=codecs[di].use_udp)
                crops.append(warp_image(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), matrix, (w, h)))
                matrices.append(matrix)
            images = torch.from_numpy(np.stack([normalise(c) for c in crops])).to(device)
            xy, score = head_coordinates(model, images, head_indices, codecs, flip)
            xy, score = xy.cpu().numpy() / scale, score.cpu().numpy()
            head_scores = np.stack([score[:, a:b].mean(1) for a, b in zip(offsets[:-1], offsets[1:])], 1)
            for j, inst in enumerate(chunk):
                if head_scores[j].min() < min_score:
                    continue
                if use_gt:  # labelled points of the image's own head replace the prediction
                    labelled = inst.keypoints[:, 2] > 0
                    rows = offsets[di] + np.nonzero(labelled)[0]
                    xy[j, rows] = affine_points(inst.keypoints[labelled, :2], matrices[j]) / scale
                poses.append(xy[j])
                scores.append(head_scores[j])
                datasets.append(di)
                ann_ids.append(inst.ann_id)
                if sample is None:
                    sample = crops[j]
    if not poses:
        raise PosebhError(f"--min-score: no instance has every head's mean max-heatmap score >= {min_score}; "
                          f"lower it or train the multi-head model longer")
    return PseudoGT(np.stack(poses).astype(np.float32), np.stack(scores).astype(np.float32),
                    np.array(datasets), np.array(ann_ids), sample)


# ------------------------------------------------------------------ the command
def default_heads(model, recipe) -> list[str]:
    """Recipe datasets whose head shares the first head's body plan (an animal head on a person says nothing)."""
    names = [s.name for s in recipe.datasets if s.name in model.datasets]
    if not names:
        raise PosebhError(f"the checkpoint's heads ({', '.join(model.datasets)}) include no dataset of the recipe")
    plan = model.skeletons[model.datasets.index(names[0])].body_plan
    return [n for n in names if model.skeletons[model.datasets.index(n)].body_plan == plan]


def _check_heads(model, recipe, heads: list[str]) -> None:
    from posebh_cli.data.prepared import open_prepared

    if tuple(model.config.img_size) != tuple(recipe.model.img_size):
        raise PosebhError(f"--recipe: model.img_size {list(recipe.model.img_size)} differs from the checkpoint's "
                          f"{list(model.config.img_size)}")
    specs = {s.name: s for s in recipe.datasets}
    for name in heads:
        if name not in specs:
            raise PosebhError(f"--heads: '{name}' is not a dataset of the recipe ({', '.join(specs)})")
        if name not in model.datasets:
            raise PosebhError(f"--heads: the checkpoint has no head '{name}' (it has {', '.join(model.datasets)})")
        skeleton = open_prepared(specs[name].path).skeleton
        if model.skeletons[model.datasets.index(name)].keypoints != skeleton.keypoints:
            raise PosebhError(f"--heads: head '{name}' of the checkpoint predicts skeleton "
                              f"'{model.skeletons[model.datasets.index(name)].name}' but {specs[name].path} is "
                              f"annotated with '{skeleton.name}'")


def reconstruction_errors(acae: ACAE, poses: Tensor, sizes: list[int], names: list[str],
                          input_size: tuple[int, int]) -> dict[str, float]:
    """Mean distance in input pixels between each head's joints and their reconstruction."""
    with torch.no_grad():
        diff = (acae(poses) - poses) * torch.tensor(input_size, dtype=poses.dtype)
    dist = diff.norm(dim=-1).mean(0)
    out, start = {}, 0
    for name, k in zip(names, sizes):
        out[name] = float(dist[start:start + k].mean())
        start += k
    return out


def fit_acae_command(checkpoint: str | Path | None, recipe_path: str | Path, out: str | Path, latents: int | None = None,
                     centre_latents: int | None = None, lam: float = 0.6, steps: int = 2000, max_instances: int = 2000,
                     min_score: float = 0.2, heads: list[str] | None = None, use_gt: bool = False,
                     batch_size: int = 32, device: str | None = None, seed: int = 0) -> dict:
    """`posebh fit-acae`: export pseudo-GT with every head, fit the ACAE, write ACAE_DIR atomically.

    `checkpoint` is a model name or a path (None: the default model); the recipe a path or a bundled name."""
    from posebh_cli.commands.devices import resolve_device
    from posebh_cli.inference.predictor import default_flip_test, load_checkpoint
    from posebh_cli.methods import load_recipe
    from posebh_cli.models.store import resolve_checkpoint

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise PosebhError(f"{out}: already exists and is not empty; choose another --out")
    if lam < 0 or steps < 1 or max_instances < 1:
        raise PosebhError("--lambda must be >= 0, --steps and --max-instances >= 1")
    recipe = load_recipe(recipe_path)
    checkpoint = resolve_checkpoint(checkpoint)
    device = resolve_device(device)
    model, model_recipe = load_checkpoint(checkpoint)
    heads = list(heads) if heads else default_heads(model, recipe)
    _check_heads(model, recipe, heads)
    skeletons = [model.skeletons[model.datasets.index(n)] for n in heads]
    layout = chiral_layout(skeletons)
    latents = default_latents(layout.num_joints) if latents is None else latents
    pairs, centre = split_latents(latents, centre_latents, layout)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    pseudo = export_pseudo_gt(model, recipe, heads, max_instances, min_score, use_gt, batch_size, device,
                              flip=default_flip_test(model_recipe))
    poses = torch.from_numpy(pseudo.poses)
    acae = fit_acae(poses, layout, pairs, centre, lam=lam, steps=steps, seed=seed)
    h, w = recipe.model.img_size
    sizes = [sk.num_keypoints for sk in skeletons]
    errors = reconstruction_errors(acae, poses, sizes, heads, (w, h))

    head_meta = [{"name": n, "skeleton": sk.name, "keypoints": list(sk.keypoints)} for n, sk in zip(heads, skeletons)]
    extra = {"lambda": lam, "steps": steps, "instances": int(len(poses)), "min_score": min_score, "use_gt": use_gt,
             "input_size": [w, h], "checkpoint": str(checkpoint), "recipe": str(recipe_path),
             "reconstruction_error_px": errors}
    with atomic_folder(out) as tmp:
        save_acae(acae, tmp, head_meta, extra)
        np.savez_compressed(tmp / "pseudo_gt.npz", poses=pseudo.poses, head_scores=pseudo.head_scores,
                            dataset=pseudo.dataset, ann_ids=pseudo.ann_ids)
        first = pseudo.poses[0] * np.array([w, h], dtype=np.float32)
        with torch.no_grad():
            lat = (acae.encoder() @ torch.from_numpy(first)).numpy()
        overlay = draw_latents(pseudo.sample_crop, lat, acae.latent_sides, joints=first)
        cv2.imwrite(str(tmp / "latents.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    return {"out": str(out), "heads": heads, "instances": int(len(poses)), "latents": latents, "pairs": pairs,
            "centre_latents": centre, "reconstruction_error_px": errors}
