"""Rigs of the synthetic skeleton zoo: 3D kinematic trees, named points, random poses, camera placement.

Three body plans share one representation. A `Rig` is a list of bones (parents first) in a body frame with
X = the figure's left, Y = up, Z = forward, in millimetres. Every keypoint of every built-in skeleton of the
body plan is a named point fixed to one bone, looked up by the skeleton's own keypoint names; a few names get
a skeleton-specific point ("aic:neck" beside "neck"), the small systematic disagreements real datasets have.
Keypoint names and order come only from `posebh_cli.skeletons`.

A `Figure` is a posed, scaled and placed rig in camera coordinates (x right, y down, z away from the camera),
with its drawable capsules; `project` turns camera points into pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from posebh_cli.errors import PosebhError
from posebh_cli.skeletons import list_skeletons, load_skeleton

Limits = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
NO_MOTION: Limits = ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0))


@dataclass(frozen=True)
class Bone:
    """One node of the tree. `offset` is its rest position in the parent's frame; its own rotation (angles about
    X, Y, Z within `limits`, degrees) turns its children. `radius` > 0 draws a capsule from the parent to it;
    `ball` > 0 draws a sphere at it (heads)."""

    name: str
    parent: str | None
    offset: tuple[float, float, float]
    limits: Limits = NO_MOTION
    radius: float = 0.0
    part: str = "torso"
    ball: float = 0.0


@dataclass
class Rig:
    body_plan: str
    bones: list[Bone]
    points: dict[str, tuple[str, tuple[float, float, float]]]   # rig point -> (bone, offset in the bone frame)
    skeletons: list[str] = field(default_factory=list)            # built-in skeletons of this body plan
    skeleton_points: dict[str, list[str]] = field(default_factory=dict)
    eps: float = 10.0                                            # depth tolerance of the occlusion test (mm)

    def __post_init__(self) -> None:
        self.index = {b.name: i for i, b in enumerate(self.bones)}
        self.parent_index = np.array([self.index[b.parent] if b.parent else -1 for b in self.bones])
        self.offsets = np.array([b.offset for b in self.bones], dtype=np.float64)
        self.limits = np.array([b.limits for b in self.bones], dtype=np.float64)    # [B, 3, 2]
        self.point_names = list(self.points)
        self.point_bone = np.array([self.index[self.points[p][0]] for p in self.point_names])
        self.point_offset = np.array([self.points[p][1] for p in self.point_names], dtype=np.float64)
        # A point at a joint centre is tested for occlusion from the joint's front surface (the thickest capsule
        # meeting there); a point on the skin of a ball (eyes, face, head top) already lies on a surface.
        touching = np.zeros(len(self.bones))
        for i, b in enumerate(self.bones):
            if b.radius > 0:
                touching[i] = max(touching[i], b.radius)
                touching[self.parent_index[i]] = max(touching[self.parent_index[i]], b.radius)
        ball = np.array([self.bones[b].ball for b in self.point_bone])
        self.on_surface = (ball > 0) & (np.linalg.norm(self.point_offset, axis=1) >= 0.9 * ball)
        self.point_surface = np.where(self.on_surface, 0.0, touching[self.point_bone])
        if not self.skeletons:
            self.skeletons = [n for n in list_skeletons() if load_skeleton(n).body_plan == self.body_plan]
        position = {p: i for i, p in enumerate(self.point_names)}
        self.skeleton_index = {}
        for name in self.skeletons:
            keys = []
            for kp in load_skeleton(name).keypoints:
                key = f"{name}:{kp}" if f"{name}:{kp}" in position else kp
                if key not in position:
                    raise PosebhError(f"synthetic {self.body_plan} rig has no point for keypoint '{kp}' of skeleton '{name}'")
                keys.append(key)
            self.skeleton_points[name] = keys
            self.skeleton_index[name] = np.array([position[k] for k in keys])
        self.labelled = np.unique(np.concatenate(list(self.skeleton_index.values())))   # points some skeleton uses


# ----------------------------------------------------------------------------- geometry helpers
def rotation(angles_deg: np.ndarray) -> np.ndarray:
    """Rz @ Ry @ Rx for angles (..., 3) in degrees."""
    ax, ay, az = np.deg2rad(np.moveaxis(np.asarray(angles_deg, dtype=np.float64), -1, 0))
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    one, zero = np.ones_like(ax), np.zeros_like(ax)
    rx = np.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(*ax.shape, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*ax.shape, 3, 3)
    rz = np.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(*ax.shape, 3, 3)
    return rz @ ry @ rx


def _mirror_name(name: str) -> str:
    if name.startswith("left_"):
        return "right_" + name[5:]
    if ":left_" in name:
        return name.replace(":left_", ":right_")
    return name


def _mirror_bone(b: Bone, rename: bool = True) -> Bone:
    """The same bone on the other side: x negated; rotations about Y and Z change sign."""
    (xl, yl, zl) = b.limits
    return Bone(_mirror_name(b.name) if rename else b.name,
                (_mirror_name(b.parent) if rename else b.parent) if b.parent else None,
                (-b.offset[0], b.offset[1], b.offset[2]), (xl, (-yl[1], -yl[0]), (-zl[1], -zl[0])),
                b.radius, b.part, b.ball)


def _with_right_side(bones: list[Bone]) -> list[Bone]:
    out = []
    for b in bones:
        out.append(b)
        if b.name.startswith("left_"):
            out.append(_mirror_bone(b))
    return out


def _with_right_points(points: dict) -> dict:
    out = dict(points)
    for name, (bone, (x, y, z)) in points.items():
        if "left_" in name:
            out[_mirror_name(name)] = (_mirror_name(bone), (-x, y, z))
    return out


def _bone_points(bones: list[Bone]) -> dict:
    return {b.name: (b.name, (0.0, 0.0, 0.0)) for b in bones}


# ----------------------------------------------------------------------------- hand (shared by two body plans)
FINGERS = ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")
# name: (knuckle offset from the wrist (x, y, z), three phalanx lengths, radius); left hand, palm facing -X.
_FINGER_SHAPE = {
    "thumb": ((-10.0, -28.0, 18.0), (38.0, 30.0, 25.0), 10.0),
    "forefinger": ((0.0, -92.0, 28.0), (42.0, 25.0, 20.0), 8.5),
    "middle_finger": ((0.0, -95.0, 8.0), (46.0, 28.0, 22.0), 8.5),
    "ring_finger": ((0.0, -90.0, -12.0), (43.0, 27.0, 21.0), 8.0),
    "pinky_finger": ((0.0, -82.0, -30.0), (34.0, 20.0, 18.0), 7.0),
}


def hand_bones(prefix: str, wrist: str) -> list[Bone]:
    """A left hand hanging from bone `wrist`: points `<prefix><finger>1..4`, 1 at the knuckle, 4 at the tip.
    Fingers curl towards the palm (-X) by rotating about Z."""
    bones = []
    for k, finger in enumerate(FINGERS):
        base, lengths, radius = _FINGER_SHAPE[finger]
        part = f"finger{k}"
        if finger == "thumb":
            bones.append(Bone(f"{prefix}thumb1", wrist, base, ((-35, 10), (-20, 20), (-30, 15)), 13.0, "palm"))
            steps = [(-4.0, -0.75, 0.55), (0.0, -0.9, 0.35), (0.0, -0.95, 0.2)]
            limits = [((-10, 10), (-10, 10), (-50, 5)), ((-5, 5), (-5, 5), (-70, 5)), NO_MOTION]
        else:
            bones.append(Bone(f"{prefix}{finger}1", wrist, base, ((-10, 10), (-5, 5), (-85, 10)), 13.0, "palm"))
            steps = [(0.0, -1.0, 0.0)] * 3
            limits = [((-3, 3), (-3, 3), (-100, 0)), ((-3, 3), (-3, 3), (-80, 0)), NO_MOTION]
        for j in range(3):
            dx, dy, dz = steps[j]
            offset = (dx, dy * lengths[j], dz * lengths[j])
            bones.append(Bone(f"{prefix}{finger}{j + 2}", f"{prefix}{finger}{j + 1}", offset, limits[j],
                              radius * (1.0 - 0.08 * j), part))
    return bones


# ----------------------------------------------------------------------------- human
def human_rig() -> Rig:
    left = [
        Bone("pelvis", None, (0, 0, 0)),
        Bone("spine1", "pelvis", (0, 110, -10), ((-10, 35), (-25, 25), (-15, 15)), 115),
        Bone("spine2", "spine1", (0, 120, 0), ((-5, 15), (-15, 15), (-8, 8)), 130),
        Bone("spine3", "spine2", (0, 120, 5), ((-5, 15), (-15, 15), (-8, 8)), 140),
        Bone("neck", "spine3", (0, 150, -5), ((-25, 35), (-45, 45), (-20, 20)), 55, "neck"),
        Bone("head", "neck", (0, 70, 10), ((-30, 25), (-50, 50), (-20, 20)), 45, "neck"),
        Bone("skull", "head", (0, 90, 15), ball=100, part="head"),
        Bone("left_collar", "spine3", (65, 100, -5), ((-5, 5), (-15, 15), (-10, 20)), 60),
        Bone("left_shoulder", "left_collar", (110, -5, -5), ((-160, 50), (-70, 70), (-10, 120)), 55),
        Bone("left_elbow", "left_shoulder", (0, -280, 0), ((-145, 0), (-60, 60), (0, 0)), 45, "upper_arm"),
        Bone("left_wrist", "left_elbow", (0, -250, 0), ((-60, 60), (-30, 30), (-40, 40)), 37, "forearm"),
        *hand_bones("left_", "left_wrist"),
        Bone("left_hip", "pelvis", (95, -55, 0), ((-110, 30), (-35, 35), (-10, 50)), 85),
        Bone("left_knee", "left_hip", (0, -430, 10), ((0, 140), (-15, 15), (-5, 5)), 70, "thigh"),
        Bone("left_ankle", "left_knee", (0, -410, -15), ((-25, 45), (-20, 20), (-15, 15)), 52, "shin"),
        Bone("left_foot", "left_ankle", (5, -60, 120), NO_MOTION, 38, "foot"),
    ]
    bones = _with_right_side(left)
    points = _bone_points(bones)
    r = 100.0  # skull radius
    points.update({
        # coco family (coco, coco_wholebody, coco_mpii21 share these)
        "nose": ("skull", (0.0, -0.22 * r, 1.18 * r)),
        "left_eye": ("skull", (0.33 * r, 0.18 * r, 0.9 * r)),
        "left_ear": ("skull", (1.06 * r, 0.05 * r, 0.0)),
        "left_big_toe": ("left_ankle", (-25, -78, 170)),
        "left_small_toe": ("left_ankle", (32, -78, 140)),
        "left_heel": ("left_ankle", (0, -72, -48)),
        "left_hand_root": ("left_wrist", (0, -12, 0)),
        # mpii / coco_mpii21 head and trunk points
        "pelvis": ("pelvis", (0, -15, 0)),
        "thorax": ("neck", (0, -15, 8)),
        "upper_neck": ("head", (0, -5, 5)),
        "head_top": ("skull", (0, 1.04 * r, -0.05 * r)),   # extremities sit on the outline
        # smpl24 names not on a bone of the same name
        "jaw": ("skull", (0, -0.45 * r, 0.35 * r)),
        "left_thumb": ("left_wrist", (0, -75, 8)),   # SMPL's hand joint, named 'thumb' in this skeleton
        # systematic per-dataset offsets, as in real annotation protocols
        "aic:neck": ("neck", (0, 25, 10)),
        "aic:head_top": ("skull", (0, 1.02 * r, 0.1 * r)),
        "aic:left_hip": ("left_hip", (10, 18, 0)),
        "aic:left_shoulder": ("left_shoulder", (0, 12, 0)),
        "mpii:left_hip": ("left_hip", (-10, -8, 0)),
        "mpii:head_top": ("skull", (0, 1.04 * r, 0.05 * r)),
        "smpl24:pelvis": ("pelvis", (0, -40, 0)),
        "smpl24:left_hip": ("left_hip", (18, -45, 0)),
        "smpl24:left_shoulder": ("left_shoulder", (-15, -10, 0)),
        "smpl24:neck": ("neck", (0, 35, -5)),
    })
    for i, (x, y, z) in enumerate(face_template()):
        points[f"face_{i}"] = ("skull", (x * r, y * r, z * r))
    return Rig("human", bones, _with_right_points(points), eps=10.0)


def face_template() -> np.ndarray:
    """68 landmarks (300-W order) on the front of a unit sphere: x = the subject's left, y up, z forward.
    Landmark 0 and the first eye/brow are on the subject's right (-x), as seen on the image's left."""
    pts = []
    for i in range(17):                                    # jaw line, right ear to left ear through the chin
        a = np.pi * i / 16
        pts.append((-0.82 * np.cos(a), 0.12 - 0.92 * np.sin(a)))
    for i in range(5):                                     # right brow, outer to inner; then left brow
        pts.append((-0.62 + 0.12 * i, 0.4 + 0.04 * np.sin(np.pi * i / 4)))
    for i in range(5):
        pts.append((0.14 + 0.12 * i, 0.4 + 0.04 * np.sin(np.pi * (4 - i) / 4)))
    for i in range(4):                                     # nose bridge, top to tip
        pts.append((0.0, 0.24 - 0.14 * i))
    for i in range(5):                                     # nostrils, right to left
        pts.append((-0.18 + 0.09 * i, -0.3 + 0.03 * (1 - abs(i - 2) / 2)))
    right_eye = [(-0.5, 0.2), (-0.42, 0.26), (-0.3, 0.26), (-0.22, 0.2), (-0.3, 0.14), (-0.42, 0.14)]
    pts += right_eye
    for k in (3, 2, 1, 0, 5, 4):                           # left eye: inner corner first, mirror of the right
        pts.append((-right_eye[k][0], right_eye[k][1]))
    outer = [(-0.35, -0.5), (-0.2, -0.45), (-0.08, -0.42), (0.0, -0.43), (0.08, -0.42), (0.2, -0.45), (0.35, -0.5),
             (0.2, -0.6), (0.08, -0.63), (0.0, -0.64), (-0.08, -0.63), (-0.2, -0.6)]
    inner = [(-0.28, -0.52), (-0.1, -0.5), (0.0, -0.5), (0.1, -0.5), (0.28, -0.52), (0.1, -0.55), (0.0, -0.56),
             (-0.1, -0.55)]
    pts += outer + inner
    xy = np.array(pts) * np.array([0.85, 0.95])
    z = np.sqrt(np.clip(1.0 - (xy ** 2).sum(1), 0.04, None))
    z[27:31] += np.array([0.02, 0.06, 0.12, 0.18])          # the nose stands out of the face
    return np.concatenate([xy, z[:, None]], 1)


# ----------------------------------------------------------------------------- quadruped
@dataclass(frozen=True)
class Species:
    id: int
    name: str
    family: str
    length: float          # shoulder to hip (mm)
    body: float            # trunk radius
    leg: float
    neck: float
    head: float
    snout: float
    tail: float
    colors: tuple[tuple[int, int, int], ...]   # fur colours (BGR) to pick from


SPECIES = (
    Species(1, "dog", "Canidae", 700, 120, 450, 200, 70, 90, 300, ((40, 70, 120), (200, 200, 210), (30, 30, 30))),
    Species(2, "cat", "Felidae", 450, 75, 250, 100, 50, 25, 300, ((60, 110, 190), (90, 90, 90), (230, 230, 230))),
    Species(3, "horse", "Equidae", 1400, 260, 1000, 600, 110, 280, 500, ((30, 60, 110), (20, 20, 20), (180, 190, 200))),
    Species(4, "giraffe", "Giraffidae", 1500, 250, 1500, 1500, 100, 200, 500, ((60, 150, 210), (40, 100, 170))),
    Species(5, "bear", "Ursidae", 1300, 330, 550, 250, 140, 110, 80, ((20, 40, 70), (25, 25, 25), (230, 240, 245))),
    Species(6, "sheep", "Bovidae", 900, 200, 500, 250, 80, 110, 100, ((210, 220, 225), (160, 180, 190))),
)


def quadruped_rig(species: Species) -> Rig:
    L, br, LL, NL, hr, sl, TL = (species.length, species.body, species.leg, species.neck, species.head,
                                 species.snout, species.tail)
    left = [
        Bone("spine_mid", None, (0, 0, 0)),
        Bone("chest", "spine_mid", (0, 10, L / 2), ((-10, 10), (-15, 15), (-8, 8)), br, "body"),
        Bone("rump", "spine_mid", (0, 0, -L / 2), ((-10, 10), (-15, 15), (-8, 8)), br * 0.95, "body"),
        Bone("neck", "chest", (0, br * 0.5, br * 0.45), ((-45, 30), (-40, 40), (-10, 10))),
        Bone("head", "neck", (0, NL * 0.7, NL * 0.7), ((-35, 35), (-35, 35), (-15, 15)), br * 0.45, "neck"),
        Bone("skull", "head", (0, 10, hr * 0.6), ball=hr, part="head"),
        Bone("nose", "skull", (0, -hr * 0.3, hr + sl), NO_MOTION, hr * 0.45, "snout"),
        Bone("tail_root", "rump", (0, br * 0.5, -br * 0.6), ((-60, 40), (-40, 40), (-10, 10))),
        Bone("tail1", "tail_root", (0, -TL * 0.1, -TL * 0.35), ((-30, 30), (-30, 30), NO_MOTION[2]), max(br * 0.12, 8), "tail"),
        Bone("tail2", "tail1", (0, -TL * 0.1, -TL * 0.35), NO_MOTION, max(br * 0.1, 6), "tail"),
        Bone("tail3", "tail2", (0, -TL * 0.05, -TL * 0.3), NO_MOTION, max(br * 0.08, 5), "tail"),
        Bone("left_shoulder", "chest", (br * 0.75, -br * 0.3, 0), ((-40, 40), (-8, 8), (-5, 15))),
        Bone("left_elbow", "left_shoulder", (0, -LL * 0.38, 0), ((-20, 60), (-5, 5), (-5, 5)), br * 0.35, "upper_leg"),
        Bone("left_carpus", "left_elbow", (0, -LL * 0.38, 0), ((-90, 5), (-5, 5), (-5, 5)), br * 0.22, "lower_leg"),
        Bone("left_front_paw", "left_carpus", (0, -LL * 0.2, LL * 0.04), NO_MOTION, br * 0.18, "paw"),
        Bone("left_hip", "rump", (br * 0.7, -br * 0.2, 0), ((-40, 40), (-8, 8), (-5, 15))),
        Bone("left_knee", "left_hip", (0, -LL * 0.38, LL * 0.08), ((-10, 70), (-5, 5), (-5, 5)), br * 0.4, "upper_leg"),
        Bone("left_hock", "left_knee", (0, -LL * 0.33, -LL * 0.12), ((-60, 20), (-5, 5), (-5, 5)), br * 0.22, "lower_leg"),
        Bone("left_back_paw", "left_hock", (0, -LL * 0.27, LL * 0.05), NO_MOTION, br * 0.18, "paw"),
    ]
    bones = _with_right_side(left)
    points = _bone_points(bones)
    points.update({
        "left_eye": ("skull", (hr * 0.5, hr * 0.35, hr * 0.79)),
        "root_of_tail": ("tail_root", (0, 0, 0)),
        "apt36k:neck": ("neck", (0, br * 0.12, br * 0.1)),
        "apt36k:root_of_tail": ("tail_root", (0, -br * 0.08, br * 0.1)),
    })
    return Rig("quadruped", bones, _with_right_points(points), eps=max(8.0, br * 0.08))


# ----------------------------------------------------------------------------- hand body plan
def hand_rig(side: str) -> Rig:
    """One hand with a forearm stub, wrist at the root; `side` 'left' or 'right'."""
    bones = [Bone("wrist", None, (0, 0, 0)), Bone("elbow", "wrist", (0, 200, 0), NO_MOTION, 35, "forearm")]
    bones += hand_bones("", "wrist")
    if side == "right":
        bones = [_mirror_bone(b, rename=False) for b in bones]
    points = _bone_points(bones)
    points["wrist"] = ("wrist", (0, -8, 0))
    return Rig("hand", bones, points, eps=3.0)


# ----------------------------------------------------------------------------- posing and placing
@dataclass
class Figure:
    """A posed rig in camera coordinates (mm)."""

    rig: Rig
    joints: np.ndarray          # [B, 3] bone positions
    points: np.ndarray          # [P, 3] rig points
    capsules: list[tuple[int, int, float, str]] = field(default_factory=list)  # (bone a, bone b, radius, part)
    side_of_bone: list[str] = field(default_factory=list)
    colors: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)


def sample_angles(rig: Rig, rng: np.random.Generator, spread: float = 1.0) -> np.ndarray:
    """Random joint angles [B, 3] within limits, concentrated near the rest pose (clipped normal)."""
    lo, hi = rig.limits[..., 0], rig.limits[..., 1]
    neutral = np.clip(0.0, lo, hi)
    angles = neutral + rng.normal(size=lo.shape) * (hi - lo) / 3.5 * spread
    return np.clip(angles, lo, hi)


def pose_rig(rig: Rig, angles: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward kinematics in the body frame. `scale` [B] stretches each bone's offset (proportions).
    Returns bone positions [B, 3], bone rotations [B, 3, 3] and point positions [P, 3]."""
    local = rotation(angles)
    offsets = rig.offsets * scale[:, None]
    pos = np.zeros((len(rig.bones), 3))
    rot = np.zeros((len(rig.bones), 3, 3))
    for i, parent in enumerate(rig.parent_index):
        if parent < 0:
            pos[i], rot[i] = offsets[i], local[i]
        else:
            pos[i] = pos[parent] + rot[parent] @ offsets[i]
            rot[i] = rot[parent] @ local[i]
    points = pos[rig.point_bone] + np.einsum("pij,pj->pi", rot[rig.point_bone], rig.point_offset * scale[rig.point_bone, None])
    return pos, rot, points


# Body frame (X left, Y up, Z forward) to camera axes for a figure facing the camera: its left is the image's right.
BODY_TO_CAMERA = np.diag([1.0, -1.0, -1.0])


def to_camera(body_xyz: np.ndarray, orientation_deg: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Rotate body-frame points by (pitch, yaw, roll) about the body's X, Y, Z, then into camera axes and shift."""
    return body_xyz @ (BODY_TO_CAMERA @ rotation(orientation_deg)).T + translation


def build_figure(rig: Rig, angles: np.ndarray, size: float, proportions: np.ndarray,
                 orientation_deg: np.ndarray, place) -> Figure:
    """Pose the rig, scale it by `size` (1 = the rig's nominal size), turn it to `orientation_deg` and shift it
    by the translation `place(keypoints)` picks for the turned keypoints of all skeletons (see `placement`)."""
    scale = size * proportions
    joints, _, points = pose_rig(rig, angles, scale)
    zero = np.zeros(3)
    joints, points = to_camera(joints, orientation_deg, zero), to_camera(points, orientation_deg, zero)
    t = place(points[rig.labelled])
    capsules = []
    for i, b in enumerate(rig.bones):
        if b.radius > 0 and b.parent:
            capsules.append((rig.index[b.parent], i, b.radius * size, b.part))
        if b.ball > 0:
            capsules.append((i, i, b.ball * scale[i], b.part))   # as the points on it, so they stay on its skin
    sides = ["left" if "left_" in b.name else "right" if "right_" in b.name else "center" for b in rig.bones]
    return Figure(rig, joints + t, points + t, capsules, sides)


@dataclass(frozen=True)
class Camera:
    focal: tuple[float, float]
    princpt: tuple[float, float]

    def project(self, xyz: np.ndarray) -> np.ndarray:
        """Pinhole projection of camera points [..., 3] to pixels [..., 2]."""
        z = np.maximum(xyz[..., 2:3], 1e-3)
        return xyz[..., :2] / z * np.array(self.focal) + np.array(self.princpt)


def placement(points: np.ndarray, camera: Camera, target_extent_px: float, center_px: tuple[float, float],
              depth0: float = 4000.0) -> np.ndarray:
    """The translation that makes the larger side of the keypoints' box `target_extent_px` pixels, with the box
    centred at `center_px`. Points are in camera axes around the origin; a few fixed-point steps suffice."""
    t = np.array([0.0, 0.0, depth0])
    for _ in range(3):
        uv = camera.project(points + t)
        extent = max(float((uv.max(0) - uv.min(0)).max()), 1e-3)
        t[2] *= extent / target_extent_px
        uv = camera.project(points + t)
        mid = (uv.min(0) + uv.max(0)) / 2
        t[:2] += (np.asarray(center_px) - mid) * t[2] / np.asarray(camera.focal)
        # never let the figure reach the camera plane: big, deep figures come out smaller instead
        span = float(np.ptp(points, axis=0).max())
        t[2] = max(t[2], 0.6 * span - float(points[:, 2].min()))
    return t
