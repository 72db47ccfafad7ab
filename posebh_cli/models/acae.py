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
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.progress import track
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import read_json
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
    meta = read_json(meta_path, "ACAE file")
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


__all__ = ["ChiralLayout", "chiral_layout", "ACAE", "fit_acae", "ACAEFile", "load_acae", "save_acae",
           "latent_points", "prediction_latents", "draw_latents", "split_latents", "default_latents"]
