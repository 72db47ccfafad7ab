"""Skeletons: the single source of keypoint names, order, flip pairs, OKS sigmas, links and parts.

Built-in skeletons are the YAML files beside this module; a user skeleton is a YAML file with the same
fields and loads through the same validation. Nothing else in the package hard-codes keypoint facts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path


from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import read_yaml

SKELETON_DIR = Path(__file__).parent
BODY_PLANS = ("human", "quadruped", "hand")

LEFT_COLOR = (0, 255, 0)
RIGHT_COLOR = (255, 128, 0)
CENTER_COLOR = (51, 153, 255)


def side_of(name: str) -> str:
    """'left', 'right' or 'center', read from a keypoint name."""
    lowered = name.lower()
    if lowered.startswith(("left", "l_")) or "_left" in lowered:
        return "left"
    if lowered.startswith(("right", "r_")) or "_right" in lowered:
        return "right"
    return "center"


def _color_of_side(side: str) -> tuple[int, int, int]:
    return {"left": LEFT_COLOR, "right": RIGHT_COLOR}.get(side, CENTER_COLOR)


@dataclass(frozen=True)
class Skeleton:
    """Keypoint facts of one skeleton. Indices are positions in `keypoints`."""

    name: str
    keypoints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    links: tuple[tuple[int, int], ...]
    body_plan: str = "human"
    parts: dict[str, tuple[int, int]] = field(default_factory=dict)
    link_colors: tuple[tuple[int, int, int], ...] = ()
    keypoint_colors: tuple[tuple[int, int, int], ...] = ()
    notes: str = ""

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def flip_indices(self) -> list[int]:
        """For each keypoint, the index of its mirror image (itself when unpaired)."""
        indices = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            indices[a], indices[b] = b, a
        return indices

    def index(self, name: str) -> int:
        try:
            return self.keypoints.index(name)
        except ValueError:
            raise PosebhError(f"skeleton '{self.name}' has no keypoint named '{name}'") from None

    def to_dict(self) -> dict:
        """Plain, YAML/JSON-ready form; `skeleton_from_dict` reads it back."""
        out = {
            "name": self.name,
            "body_plan": self.body_plan,
            "keypoints": list(self.keypoints),
            "flip_pairs": [[self.keypoints[a], self.keypoints[b]] for a, b in self.flip_pairs],
            "sigmas": list(self.sigmas),
            "links": [[self.keypoints[a], self.keypoints[b]] for a, b in self.links],
            "link_colors": [list(c) for c in self.link_colors],
            "keypoint_colors": [list(c) for c in self.keypoint_colors],
        }
        if self.parts:
            out["parts"] = {k: list(v) for k, v in self.parts.items()}
        if self.notes:
            out["notes"] = self.notes
        return out


_ALLOWED_KEYS = {"name", "body_plan", "keypoints", "flip_pairs", "sigmas", "links", "parts",
                 "link_colors", "keypoint_colors", "notes"}


def _color(value, source, key) -> tuple[int, int, int]:
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in value)):
        raise input_error(source, f"expected a colour [r, g, b] with 0..255 integers, got {value!r}", field=key)
    return tuple(value)


def skeleton_from_dict(data: dict, source: str | Path = "<skeleton>") -> Skeleton:
    """Validate a skeleton mapping (as read from YAML); errors name the source and the key."""
    if not isinstance(data, dict):
        raise input_error(source, "a skeleton file must hold a mapping")
    unknown = set(data) - _ALLOWED_KEYS
    if unknown:
        raise input_error(source, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_ALLOWED_KEYS)}")
    for key in ("name", "keypoints", "sigmas"):
        if key not in data:
            raise input_error(source, "missing", field=key)
    name = data["name"]
    if not isinstance(name, str) or not name:
        raise input_error(source, "must be a non-empty string", field="name")
    keypoints = data["keypoints"]
    if not isinstance(keypoints, list) or not keypoints or not all(isinstance(k, str) and k for k in keypoints):
        raise input_error(source, "must be a non-empty list of names", field="keypoints")
    if len(set(keypoints)) != len(keypoints):
        dupes = sorted({k for k in keypoints if keypoints.count(k) > 1})
        raise input_error(source, f"duplicate names {dupes}", field="keypoints")
    position = {k: i for i, k in enumerate(keypoints)}

    def as_index(value, key):
        if isinstance(value, str):
            if value not in position:
                raise input_error(source, f"unknown keypoint '{value}'", field=key)
            return position[value]
        if isinstance(value, int) and 0 <= value < len(keypoints):
            return value
        raise input_error(source, f"expected a keypoint name or index, got {value!r}", field=key)

    def pair_list(key):
        pairs = []
        for item in data.get(key) or []:
            if not (isinstance(item, (list, tuple)) and len(item) == 2):
                raise input_error(source, f"expected pairs [a, b], got {item!r}", field=key)
            pairs.append((as_index(item[0], key), as_index(item[1], key)))
        return tuple(pairs)

    flip_pairs = pair_list("flip_pairs")
    seen: set[int] = set()
    for a, b in flip_pairs:
        if a == b or a in seen or b in seen:
            raise input_error(source, f"keypoint '{keypoints[a]}' or '{keypoints[b]}' is paired twice or with itself",
                              field="flip_pairs")
        seen.update((a, b))
    links = pair_list("links")

    sigmas = data["sigmas"]
    if not isinstance(sigmas, list) or len(sigmas) != len(keypoints):
        got = len(sigmas) if isinstance(sigmas, list) else type(sigmas).__name__
        raise input_error(source, f"expected {len(keypoints)} values (one per keypoint), got {got}", field="sigmas")
    for s in sigmas:
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not math.isfinite(s) or s <= 0:
            raise input_error(source, f"every sigma must be a positive finite number, got {s!r}", field="sigmas")

    body_plan = data.get("body_plan", "human")
    if body_plan not in BODY_PLANS:
        raise input_error(source, f"must be one of {list(BODY_PLANS)}, got {body_plan!r}", field="body_plan")

    parts = {}
    raw_parts = data.get("parts") or {}
    if not isinstance(raw_parts, dict):
        raise input_error(source, f"must be a mapping of part name to [start, end), got {raw_parts!r}", field="parts")
    for part, span in raw_parts.items():
        integers = isinstance(span, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in span)
        if not (integers and len(span) == 2 and 0 <= span[0] < span[1] <= len(keypoints)):
            raise input_error(source, f"must be [start, end) integers within the {len(keypoints)} keypoints, "
                              f"got {span!r}", field=f"parts.{part}")
        parts[str(part)] = (int(span[0]), int(span[1]))

    keypoint_colors = tuple(_color(c, source, "keypoint_colors") for c in data.get("keypoint_colors") or [])
    if keypoint_colors and len(keypoint_colors) != len(keypoints):
        raise input_error(source, f"expected {len(keypoints)} colours, got {len(keypoint_colors)}", field="keypoint_colors")
    if not keypoint_colors:
        keypoint_colors = tuple(_color_of_side(side_of(k)) for k in keypoints)
    link_colors = tuple(_color(c, source, "link_colors") for c in data.get("link_colors") or [])
    if link_colors and len(link_colors) != len(links):
        raise input_error(source, f"expected {len(links)} colours, got {len(link_colors)}", field="link_colors")
    if not link_colors:
        colors = []
        for a, b in links:
            sa, sb = side_of(keypoints[a]), side_of(keypoints[b])
            colors.append(_color_of_side(sa if sa == sb else "center"))
        link_colors = tuple(colors)

    return Skeleton(name=name, keypoints=tuple(keypoints), flip_pairs=flip_pairs, sigmas=tuple(float(s) for s in sigmas),
                    links=links, body_plan=body_plan, parts=parts, link_colors=link_colors,
                    keypoint_colors=keypoint_colors, notes=str(data.get("notes", "")))


def list_skeletons() -> list[str]:
    """Names of the built-in skeletons."""
    return sorted(p.stem for p in SKELETON_DIR.glob("*.yaml"))


def load_skeleton_file(path: str | Path) -> Skeleton:
    return skeleton_from_dict(read_yaml(path, "skeleton file"), path)


@lru_cache(maxsize=None)
def _builtin(name: str) -> Skeleton:
    return load_skeleton_file(SKELETON_DIR / f"{name}.yaml")


def load_skeleton(name_or_path: str | Path) -> Skeleton:
    """A built-in skeleton by name (`coco`, `ap10k`, ...) or a user skeleton from a YAML path."""
    text = str(name_or_path)
    if text in list_skeletons():
        return _builtin(text)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        return load_skeleton_file(text)
    raise PosebhError(f"unknown skeleton '{text}'; built-in: {', '.join(list_skeletons())}, or give a YAML file path")


__all__ = ["Skeleton", "load_skeleton", "load_skeleton_file", "list_skeletons", "skeleton_from_dict", "side_of",
           "BODY_PLANS"]
