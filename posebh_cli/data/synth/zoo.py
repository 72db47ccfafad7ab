"""The synthetic skeleton zoo (`posebh synth`): procedurally generated images of humans, quadrupeds and hands,
written as every native dataset format that `posebh prepare-data` reads.

Every image is seeded from (seed, dataset, split, clip, frame), so the output is byte-identical for the same
seed and flags and images can be made in any order or process. A clip is a video (APT-36K), a sequence (3DPW)
or a camera recording (InterHand2.6M): its frames show the same figures moving a little. Each dataset folder
also gets `.zoo_groundtruth.json` with, for every figure, the keypoints of ALL skeletons of its body plan, so a
model trained on one skeleton can be scored on another.
"""
from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from posebh_cli.data.synth import render
from posebh_cli.data.synth.rig import (SPECIES, Camera, Figure, Rig, build_figure, hand_rig, human_rig,
                                       placement, quadruped_rig, rotation, sample_angles)
from posebh_cli.data.synth.spec import DATASETS, DatasetSpec, seeded_rng, split_sizes
from posebh_cli.data.synth.writers import WRITERS, image_path
from posebh_cli.errors import PosebhError
from posebh_cli.files import atomic_folder


# ----------------------------------------------------------------------------- figures of each body plan
@lru_cache(maxsize=None)
def _human() -> Rig:
    return human_rig()


@lru_cache(maxsize=None)
def _quadruped(species_index: int) -> Rig:
    return quadruped_rig(SPECIES[species_index])


@lru_cache(maxsize=None)
def _hand(side: str) -> Rig:
    return hand_rig(side)


@dataclass
class Actor:
    """The frame-independent description of one figure in a clip; `at(frame)` gives its pose in that frame."""

    rig: Rig
    size: float
    proportions: np.ndarray
    angles: np.ndarray
    amplitude: np.ndarray
    phase: np.ndarray
    orientation: np.ndarray
    spin: float
    extent: float
    center: np.ndarray
    velocity: np.ndarray
    part_colors: dict
    extras: dict

    def angles_at(self, frame: int) -> np.ndarray:
        lo, hi = self.rig.limits[..., 0], self.rig.limits[..., 1]
        return np.clip(self.angles + self.amplitude * np.sin(self.phase + 0.35 * frame), lo, hi)


def _colors_human(rng) -> dict:
    skin = render._bgr(rng.uniform(5, 20), rng.uniform(60, 170), rng.uniform(90, 240))
    shirt, pants, shoes = render.random_color(rng), render.random_color(rng), render.random_color(rng) * 0.5
    sleeves = skin if rng.random() < 0.3 else shirt
    colors = {"default": shirt, "torso": shirt, "upper_arm": shirt, "forearm": sleeves, "thigh": pants,
              "shin": pants if rng.random() < 0.7 else skin, "foot": shoes, "head": skin, "neck": skin, "palm": skin}
    for k in range(5):
        colors[f"finger{k}"] = skin * (0.9 + 0.05 * k)   # a slight per-finger tint tells thumb from pinky
    return colors


def _colors_animal(rng, species) -> dict:
    fur = np.asarray(species.colors[int(rng.integers(len(species.colors)))], np.float32)
    fur = np.clip(fur * rng.uniform(0.8, 1.2), 0, 255)
    return {"default": fur, "body": fur, "neck": fur, "head": fur * 0.95, "snout": fur * 0.8,
            "upper_leg": fur * 0.9, "lower_leg": fur * 0.85, "paw": fur * 0.6, "tail": fur * 0.75}


def _proportions(rig: Rig, rng, spread: float) -> np.ndarray:
    """Per-bone length factors, equal on both sides of the body."""
    base = {}
    out = np.ones(len(rig.bones))
    for i, b in enumerate(rig.bones):
        key = b.name.replace("left_", "").replace("right_", "")
        if key not in base:
            base[key] = float(np.clip(1 + rng.normal(0, spread), 1 - 2 * spread, 1 + 2 * spread))
        out[i] = base[key]
    return out


def _placement(rng, width: int, height: int, truncate: float) -> np.ndarray:
    if rng.random() < truncate:   # partly outside the image
        x = rng.choice([rng.uniform(-0.1, 0.1), rng.uniform(0.9, 1.1)]) * width
        return np.array([x, rng.uniform(0.2, 0.8) * height])
    return np.array([rng.uniform(0.12, 0.88) * width, rng.uniform(0.25, 0.75) * height])


def sample_actor(body_plan: str, rng: np.random.Generator, width: int, height: int, species_index: int | None = None,
                 side: str | None = None, extent: float | None = None, center: np.ndarray | None = None) -> Actor:
    """A random figure of one body plan, its motion and its colours. The keyword arguments fix what a scene
    decides for all its figures (species, hand side, size and place of interacting hands)."""
    extras: dict = {}
    if body_plan == "human":
        rig = _human()
        size, spread = rng.uniform(0.85, 1.12), rng.uniform(0.5, 1.2)
        orientation = np.array([rng.normal(0, 6), rng.uniform(-180, 180), rng.normal(0, 6)])
        if rng.random() < 0.08:
            orientation[2] = rng.uniform(-90, 90)        # lying, falling, handstands
        box_extent = rng.uniform(0.35, 1.05) * height
        colors = _colors_human(rng)
    elif body_plan == "quadruped":
        species_index = int(rng.integers(len(SPECIES))) if species_index is None else species_index
        rig = _quadruped(species_index)
        extras["species"] = SPECIES[species_index]
        size, spread = rng.uniform(0.85, 1.15), rng.uniform(0.5, 1.2)
        yaw = rng.choice([90.0, -90.0]) + rng.normal(0, 35)
        orientation = np.array([rng.normal(0, 5), yaw, rng.normal(0, 4)])
        box_extent = rng.uniform(0.3, 0.8) * width
        colors = _colors_animal(rng, SPECIES[species_index])
    else:
        side = side or ("right" if rng.random() < 0.5 else "left")
        rig = _hand(side)
        extras["side"] = side
        size, spread = rng.uniform(0.9, 1.1), rng.uniform(0.6, 1.3)
        orientation = np.array([rng.uniform(-70, 70), rng.uniform(-180, 180), rng.uniform(-180, 180)])
        box_extent = rng.uniform(0.5, 0.9) * min(width, height) if extent is None else extent
        colors = _colors_human(rng)
    angles = sample_angles(rig, rng, spread)
    amplitude = (rig.limits[..., 1] - rig.limits[..., 0]) * rng.uniform(0.0, 0.08)
    if center is None:
        center = _placement(rng, width, height, truncate=0.05 if body_plan == "hand" else 0.15)
    return Actor(rig, float(size), _proportions(rig, rng, 0.05), angles, amplitude, rng.uniform(0, 2 * np.pi, angles.shape),
                 orientation, float(rng.normal(0, 3)), float(box_extent), np.asarray(center, float),
                 rng.normal(0, 0.004, 2) * np.array([width, height]), colors, extras)


def actor_figure(actor: Actor, camera: Camera, frame: int, rng: np.random.Generator) -> Figure:
    """The actor posed and placed in one frame."""
    angles = actor.angles_at(frame)
    orientation = actor.orientation + np.array([0.0, actor.spin * frame, 0.0])
    center = tuple(actor.center + actor.velocity * frame)
    fig = build_figure(actor.rig, angles, actor.size, actor.proportions, orientation,
                       lambda points: placement(points, camera, actor.extent, center))
    fig.extras = dict(actor.extras, size=actor.size)
    render.figure_palette(fig, rng, actor.part_colors)
    return fig


# ----------------------------------------------------------------------------- one image
@dataclass(frozen=True)
class ImageJob:
    dataset: str
    split: str
    index: int
    seed: int
    width: int
    height: int
    path: str          # where to write the JPEG
    clip_length: int | None = None   # overrides the dataset's frames per clip (longer videos for tracking)


def job_spec(job: ImageJob) -> DatasetSpec:
    """The job's dataset spec, with its clip length overridden where the job asks."""
    spec = DATASETS[job.dataset]
    return replace(spec, clip_length=job.clip_length) if job.clip_length else spec


def _camera(rng, width: int, height: int) -> Camera:
    f = max(width, height) * rng.uniform(1.5, 3.0)   # normal to short tele lenses: mild perspective
    return Camera((float(f), float(f)), (width / 2 + float(rng.normal(0, 2)), height / 2 + float(rng.normal(0, 2))))


def _actors(spec: DatasetSpec, rng, width: int, height: int) -> tuple[list[Actor], dict]:
    """The figures of one clip and clip-level facts (the InterHand hand type)."""
    info: dict = {}
    count = 1 + int(rng.choice(spec.max_figures, p=_count_weights(spec.max_figures)))
    if spec.body_plan == "quadruped":
        species_index = int(rng.integers(len(SPECIES)))     # one species per image or video
        return [sample_actor("quadruped", rng, width, height, species_index=species_index) for _ in range(count)], info
    if spec.body_plan == "hand":
        hand_type = str(rng.choice(["right", "left", "interacting"]))
        info["hand_type"] = hand_type
        if hand_type != "interacting":
            return [sample_actor("hand", rng, width, height, side=hand_type)], info
        middle = np.array([rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height])
        gap = rng.uniform(0.12, 0.25) * width
        extent = rng.uniform(0.35, 0.55) * min(width, height)
        return [sample_actor("hand", rng, width, height, side=side, extent=extent,
                             center=middle + np.array([sign * gap, rng.normal(0, 0.05) * height]))
                for side, sign in (("right", -1), ("left", 1))], info
    return [sample_actor("human", rng, width, height) for _ in range(count)], info


def _count_weights(n: int) -> np.ndarray:
    w = np.array([0.5, 0.32, 0.18][:n])
    return w / w.sum()


def make_image(job: ImageJob) -> dict:
    """Render one image, write its JPEG and return its record (figures with keypoints of every skeleton).

    The figures keep their order through a clip: the k-th figure of every frame is the same actor.
    """
    spec = job_spec(job)
    clip, frame = divmod(job.index, spec.clip_length)
    scene = seeded_rng(job.seed, job.dataset, job.split, clip)
    camera = _camera(scene, job.width, job.height)
    background, style = render.render_background(scene, job.width, job.height)
    actors, info = _actors(spec, scene, job.width, job.height)
    frame_rng = seeded_rng(job.seed, job.dataset, job.split, clip, frame, "frame")
    figures = [actor_figure(a, camera, frame, seeded_rng(job.seed, job.dataset, job.split, clip, k, "colors"))
               for k, a in enumerate(actors)]
    img = background + render.noise(frame_rng, background.shape, 2.0)
    labels = render.draw_figures(img, figures, camera)
    occluders = render.draw_occluders(img, labels, seeded_rng(job.seed, job.dataset, job.split, clip, "occluders"),
                                      render.figure_boxes(figures, camera, labels))
    keypoints = render.keypoints_with_visibility(figures, camera, occluders, job.width, job.height)
    boxes = render.figure_boxes(figures, camera, labels)
    areas = render.visible_area(labels, len(figures))
    _, jpeg = cv2.imencode(".jpg", np.clip(img, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    os.makedirs(os.path.dirname(job.path), exist_ok=True)
    with open(job.path, "wb") as fh:
        fh.write(jpeg.tobytes())
    records = []
    for fig, kps, box, area in zip(figures, keypoints, boxes, areas):
        # camera_xyz: the dataset's own keypoints in camera coordinates (mm), for InterHand and 3DPW
        record = {"bbox": box, "area": area, "keypoints": kps, "camera_xyz": fig.points[fig.rig.skeleton_index[spec.skeleton]]}
        if "species" in fig.extras:
            record["species"] = fig.extras["species"]
        if "side" in fig.extras:
            record["side"] = fig.extras["side"]
        records.append(record)
    return {"index": job.index, "clip": clip, "frame": frame, "width": job.width, "height": job.height,
            "background": style, "camera": camera, "figures": records, "info": info,
            "extrinsics": _extrinsics(job) if spec.body_plan == "hand" else None}


def _extrinsics(job: ImageJob) -> tuple[np.ndarray, np.ndarray]:
    """A world pose for the clip's camera (InterHand stores hands in world coordinates): rotation R, position."""
    rng = seeded_rng(job.seed, job.dataset, job.split, job.index // job_spec(job).clip_length, "extrinsics")
    R = rotation(rng.uniform(-180, 180, 3))
    return R, rng.uniform(-800, 800, 3)


# ----------------------------------------------------------------------------- the zoo
def _image_names(spec: DatasetSpec, split: str, count: int, seed: int) -> list[str]:
    """Image paths relative to the dataset folder, in native layout."""
    return [image_path(spec, split, i, seed) for i in range(count)]


def synth_zoo(out: str | Path, seed: int = 0, sizes: dict[str, int] | None = None, image_size: tuple[int, int] = (256, 192),
              datasets: list[str] | None = None, workers: int | None = None, scale: float = 1.0,
              progress: bool = True, clip_length: int | None = None) -> dict[str, dict[str, int]]:
    """Write the synthetic datasets under `out/<dataset>/` in their native formats.

    `sizes` gives training images per dataset (defaults scaled by `scale`); val/test get 15% of that.
    `clip_length` sets the frames per clip of the video datasets (APT-36K, InterHand2.6M, 3DPW) instead of
    their spec's (e.g. long clips to measure tracking); None keeps the spec, and the files, as they are.
    Each dataset folder is written to a temporary sibling and renamed at the end. Returns images per split.
    """
    out = Path(out)
    names = list(datasets) if datasets else list(DATASETS)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise PosebhError(f"unknown dataset(s) {unknown}; choose from {', '.join(DATASETS)}")
    sizes = dict(sizes or {})
    bad = [k for k in sizes if k not in DATASETS]
    if bad:
        raise PosebhError(f"--sizes: unknown dataset(s) {bad}; choose from {', '.join(DATASETS)}")
    for k, v in sizes.items():
        if not isinstance(v, int) or v < 1:
            raise PosebhError(f"--sizes: {k} must be a positive number of images, got {v!r}")
    width, height = image_size
    if not (32 <= width <= 4096 and 32 <= height <= 4096):
        raise PosebhError(f"--image-size: expected width and height between 32 and 4096, got {width}x{height}")
    if scale <= 0:
        raise PosebhError(f"--scale: must be positive, got {scale}")
    if clip_length is not None and (isinstance(clip_length, bool) or not isinstance(clip_length, int)
                                    or clip_length < 1):
        raise PosebhError(f"--clip-length: expected a whole number of frames >= 1, got {clip_length!r}")
    existing = [n for n in names if (out / n).exists()]
    if existing:
        raise PosebhError(f"{out}: dataset folder(s) {existing} already exist; remove them or choose another --out")
    out.mkdir(parents=True, exist_ok=True)

    plan = {}
    specs = {name: DATASETS[name] for name in names}
    if clip_length is not None:  # only the video datasets have clips
        specs = {name: replace(spec, clip_length=clip_length) if spec.clip_length > 1 else spec
                 for name, spec in specs.items()}
    for name in names:
        spec = specs[name]
        train = sizes.get(name, max(1, round(spec.default_size * scale)))
        plan[name] = split_sizes(spec, train)
    total = sum(sum(s.values()) for s in plan.values())
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    summary = {}
    bar = tqdm(total=total, desc="synth", unit="img", disable=not progress)
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        for name in names:
            spec = specs[name]
            override = spec.clip_length if spec.clip_length != DATASETS[name].clip_length else None
            with atomic_folder(out / name) as tmp:
                records = {}
                for split, count in plan[name].items():
                    files = _image_names(spec, split, count, seed)
                    jobs = [ImageJob(name, split, i, seed, width, height, str(tmp / files[i]), override)
                            for i in range(count)]
                    results = pool.imap(make_image, jobs, chunksize=4) if pool else map(make_image, jobs)
                    records[split] = []
                    for files_i, rec in zip(files, results):
                        rec["path"] = files_i
                        records[split].append(rec)
                        bar.update(1)
                WRITERS[name](tmp, spec, records, seed)
            summary[name] = {split: len(recs) for split, recs in records.items()}
    finally:
        bar.close()
        if pool:
            pool.close()
            pool.join()
    return summary
