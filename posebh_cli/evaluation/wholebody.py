"""COCO-WholeBody AP per part, as xtcocotools' `keypoints_<part>` iouTypes compute it (use_area=True).

Each part (body, foot, face, lefthand, righthand) and the whole 133-point set is evaluated on its own keypoints
with its slice of the sigmas. Results are ranked by `<part>_score` (`wholebody_score` for the whole set) and fall
back to `score`; the body uses `score`. A result without a box gets its area from its body keypoints, as the
official result format (`keypoints` = body) gives it.
"""
from __future__ import annotations

from tqdm import tqdm

from posebh_cli.evaluation.coco_oks import STAT_NAMES, oks_ap
from posebh_cli.evaluation.inputs import WHOLEBODY_PARTS
from posebh_cli.skeletons import Skeleton


def wholebody_ap(gt: dict, results: list[dict], skeleton: Skeleton) -> dict[str, float]:
    """Flat metrics `<part>/<stat>` for the five parts and `wholebody/<stat>` for all keypoints, plus `AP` and
    `AR` repeating the whole-body values (the headline, as mmpose's `coco-wholebody/AP`)."""
    body = skeleton.parts["body"]
    metrics: dict[str, float] = {}
    # disable=None: a progress bar on a terminal only, silent in logs and tests.
    for part in tqdm((*WHOLEBODY_PARTS, "wholebody"), desc="whole-body parts", leave=False, disable=None):
        span = None if part == "wholebody" else skeleton.parts[part]
        score_key = "score" if part == "body" else f"{part}_score"
        stats = oks_ap(gt, results, skeleton.sigmas, part=span, score_key=score_key, xtcoco=True, use_area=True,
                       area_part=body)
        metrics.update({f"{part}/{name}": stats[name] for name in STAT_NAMES})
    metrics["AP"], metrics["AR"] = metrics["wholebody/AP"], metrics["wholebody/AR"]
    return metrics
