"""How far a model's keypoints are from the tolerance its dataset's metric allows, per dataset of the held-out zoo.

    python scripts/oks_margin.py --work runs/zoo-base-work                      # the shipped zoo-base
    python scripts/oks_margin.py --work runs/zoo-base-work --checkpoint runs/x   # any checkpoint with the six heads
    python scripts/oks_margin.py --work runs/zoo-base-work --dark               # DARK decoding for the MSRA heads

AP counts a prediction when its OKS (the mean of exp(-d^2 / (2 s^2 (2 sigma)^2)) over labelled keypoints) passes
0.5 to 0.95, so a dataset's AP is set by the ratio of the keypoint error d to its tolerance s * 2 sigma, where s^2
is the figure's area (COCO, AP-10K, APT-36K, COCO-WholeBody) or 0.53 x the box area (AIC's no-area rule). For each
keypoint this prints r = d / (1.18 s 2 sigma), so that r < 1 is exactly OKS_i > 0.5; for MPII r = d / (0.5 head
size), so that r < 1 is a PCKh@0.5 hit. Per dataset: the median r (how many times the error must shrink for half of
the keypoints to pass), the share of keypoints with r < 1, the median error d / s, the median 2 sigma, and the
share of left/right keypoints placed nearer their mirror partner's truth than their own ("other side": 0 knows the
sides, 0.5 picks one at random). Datasets with small sigmas (AIC, the face and hands of COCO-WholeBody) need the same
pixels several times more precise.

The held-out zoo is the model card's (seed 2000, val split, ground-truth boxes, flip test unless the model trained
without mirrored crops; --flip/--no-flip force it), made in --work as
scripts/train_zoo_base.py makes it. One JSON line per dataset, then a markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/oks_margin.py` from a checkout
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import numpy as np
import torch

from posebh_cli.data.codecs import MSRAHeatmap
from posebh_cli.data.prepared import open_prepared
from posebh_cli.evaluation import PRIMARY_METRIC, protocol_for
from posebh_cli.evaluation.coco_oks import NO_AREA_FACTOR
from posebh_cli.evaluation.pckh import SC_BIAS
from posebh_cli.inference.evaluate import evaluate_model
from posebh_cli.inference.predictor import default_codec, default_flip_test, load_checkpoint
from posebh_cli.models.store import resolve_checkpoint

OKS_HALF = float(np.sqrt(2 * np.log(2)))  # exp(-r^2 / 2) = 0.5 at r = 1.177


def keypoint_margins(gt: dict, results: list[dict], sigmas: np.ndarray, protocol: str) -> dict[str, np.ndarray]:
    """Per labelled GT keypoint: r (error over the metric's 0.5 tolerance), d / s, 2 sigma, the error d in image
    pixels and the keypoint's index in the skeleton."""
    anns = {ann["id"]: ann for ann in gt["annotations"]}
    r, d_over_s, d_px, index = [], [], [], []
    for res in results:
        ann = anns[res["ann_id"]]
        truth = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
        pred = np.asarray(res["keypoints"], dtype=float).reshape(-1, 3)
        labelled = truth[:, 2] > 0
        d = np.linalg.norm(pred[:, :2] - truth[:, :2], axis=1)
        w, h = ann["bbox"][2:]
        s = np.sqrt(ann["area"] if protocol in ("coco", "wholebody") else w * h * NO_AREA_FACTOR)
        if protocol == "pckh":
            x1, y1, x2, y2 = ann["head_box"]
            tolerance = np.full_like(d, 0.5 * SC_BIAS * np.hypot(x2 - x1, y2 - y1))
        else:
            tolerance = OKS_HALF * s * 2 * sigmas
        r.append((d / tolerance)[labelled])
        d_over_s.append((d / s)[labelled])
        d_px.append(d[labelled])
        index.append(np.flatnonzero(labelled))
    index = np.concatenate(index)
    return {"r": np.concatenate(r), "d_over_s": np.concatenate(d_over_s), "two_sigma": 2 * sigmas[index],
            "d_px": np.concatenate(d_px), "index": index}


def other_side_share(gt: dict, results: list[dict], flip_indices: list[int], min_apart: float = 0.1) -> float:
    """Share of left/right keypoints predicted nearer their mirror partner's truth than their own.

    Only pairs whose two truths lie at least `min_apart` x s apart count (s = sqrt of the box area), so that the
    sides can be told apart at all. 0 is a model that knows the sides; 0.5 picks a side at random.
    """
    anns = {ann["id"]: ann for ann in gt["annotations"]}
    flip = np.asarray(flip_indices)
    paired = flip != np.arange(len(flip))
    other, counted = 0, 0
    for res in results:
        ann = anns[res["ann_id"]]
        truth = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
        pred = np.asarray(res["keypoints"], dtype=float).reshape(-1, 3)[:, :2]
        s = np.sqrt(ann["bbox"][2] * ann["bbox"][3])
        both = paired & (truth[:, 2] > 0) & (truth[flip, 2] > 0)
        apart = np.linalg.norm(truth[:, :2] - truth[flip, :2], axis=1) >= min_apart * s
        use = both & apart
        own = np.linalg.norm(pred - truth[:, :2], axis=1)
        mirror = np.linalg.norm(pred - truth[flip, :2], axis=1)
        other += int((mirror < own)[use].sum())
        counted += int(use.sum())
    return other / max(counted, 1)


def per_keypoint(margins: dict[str, np.ndarray], names: list[str]) -> list[tuple[str, float, float]]:
    """(name, median r, median error in pixels) per keypoint with labels, worst median r first."""
    rows = []
    for k, name in enumerate(names):
        mine = margins["index"] == k
        if mine.any():
            rows.append((name, float(np.median(margins["r"][mine])), float(np.median(margins["d_px"][mine]))))
    return sorted(rows, key=lambda row: -row[1])


def main() -> None:
    from train_zoo_base import EVAL_SEED, MDT_DATASETS, held_out_zoo

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the held-out zoo (reused when there)")
    parser.add_argument("--checkpoint", default="zoo-base")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dark", action="store_true",
                        help="decode the heads trained with MSRA targets with DARK's Taylor step instead of the "
                             "quarter-pixel step (UDP heads keep their DARK-UDP decoding)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="flip test (default: the model's own, off when it trained without mirrored crops)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    held_out = held_out_zoo(args.work.resolve())
    model, recipe = load_checkpoint(resolve_checkpoint(args.checkpoint))
    model.eval()
    flip = default_flip_test(recipe) if args.flip is None else args.flip
    rows = []
    for name in MDT_DATASETS:
        prepared = open_prepared(held_out / name)
        protocol = protocol_for(prepared.skeleton.name)
        results: list[dict] = []
        codec = default_codec(model, name, recipe)
        if args.dark and not codec.use_udp:
            codec = MSRAHeatmap(codec.input_size, codec.heatmap_size, codec.sigma, dark=True)
        metrics = evaluate_model(model, prepared, "val", name, flip=flip, recipe=recipe, keep_results=results,
                                 codec=codec)
        gt = prepared.load_coco("val")
        m = keypoint_margins(gt, results, np.asarray(prepared.skeleton.sigmas), protocol)
        row = {"dataset": name, "metric": round(100 * metrics[PRIMARY_METRIC[protocol]], 1),
               "median_r": round(float(np.median(m["r"])), 2), "share_r_below_1": round(float(np.mean(m["r"] < 1)), 3),
               "median_d_over_s": round(float(np.median(m["d_over_s"])), 3),
               "median_2sigma": None if protocol == "pckh" else round(float(np.median(m["two_sigma"])), 3),
               "other_side": round(other_side_share(gt, results, prepared.skeleton.flip_indices), 3),
               "keypoints": int(m["r"].size),
               "by_keypoint": [[k, round(r, 2), round(px, 1)]
                               for k, r, px in per_keypoint(m, prepared.skeleton.keypoints)]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    decoding = " (DARK decoding for the MSRA heads)" if args.dark else ""
    test = "flip test" if flip else "no flip test"
    print(f"\n{args.checkpoint}{decoding}, held-out zoo (seed {EVAL_SEED}, val, GT boxes, {test})\n")
    print("| dataset | AP / PCKh ×100 | median r | share r < 1 | median d/s | median 2σ | other side |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['dataset']} | {row['metric']} | {row['median_r']} | {row['share_r_below_1']} | "
              f"{row['median_d_over_s']} | {row['median_2sigma'] if row['median_2sigma'] is not None else '-'} | "
              f"{row['other_side']} |")
    print("\nPer dataset, the three keypoints with the largest and the smallest median r (median r, median error "
          "in image pixels):\n")
    for row in rows:
        cells = [f"{k} {r} ({px} px)" for k, r, px in row["by_keypoint"]]
        print(f"- {row['dataset']}: worst {', '.join(cells[:3])}; best {', '.join(cells[-3:])}")


if __name__ == "__main__":
    main()
