"""The affine-combining autoencoder (ACAE, Sárándi et al. WACV'23) on 2D pseudo-GT of a multi-head model.

Every latent point is an affine combination of the joints of all heads (Q = W_enc P) and every joint an affine
combination of the latents (P̂ = W_dec Q): the free raw weights are divided by their per-output sums, so each
row of W_enc [L×J] and W_dec [J×L] sums to one. The same weights act on x and y, which makes the AE commute with
any 2D affine map (translation, scale, the crop warp). Chirality is tied: with joints ordered [left | right |
centre] and latents [left | right | centre], both matrices have the block form [[A,B,C],[B,A,C],[D,D,E]], so
mirroring the input (negate x, swap left and right) mirrors the latents and the reconstruction.

`posebh fit-acae` (`fit_acae_command`): run a trained multi-head checkpoint with all its heads (flip test) on the
training crops of a recipe's datasets, decode each head to crop-normalised coordinates, drop unconfident
instances, fit the ACAE (L1 + λ·(mean|W_enc| + mean|W_dec|), Adam 3e-2 → 3e-3 → 3e-4) and write
`acae.safetensors` + `acae.json` (+ the pseudo-GT and an overlay of the latents on a sample crop).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.progress import track
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from posebh_cli.errors import PosebhError, input_error
from posebh_cli.skeletons import Skeleton, side_of

WEIGHTS_NAME = "acae.safetensors"
META_NAME = "acae.json"
SIDE_COLORS = {"left": (0, 255, 0), "right": (255, 128, 0), "center": (51, 153, 255)}  # RGB, as the skeletons


# ------------------------------------------------------------------ layout and model
@dataclass(frozen=True)
class ChiralLayout:
    """Global joint indices (heads concatenated in order): left[i] and right[i] mirror each other."""

    left: tuple[int, ...]
    right: tuple[int, ...]
    centre: tuple[int, ...]

    @property
    def num_joints(self) -> int:
        return len(self.left) + len(self.right) + len(self.centre)

    @property
    def order(self) -> list[int]:
        """Joint indices in block order [left | right | centre]."""
        return [*self.left, *self.right, *self.centre]

    @property
    def mirror(self) -> list[int]:
        """For each global joint, the index of its mirror image (itself for centre joints)."""
        out = list(range(self.num_joints))
        for a, b in zip(self.left, self.right):
            out[a], out[b] = b, a
        return out


def chiral_layout(skeletons: list[Skeleton]) -> ChiralLayout:
    """Left/right/centre sets from every head's flip pairs (an unpaired point is centre)."""
    left, right, centre = [], [], []
    offset = 0
    for sk in skeletons:
        paired = set()
        for a, b in sk.flip_pairs:
            if side_of(sk.keypoints[b]) == "left" and side_of(sk.keypoints[a]) != "left":
                a, b = b, a  # keep the left-named point in the left block when the names say so
            left.append(offset + a)
            right.append(offset + b)
            paired.update((a, b))
        centre.extend(offset + k for k in range(sk.num_keypoints) if k not in paired)
        offset += sk.num_keypoints
    return ChiralLayout(tuple(left), tuple(right), tuple(centre))


def default_latents(num_joints: int) -> int:
    """48 latents (the paper's) for large skeleton sets, about half the joints for small ones."""
    return min(48, max(2, num_joints // 2))


def split_latents(latents: int, centre_latents: int | None, layout: ChiralLayout) -> tuple[int, int]:
    """(sided pairs, centre latents) for L latents; by default about one sixth are centre points (48 = 2·20 + 8)."""
    if not layout.left:
        centre_latents = latents if centre_latents is None else centre_latents
    elif centre_latents is None:
        centre_latents = latents // 6 + (latents - latents // 6) % 2
    if not 1 <= latents < layout.num_joints:
        raise PosebhError(f"--latents: must be between 1 and {layout.num_joints - 1} (fewer than the "
                          f"{layout.num_joints} joints of the heads), got {latents}")
    if not 0 <= centre_latents <= latents or (latents - centre_latents) % 2:
        raise PosebhError(f"--centre-latents: {centre_latents} of {latents} latents leaves an odd or negative number "
                          f"for the left/right pairs; choose L - C even and 0 <= C <= L")
    if not layout.left and centre_latents != latents:
        raise PosebhError("--centre-latents: the heads have no left/right pairs, so every latent must be centre")
    return (latents - centre_latents) // 2, centre_latents


def _tied(a: Tensor, b: Tensor, c: Tensor, d: Tensor, e: Tensor) -> Tensor:
    """[[A, B, C], [B, A, C], [D, D, E]]."""
    return torch.cat([torch.cat([a, b, c], 1), torch.cat([b, a, c], 1), torch.cat([d, d, e], 1)], 0)


class ACAE(nn.Module):
    """Chirality-tied affine-combining autoencoder over the joints of `layout` with `pairs`·2 + `centre` latents."""

    def __init__(self, layout: ChiralLayout, pairs: int, centre: int, seed: int = 0):
        super().__init__()
        self.layout = layout
        self.pairs, self.centre = pairs, centre
        n_side, n_centre = len(layout.left), len(layout.centre)
        generator = torch.Generator().manual_seed(seed)

        def raw(rows: int, cols: int) -> nn.Parameter:  # U(-0.1, 1): per-output sums start positive
            return nn.Parameter(torch.rand(rows, cols, generator=generator) * 1.1 - 0.1)

        # Encoder blocks map joints [n_side | n_side | n_centre] to latents [pairs | pairs | centre].
        self.enc = nn.ParameterList([raw(pairs, n_side), raw(pairs, n_side), raw(pairs, n_centre),
                                     raw(centre, n_side), raw(centre, n_centre)])
        # Decoder blocks map latents back to joints.
        self.dec = nn.ParameterList([raw(n_side, pairs), raw(n_side, pairs), raw(n_side, centre),
                                     raw(n_centre, pairs), raw(n_centre, centre)])
        self.register_buffer("order", torch.tensor(layout.order, dtype=torch.long), persistent=False)

    @property
    def num_latents(self) -> int:
        return 2 * self.pairs + self.centre

    @property
    def latent_sides(self) -> list[str]:
        return ["left"] * self.pairs + ["right"] * self.pairs + ["center"] * self.centre

    @staticmethod
    def _affine(matrix: Tensor) -> Tensor:
        return matrix / matrix.sum(dim=1, keepdim=True)

    def encoder(self) -> Tensor:
        """W_enc [L, J] in global joint order; each row sums to one."""
        blocks = self._affine(_tied(*self.enc))
        out = blocks.new_zeros(self.num_latents, self.layout.num_joints)
        return out.index_copy(1, self.order, blocks)

    def decoder(self) -> Tensor:
        """W_dec [J, L] in global joint order; each row sums to one."""
        blocks = self._affine(_tied(*self.dec))
        out = blocks.new_zeros(self.layout.num_joints, self.num_latents)
        return out.index_copy(0, self.order, blocks)

    def forward(self, poses: Tensor) -> Tensor:
        """Reconstruct poses [N, J, 2]."""
        return self.decoder() @ (self.encoder() @ poses)


# ------------------------------------------------------------------ fitting
def lr_at(step: int, steps: int, base: float = 3e-2) -> float:
    """Step decay ×0.1 at half and at four fifths of the steps (the released schedule's 3e-2 → 3e-3 → 3e-4)."""
    return base * (1.0 if step < steps // 2 else 0.1 if step < steps * 4 // 5 else 0.01)


def fit_acae(poses: Tensor, layout: ChiralLayout, pairs: int, centre: int, lam: float = 0.6, steps: int = 2000,
             batch_size: int = 1024, seed: int = 0, progress: bool = True) -> ACAE:
    """Fit on poses [N, J, 2]: mean L1 reconstruction + lam·(mean|W_enc| + mean|W_dec|), Adam with step decay."""
    acae = ACAE(layout, pairs, centre, seed)
    optimizer = torch.optim.Adam(acae.parameters(), lr=lr_at(0, steps))
    generator = torch.Generator().manual_seed(seed)
    poses = poses.float()
    for step in track(range(steps), description="fit ACAE", disable=not progress, transient=True):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps)
        batch = poses
        if len(poses) > batch_size:
            batch = poses[torch.randint(len(poses), (batch_size,), generator=generator)]
        encoder, decoder = acae.encoder(), acae.decoder()
        reconstruction = decoder @ (encoder @ batch)
        loss = (reconstruction - batch).abs().mean() + lam * (encoder.abs().mean() + decoder.abs().mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return acae.eval()


# ------------------------------------------------------------------ the saved file
@dataclass
class ACAEFile:
    """A fitted, frozen ACAE: effective matrices plus the heads it was fitted on (in joint order)."""

    encoder: Tensor  # [L, J]
    decoder: Tensor  # [J, L]
    heads: list[dict]  # [{name, skeleton, keypoints}], heads concatenated in this order give the J joints
    latent_sides: list[str]
    meta: dict
    source: str = "<acae>"

    @property
    def reconstruction(self) -> Tensor:
        """R = W_dec W_enc [J, J]."""
        return self.decoder @ self.encoder

    def head_indices(self, model) -> list[int]:
        """The model's head index of every ACAE head; a PosebhError when a head is missing or differs."""
        indices = []
        for i, head in enumerate(self.heads):
            if head["name"] not in model.datasets:
                raise input_error(self.source, f"the ACAE was fitted on head '{head['name']}' but the model's heads "
                                  f"are {', '.join(model.datasets)}", record=f"heads[{i}]", field="name")
            d = model.datasets.index(head["name"])
            keypoints = list(model.skeletons[d].keypoints)
            if keypoints != list(head["keypoints"]):
                raise input_error(self.source, f"head '{head['name']}' has {len(keypoints)} keypoints in the model but "
                                  f"{len(head['keypoints'])} (or another order) in the ACAE; refit with fit-acae",
                                  record=f"heads[{i}]", field="keypoints")
            indices.append(d)
        return indices


def save_acae(acae: ACAE, out_dir: Path, heads: list[dict], extra: dict) -> None:
    with torch.no_grad():
        tensors = {"encoder": acae.encoder().contiguous(), "decoder": acae.decoder().contiguous()}
    save_file(tensors, str(out_dir / WEIGHTS_NAME))
    layout = acae.layout
    meta = {"format_version": 1, "heads": heads, "num_joints": layout.num_joints, "latents": acae.num_latents,
            "pairs": acae.pairs, "centre_latents": acae.centre, "latent_sides": acae.latent_sides,
            "left": list(layout.left), "right": list(layout.right), "centre": list(layout.centre), **extra}
    (out_dir / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")


def load_acae(path: str | Path) -> ACAEFile:
    """Read a fit-acae folder (or its acae.json / acae.safetensors) and check that the pieces agree."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta_path, weights_path = folder / META_NAME, folder / WEIGHTS_NAME
    for needed in (meta_path, weights_path):
        if not needed.is_file():
            raise input_error(needed, "ACAE file not found (write one with posebh fit-acae)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise input_error(meta_path, f"not valid JSON ({exc})") from None
    for key in ("heads", "num_joints", "latents", "latent_sides"):
        if key not in meta:
            raise input_error(meta_path, "missing", field=key)
    tensors = load_file(str(weights_path))
    encoder, decoder = tensors.get("encoder"), tensors.get("decoder")
    joints = sum(len(h.get("keypoints", [])) for h in meta["heads"])
    shape = (meta["latents"], meta["num_joints"])
    if encoder is None or decoder is None or tuple(encoder.shape) != shape or tuple(decoder.shape) != shape[::-1]:
        raise input_error(weights_path, f"expected encoder {list(shape)} and decoder {list(shape[::-1])} as "
                          f"{META_NAME} says", field="encoder")
    if joints != meta["num_joints"]:
        raise input_error(meta_path, f"the heads list {joints} keypoints but num_joints is {meta['num_joints']}",
                          field="num_joints")
    return ACAEFile(encoder.float(), decoder.float(), meta["heads"], list(meta["latent_sides"]), meta, str(meta_path))


def latent_points(acae: ACAEFile, coords: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """Latent points [..., L, 2] of joints [..., J, 2] (all heads in the ACAE's head order)."""
    if isinstance(coords, np.ndarray):
        return (acae.encoder.numpy() @ coords.astype(np.float32)).astype(np.float32)
    return acae.encoder.to(coords) @ coords


def prediction_latents(acae: ACAEFile, per_head: dict[str, np.ndarray]) -> np.ndarray:
    """Latents [L, 2] of one prediction given as {head name: keypoints [K, >=2]} (in any pixel frame)."""
    missing = [h["name"] for h in acae.heads if h["name"] not in per_head]
    if missing:
        raise PosebhError(f"{acae.source}: the prediction has no keypoints of head '{missing[0]}'")
    joints = np.concatenate([np.asarray(per_head[h["name"]], dtype=np.float32)[:, :2] for h in acae.heads])
    return latent_points(acae, joints)


def draw_latents(image: np.ndarray, latents: np.ndarray, sides: list[str], joints: np.ndarray | None = None,
                 zoom: int = 3) -> np.ndarray:
    """An RGB copy of `image` enlarged `zoom` times with joints (small grey dots) and latents (coloured by side)."""
    out = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
    for x, y in ([] if joints is None else joints[:, :2]):
        cv2.circle(out, (int(round(x * zoom)), int(round(y * zoom))), 2, (200, 200, 200), -1, cv2.LINE_AA)
    for (x, y), side in zip(latents[:, :2], sides):
        cv2.circle(out, (int(round(x * zoom)), int(round(y * zoom))), 4, SIDE_COLORS[side], -1, cv2.LINE_AA)
        cv2.circle(out, (int(round(x * zoom)), int(round(y * zoom))), 4, (0, 0, 0), 1, cv2.LINE_AA)
    return out


# ------------------------------------------------------------------ pseudo-GT export
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

    Each head runs with its own expert (one pass per head when the backbone has experts), with flip test.
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
                     batch_size: int = 32, device: str | torch.device = "cpu", progress: bool = True) -> PseudoGT:
    """Predict every listed head on GT-box crops of the recipe datasets whose head is listed (no augmentation)."""
    from posebh_cli.data.codecs import make_codec
    from posebh_cli.data.dataset import normalise
    from posebh_cli.data.prepared import open_prepared
    from posebh_cli.data.topdown import affine_points, box_to_center_scale, get_warp_matrix, warp_image

    h, w = recipe.model.img_size
    specs = {s.name: s for s in recipe.datasets}
    head_indices = [model.datasets.index(n) for n in head_names]
    codecs = [make_codec(specs[n].codec, input_size=(w, h), heatmap_size=(w // 4, h // 4), sigma=specs[n].sigma)
              for n in head_names]
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
            xy, score = head_coordinates(model, images, head_indices, codecs)
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


def fit_acae_command(checkpoint: str | Path, recipe_path: str | Path, out: str | Path, latents: int | None = None,
                     centre_latents: int | None = None, lam: float = 0.6, steps: int = 2000, max_instances: int = 2000,
                     min_score: float = 0.2, heads: list[str] | None = None, use_gt: bool = False,
                     batch_size: int = 32, device: str | None = None, seed: int = 0) -> dict:
    """`posebh fit-acae`: export pseudo-GT with every head, fit the ACAE, write ACAE_DIR atomically."""
    from posebh_cli.methods import load_recipe
    from posebh_cli.models.checkpoint import load_model

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise PosebhError(f"{out}: already exists and is not empty; choose another --out")
    if lam < 0 or steps < 1 or max_instances < 1:
        raise PosebhError("--lambda must be >= 0, --steps and --max-instances >= 1")
    recipe = load_recipe(recipe_path)
    model = load_model(checkpoint)
    heads = list(heads) if heads else default_heads(model, recipe)
    _check_heads(model, recipe, heads)
    skeletons = [model.skeletons[model.datasets.index(n)] for n in heads]
    layout = chiral_layout(skeletons)
    latents = default_latents(layout.num_joints) if latents is None else latents
    pairs, centre = split_latents(latents, centre_latents, layout)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    pseudo = export_pseudo_gt(model, recipe, heads, max_instances, min_score, use_gt, batch_size, device)
    poses = torch.from_numpy(pseudo.poses)
    acae = fit_acae(poses, layout, pairs, centre, lam=lam, steps=steps, seed=seed)
    h, w = recipe.model.img_size
    sizes = [sk.num_keypoints for sk in skeletons]
    errors = reconstruction_errors(acae, poses, sizes, heads, (w, h))

    head_meta = [{"name": n, "skeleton": sk.name, "keypoints": list(sk.keypoints)} for n, sk in zip(heads, skeletons)]
    extra = {"lambda": lam, "steps": steps, "instances": int(len(poses)), "min_score": min_score, "use_gt": use_gt,
             "input_size": [w, h], "checkpoint": str(checkpoint), "recipe": str(recipe_path),
             "reconstruction_error_px": errors}
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_acae(acae, tmp, head_meta, extra)
        np.savez_compressed(tmp / "pseudo_gt.npz", poses=pseudo.poses, head_scores=pseudo.head_scores,
                            dataset=pseudo.dataset, ann_ids=pseudo.ann_ids)
        first = pseudo.poses[0] * np.array([w, h], dtype=np.float32)
        with torch.no_grad():
            lat = (acae.encoder() @ torch.from_numpy(first)).numpy()
        overlay = draw_latents(pseudo.sample_crop, lat, acae.latent_sides, joints=first)
        cv2.imwrite(str(tmp / "latents.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"out": str(out), "heads": heads, "instances": int(len(poses)), "latents": latents, "pairs": pairs,
            "centre_latents": centre, "reconstruction_error_px": errors}


__all__ = ["ChiralLayout", "chiral_layout", "ACAE", "fit_acae", "ACAEFile", "load_acae", "save_acae",
           "latent_points", "prediction_latents", "draw_latents", "export_pseudo_gt", "fit_acae_command",
           "split_latents", "default_latents", "head_coordinates"]
