"""Union skeletons: merge skeletons by keypoint name, and map each source skeleton's channels into a union.

Two skeletons share a point when the point has the same name in both (COCO's and MPII's `left_knee`). A mapping
file renames points of a source skeleton first, so that the same landmark under two names merges:

    # mapping.yaml — <source skeleton name>: {<its keypoint>: <name in the union>}
    aic: {neck: upper_neck}

`union_skeleton([coco, mpii])` gives COCO's 17 points followed by MPII's pelvis, thorax, upper_neck and head_top,
i.e. the order of the built-in `coco_mpii21` (whose extra sigmas are Halpe's; a built union keeps the first
source's sigma of each point).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence


from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import read_yaml
from posebh_cli.skeletons import Skeleton, skeleton_from_dict

Mapping = dict[str, dict[str, str]]  # source skeleton name -> {its keypoint: union keypoint}


def load_mapping(path: str | Path) -> Mapping:
    """Read and validate a mapping YAML file (see the module docstring)."""
    return check_mapping(read_yaml(path, "mapping file") or {}, path)


def check_mapping(raw: object, source: str | Path = "<mapping>") -> Mapping:
    """A mapping given inline (e.g. in a recipe's method_config) validated like a mapping file."""
    if not isinstance(raw, dict):
        raise input_error(source, "a mapping must be {skeleton: {keypoint: union keypoint}}")
    out: Mapping = {}
    for skeleton, renames in raw.items():
        if not isinstance(renames, dict):
            raise input_error(source, "must map keypoint names to union names", field=str(skeleton))
        for old, new in renames.items():
            if not isinstance(old, str) or not isinstance(new, str) or not old or not new:
                raise input_error(source, f"names must be non-empty strings, got {old!r}: {new!r}",
                                  field=f"{skeleton}.{old}")
        out[str(skeleton)] = dict(renames)
    return out


def union_names(skeleton: Skeleton, mapping: Mapping | None = None) -> list[str]:
    """The keypoint names of `skeleton` as they appear in a union (after the mapping's renames)."""
    renames = (mapping or {}).get(skeleton.name, {})
    unknown = [k for k in renames if k not in skeleton.keypoints]
    if unknown:
        raise PosebhError(f"mapping for skeleton '{skeleton.name}': it has no keypoint '{unknown[0]}'")
    names = [renames.get(k, k) for k in skeleton.keypoints]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PosebhError(f"mapping for skeleton '{skeleton.name}' gives two of its keypoints the name '{dupes[0]}'")
    return names


def channel_map(source: Skeleton, union: Skeleton, mapping: Mapping | None = None, who: str | None = None) -> list[int]:
    """For each keypoint of `source`, its channel in `union` (by name after the mapping).

    A keypoint absent from the union is a PosebhError naming `who` (e.g. "teacher 'mpii'") and the keypoint.
    """
    position = {name: i for i, name in enumerate(union.keypoints)}
    channels = []
    for original, name in zip(source.keypoints, union_names(source, mapping)):
        if name not in position:
            label = who or f"skeleton '{source.name}'"
            renamed = f" (mapped to '{name}')" if name != original else ""
            raise PosebhError(f"{label}: keypoint '{original}'{renamed} of skeleton '{source.name}' is not in the "
                              f"union skeleton '{union.name}'; rename it with a mapping file")
        channels.append(position[name])
    return channels


def union_skeleton(skeletons: Sequence[Skeleton], mapping: Mapping | None = None,
                   name: str | None = None) -> tuple[Skeleton, list[list[int]]]:
    """The union of `skeletons` by keypoint name, and per source skeleton its channel indices into the union.

    Points keep the order of first appearance; sigma, side and links come from every source that has them
    (sigma: the first). A point paired for flipping with two different partners is an error.
    """
    if not skeletons:
        raise PosebhError("a union needs at least one skeleton")
    keypoints: list[str] = []
    sigmas: dict[str, float] = {}
    partner: dict[str, str] = {}
    links: list[tuple[str, str]] = []
    for sk in skeletons:
        names = union_names(sk, mapping)
        for kp, sigma in zip(names, sk.sigmas):
            if kp not in sigmas:
                keypoints.append(kp)
                sigmas[kp] = sigma
        for a, b in sk.flip_pairs:
            for x, y in ((names[a], names[b]), (names[b], names[a])):
                if partner.setdefault(x, y) != y:
                    raise PosebhError(f"skeleton '{sk.name}' mirrors '{x}' to '{y}' but an earlier skeleton mirrors it "
                                      f"to '{partner[x]}'")
        for a, b in sk.links:
            link = (names[a], names[b])
            if link not in links and link[::-1] not in links:
                links.append(link)
    pairs = [[a, b] for a, b in partner.items() if keypoints.index(a) < keypoints.index(b)]
    data = {
        "name": name or "+".join(sk.name for sk in skeletons),
        "body_plan": skeletons[0].body_plan,
        "keypoints": keypoints,
        "flip_pairs": pairs,
        "sigmas": [sigmas[k] for k in keypoints],
        "links": [list(link) for link in links],
        "notes": f"union by keypoint name of {', '.join(sk.name for sk in skeletons)}",
    }
    union = skeleton_from_dict(data, "<union>")
    return union, [channel_map(sk, union, mapping) for sk in skeletons]


__all__ = ["Mapping", "load_mapping", "check_mapping", "union_names", "channel_map", "union_skeleton"]
