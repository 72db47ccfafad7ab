"""`posebh skeletons list | show NAME`: the built-in skeletons as tables."""
from __future__ import annotations

from rich.table import Table

from posebh_cli.skeletons import Skeleton, list_skeletons, load_skeleton


def skeletons_table() -> Table:
    """Every built-in skeleton with its keypoint count, body plan, flip pairs and parts."""
    table = Table(title="Built-in skeletons")
    for column in ("name", "keypoints", "body plan", "flip pairs", "parts"):
        table.add_column(column)
    for name in list_skeletons():
        sk = load_skeleton(name)
        table.add_row(name, str(sk.num_keypoints), sk.body_plan, str(len(sk.flip_pairs)), ", ".join(sk.parts) or "-")
    return table


def skeleton_table(sk: Skeleton) -> Table:
    """One skeleton: every keypoint with its index, sigma and mirror."""
    flip = sk.flip_indices
    table = Table(title=f"{sk.name}: {sk.num_keypoints} keypoints ({sk.body_plan})")
    for column in ("#", "name", "sigma", "mirror"):
        table.add_column(column)
    for i, kp in enumerate(sk.keypoints):
        table.add_row(str(i), kp, f"{sk.sigmas[i]:.4g}", sk.keypoints[flip[i]] if flip[i] != i else "-")
    return table
