"""Video tracking and One-Euro smoothing of `posebh predict`, scored on long zoo clips against the hidden truth.

    python scripts/bench_tracking.py --threads 1                       # APT-36K and 3DPW, 12 clips of 60 frames each
    python scripts/bench_tracking.py --threads 1 --no-model --grid     # the control only, plus a smoothing grid

The zoo's video datasets are synthesized with long clips (`synth_zoo(clip_length=N)`); in a clip the k-th hidden
figure of every frame is one identity (`evaluation.zoo.clips`). Each frame gets detector-like boxes: the present
figures' ground-truth boxes jittered (sigma `--box-jitter` of the box size), a few dropped (`--box-miss`), in
shuffled order. Two sources of poses are scored:

- control: ground-truth keypoints plus Gaussian noise (sigma `--noise` x the box's longer side), score 0.9 where
  labelled and 0.2 elsewhere. It shows what the tracker and the smoother do, whatever the model's quality.
- model: the shipped `zoo-base` through the real `posebh predict` path (`run_predict` on an MJPEG video of the clip
  with a box file), APT-36K with its apt36k head, 3DPW with the coco head (3DPW's SMPL skeleton has no head).

Each source runs with three post-processings: the default tracker (OKS with box IoU as the fallback), the same
with `--smooth`, and an IoU-only tracker (the baseline that mmpose's `_track_by_iou` is); the control also without
gap tolerance (`--track-gap 0`). `--grid` adds smoothing settings on the control.

Per frame, predictions are matched one-to-one to the present figures by box IoU >= 0.5 (`evaluation.zoo
.match_figures`). MOTA = 1 - (FN + FP + IDSW) / GT, an identity switch being a figure matched to another track
id than at its previous match; IDSW/100 is per 100 frames; ids/fig is the number of track ids a figure received.
Keypoint error is the mean distance (px) to the labelled ground-truth points of matched figures, PCK the fraction
within 0.1 x the box's longer side. Jitter is the mean magnitude (px) of the frame-to-frame acceleration
|p(t+1) - 2 p(t) + p(t-1)| of labelled points over three consecutive matched frames; `truth` rows give the same for
the hidden ground truth itself, the floor any prediction sits on.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import torch

import _bench_utils as bu

from posebh_cli.data.synth import synth_zoo
from posebh_cli.evaluation.zoo import clips, load_groundtruth, match_figures
from posebh_cli.inference.run import run_predict
from posebh_cli.inference.smooth import OneEuroSettings, PoseSmoother
from posebh_cli.inference.track import PoseTracker, TrackSettings, follow_frame
from posebh_cli.models.store import resolve_checkpoint
from posebh_cli.skeletons import load_skeleton

# dataset -> (folder of its images below the dataset folder, skeleton scored = the head that predicts it)
DATASETS = {"apt36k": ("images", "apt36k"), "3dpw": ("imageFiles", "coco")}
MIN_LABELLED = 3   # a figure with fewer labelled points (a sliver at the border, nearly hidden) is not scored
IOU_ONLY = TrackSettings(min_keypoints=10 ** 6)   # never enough shared keypoints: box IoU decides every match


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="apt36k,3dpw")
    p.add_argument("--clips", type=int, default=12, help="clips per dataset")
    p.add_argument("--frames", type=int, default=60, help="frames per clip")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate of the clips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=0.03, help="control: keypoint noise, fraction of the box size")
    p.add_argument("--box-jitter", type=float, default=0.05, help="box noise, fraction of the box size")
    p.add_argument("--box-miss", type=float, default=0.05, help="fraction of present figures left without a box")
    p.add_argument("--model", default="zoo-base", help="model name or path for the model rows")
    p.add_argument("--no-model", action="store_true", help="control rows only")
    p.add_argument("--grid", action="store_true", help="also score a grid of smoothing settings on the control")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--work", default=None, help="folder for the zoo and the videos (default: a temporary one)")
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    return p.parse_args(argv)


# ------------------------------------------------------------------ the clips, their truth and their boxes
def make_clips(work: Path, args) -> dict[str, list[dict]]:
    """dataset -> clips: {frames: [image path], truth: [[figure]], boxes: [[(box, figure k)]]} (full clips only)."""
    names = [n for n in args.datasets.split(",") if n]
    if not all((work / n).exists() for n in names):
        synth_zoo(work, seed=args.seed, sizes={n: args.clips * args.frames for n in names}, datasets=names,
                  clip_length=args.frames, workers=1, progress=False)
    rng = np.random.default_rng(args.seed)
    out = {}
    for name in names:
        folder, skeleton = DATASETS[name]
        truth = load_groundtruth(work / name / ".zoo_groundtruth.json")
        split = "all" if name == "apt36k" else "train"
        out[name] = []
        for keys in clips(truth, split).values():
            if len(keys) < args.frames:
                continue
            figures = [[_figure(f, k, skeleton) for k, f in enumerate(truth["images"][key])] for key in keys]
            out[name].append({"frames": [work / name / folder / key for key in keys], "truth": figures,
                              "boxes": [_detections(frame, rng, args) for frame in figures]})
    return out


def _figure(raw: dict, k: int, skeleton: str) -> dict:
    kps = np.asarray(raw["keypoints"][skeleton], dtype=np.float64)
    x, y, w, h = raw["bbox"]
    present = w > 1 and h > 1 and (kps[:, 2] > 0).sum() >= MIN_LABELLED
    return {"k": k, "bbox": raw["bbox"], "keypoints": kps, "present": bool(present)}


def _detections(figures: list[dict], rng, args) -> list[tuple[list[float], int]]:
    """A detector's boxes for one frame: present figures' boxes jittered, a few missed, in shuffled order."""
    found = []
    for fig in figures:
        if not fig["present"] or rng.random() < args.box_miss:
            continue
        x, y, w, h = fig["bbox"]
        dx, dy, dw, dh = rng.normal(0, args.box_jitter, 4) * [w, h, w, h]
        found.append(([x + dx, y + dy, max(2.0, w + dw), max(2.0, h + dh)], fig["k"]))
    return [found[i] for i in rng.permutation(len(found))]


# ------------------------------------------------------------------ predictions
def control_poses(clip: dict, rng, noise: float) -> list[list[dict]]:
    """Per frame, instances made from the ground truth: noisy labelled points, the detector's boxes."""
    frames = []
    for figures, boxes in zip(clip["truth"], clip["boxes"]):
        instances = []
        for box, k in boxes:
            kps = figures[k]["keypoints"].copy()
            size = max(figures[k]["bbox"][2], figures[k]["bbox"][3])
            kps[:, :2] += rng.normal(0, noise * size, (len(kps), 2))
            kps[:, 2] = np.where(kps[:, 2] > 0, 0.9, 0.2)
            instances.append({"keypoints": kps, "bbox": box})
        frames.append(instances)
    return frames


def follow(frames: list[list[dict]], sigmas, tracking: TrackSettings, smoothing: OneEuroSettings | None,
           fps: float) -> list[list[dict]]:
    """The video path's post-processing (`track.follow_frame`) over a clip's instances."""
    tracker = PoseTracker(sigmas, tracking)
    smoother = PoseSmoother(smoothing) if smoothing else None
    return [follow_frame(instances, tracker, smoother, t=n / fps) for n, instances in enumerate(frames)]


def model_poses(clip: dict, work: Path, tag: str, checkpoint: Path, head: str, fps: float,
                tracking: TrackSettings | None, smoothing: OneEuroSettings | None) -> list[list[dict]]:
    """Per frame, the instances `posebh predict` writes for the clip's video with its box file."""
    video, boxes = work / f"{tag}.avi", work / f"{tag}.boxes.json"
    if not video.exists():
        first = cv2.imread(str(clip["frames"][0]))
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), fps, first.shape[1::-1])
        for path in clip["frames"]:
            writer.write(cv2.imread(str(path)))
        writer.release()
        boxes.write_text(json.dumps([{"image_id": n, "bbox": box, "score": 1.0}
                                     for n, frame in enumerate(clip["boxes"]) for box, _ in frame]))
    out = work / "predict"
    shutil.rmtree(out, ignore_errors=True)
    run_predict(video, checkpoint, out, dataset=head, boxes=boxes, tracking=tracking, smoothing=smoothing,
                warn=lambda line: None)
    record = json.loads((out / f"{tag}.json").read_text())
    return [[{"keypoints": np.asarray(p["keypoints"], dtype=np.float64).reshape(-1, 3), "bbox": p["bbox"],
              "track_id": p["track_id"]} for p in frame["predictions"]] for frame in record["frames"]]


# ------------------------------------------------------------------ scores
def score(clips_truth: list[list[list[dict]]], clips_pred: list[list[list[dict]]]) -> dict:
    """MOTA, identity switches, keypoint error, PCK and jitter of tracked predictions over clips."""
    gt = fn = fp = idsw = frames = 0
    errors, hits, jitter, truth_jitter, ids_per_figure = [], [], [], [], []
    for truth, pred in zip(clips_truth, clips_pred):
        last_id: dict[int, int] = {}
        ids_seen: dict[int, set] = {}
        matched_points: list[dict[int, np.ndarray]] = []   # per frame: figure k -> predicted keypoints
        for figures, instances in zip(truth, pred):
            frames += 1
            present = [f for f in figures if f["present"]]
            anns = [{"id": i, "bbox": inst["bbox"]} for i, inst in enumerate(instances)]
            pairs = match_figures(anns, present)
            gt += len(present)
            fn += len(present) - len(pairs)
            fp += len(instances) - len(pairs)
            points = {}
            for i, fig in pairs.items():
                k, track_id = fig["k"], instances[i]["track_id"]
                idsw += k in last_id and last_id[k] != track_id
                last_id[k] = track_id
                ids_seen.setdefault(k, set()).add(track_id)
                labelled = fig["keypoints"][:, 2] > 0
                dist = np.linalg.norm(instances[i]["keypoints"][:, :2] - fig["keypoints"][:, :2], axis=1)[labelled]
                errors.extend(dist)
                hits.extend(dist <= 0.1 * max(fig["bbox"][2], fig["bbox"][3]))
                points[k] = instances[i]["keypoints"][:, :2]
            matched_points.append(points)
        ids_per_figure += [len(ids) for ids in ids_seen.values()]
        for t in range(1, len(truth) - 1):
            for k in set(matched_points[t - 1]) & set(matched_points[t]) & set(matched_points[t + 1]):
                labelled = truth[t][k]["keypoints"][:, 2] > 0
                acc = matched_points[t + 1][k] - 2 * matched_points[t][k] + matched_points[t - 1][k]
                true = [truth[t + d][k]["keypoints"][:, :2] for d in (-1, 0, 1)]
                jitter.extend(np.linalg.norm(acc, axis=1)[labelled])
                truth_jitter.extend(np.linalg.norm(true[2] - 2 * true[1] + true[0], axis=1)[labelled])
    return {"frames": frames, "gt": gt, "fn": fn, "fp": fp, "idsw": int(idsw),
            "mota": 1 - (fn + fp + idsw) / max(gt, 1), "idsw_per_100": 100 * idsw / max(frames, 1),
            "ids_per_figure": float(np.mean(ids_per_figure)) if ids_per_figure else 0.0,
            "error_px": float(np.mean(errors)), "pck": float(np.mean(hits)),
            "jitter_px": float(np.mean(jitter)), "truth_jitter_px": float(np.mean(truth_jitter))}


def row(dataset: str, source: str, variant: str, s: dict) -> str:
    return (f"| {dataset} | {source} | {variant} | {s['frames']} | {s['gt']} | {s['mota']:.3f} | {s['idsw']} | "
            f"{s['idsw_per_100']:.2f} | {s['ids_per_figure']:.2f} | {s['fn']} | {s['fp']} | {s['error_px']:.2f} | "
            f"{s['pck']:.3f} | {s['jitter_px']:.2f} | {s['truth_jitter_px']:.2f} |")


HEADER = ("| dataset | poses | post-processing | frames | GT | MOTA | IDSW | IDSW/100 | ids/fig | FN | FP | error px | "
          "PCK@0.1 | jitter px | truth jitter px |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = bu.machine_info(torch.device("cpu"))
    bu.print_header("bench_tracking " + " ".join(f"--{k}={v}" for k, v in vars(args).items() if v is not None), info)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = make_clips(work, args)
    print(f"# zoo: {', '.join(f'{n} {len(c)} clips x {args.frames} frames' for n, c in data.items())} "
          f"({time.perf_counter() - start:.0f} s)")
    smooth = OneEuroSettings()
    variants = {"track": (TrackSettings(), None), "track + smooth": (TrackSettings(), smooth),
                "IoU-only track": (IOU_ONLY, None)}
    control_only = {"track, --track-gap 0": (TrackSettings(max_gap=0), None)}
    record: dict = {"args": vars(args), "machine": info, "smoothing": asdict(smooth), "rows": []}
    lines = [HEADER]
    checkpoint = None if args.no_model else resolve_checkpoint(args.model)
    for name, clip_list in data.items():
        skeleton = load_skeleton(DATASETS[name][1])
        truth = [c["truth"] for c in clip_list]
        rng = np.random.default_rng([args.seed, 7])
        noisy = [control_poses(c, rng, args.noise) for c in clip_list]
        sources = {"control": {v: [follow(f, skeleton.sigmas, t, s, args.fps) for f in noisy]
                               for v, (t, s) in (variants | control_only).items()}}
        if checkpoint is not None:
            started = time.perf_counter()
            sources["zoo-base"] = {v: [model_poses(c, work, f"{name}-{i:02d}", checkpoint, DATASETS[name][1], args.fps,
                                                   t, s) for i, c in enumerate(clip_list)]
                                   for v, (t, s) in variants.items()}
            print(f"# {name}: zoo-base predictions {time.perf_counter() - started:.0f} s")
        for source, by_variant in sources.items():
            for variant, preds in by_variant.items():
                s = score(truth, preds)
                record["rows"].append({"dataset": name, "source": source, "variant": variant, **s})
                lines.append(row(name, source, variant, s))
        if args.grid:
            for min_cutoff in (0.3, 1.0, 3.0):
                for beta in (0.0, 0.5, 2.0, 8.0):
                    settings = replace(smooth, min_cutoff=min_cutoff, beta=beta)
                    s = score(truth, [follow(f, skeleton.sigmas, TrackSettings(), settings, args.fps) for f in noisy])
                    record["rows"].append({"dataset": name, "source": "control", "variant": str(asdict(settings)), **s})
                    lines.append(row(name, "control", f"smooth min_cutoff={min_cutoff} beta={beta}", s))
    print("\n".join(lines))
    print(f"# total {time.perf_counter() - start:.0f} s")
    bu.write_json(args.json, record)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
