"""Data-pipeline speed: training samples/s per CPU core (read, crop, augment, encode), against what a training
step consumes.

    python scripts/bench_data.py                                     # 64 JPEGs, 1 core, then DataLoader workers 1, 2
    python scripts/bench_data.py --train-json train.json             # also: cores needed to feed bench_train's step

Samples are TopDownDataset training items exactly as train-mdt makes them (augmentation on, UDP targets at
64x48, keypoint rows padded to 133 as in a six-dataset batch) from 640x480 JPEGs of the photos scikit-image
bundles, one COCO-17 person box each. The single-process run reports where the time goes; the DataLoader runs
(with collation) show how it scales with worker processes on this machine.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import _bench_utils as bu

IMG_SIZE = (256, 192)  # (h, w)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bu.add_common_args(p)
    p.add_argument("--images", type=int, default=64, help="source images (one person box each)")
    p.add_argument("--image-size", default="640x480", help="source image WIDTHxHEIGHT")
    p.add_argument("--format", default="jpg", choices=("jpg", "png"))
    p.add_argument("--max-keypoints", type=int, default=133, help="rows targets are padded to (133: with WholeBody)")
    p.add_argument("--workers", default="1,2", help="comma list of DataLoader worker counts (0 = skip)")
    p.add_argument("--batch", type=int, default=8, help="DataLoader batch size")
    p.add_argument("--train-json", default=None, help="bench_train.py --json output: compare with its step rate")
    return p.parse_args(argv)


def write_dataset(folder: Path, count: int, size: tuple[int, int], fmt: str):
    """`count` images with one COCO-17 instance each (keypoints spread over a person-sized box)."""
    import cv2
    from skimage import data

    from posebh_cli.data.prepared import Instance

    width, height = size
    sources = [cv2.resize(data.astronaut(), size), cv2.resize(data.chelsea(), size)]
    rng = np.random.default_rng(0)
    instances = []
    for i in range(count):
        path = folder / f"{i:05d}.{fmt}"
        cv2.imwrite(str(path), cv2.cvtColor(np.roll(sources[i % 2], int(rng.integers(-40, 40)), axis=1),
                                            cv2.COLOR_RGB2BGR))
        box = np.array([width * 0.3, height * 0.1, width * 0.35, height * 0.8], np.float32)
        xy = box[:2] + rng.random((17, 2)) * box[2:]
        keypoints = np.concatenate([xy, np.full((17, 1), 2.0)], axis=1).astype(np.float32)
        instances.append(Instance(path, image_id=i, ann_id=i, bbox=box, keypoints=keypoints))
    return instances


def make_dataset(instances, max_keypoints: int):
    from posebh_cli.data.codecs import UDPHeatmap
    from posebh_cli.data.dataset import TopDownDataset
    from posebh_cli.skeletons import load_skeleton

    codec = UDPHeatmap(input_size=IMG_SIZE[::-1], heatmap_size=(IMG_SIZE[1] // 4, IMG_SIZE[0] // 4))
    return TopDownDataset(instances, load_skeleton("coco"), codec, train=True, dataset_idx=0,
                          input_size=IMG_SIZE[::-1], max_keypoints=max_keypoints)


def single_process(dataset, repeats: int, device: torch.device) -> tuple[dict, dict]:
    """Samples per CPU-second of one process (torch threads 1): the rate of one idle core; also the wall-clock
    rate under `wall`, and the CPU seconds per stage of the best run."""
    from posebh_cli.data import dataset as dataset_mod
    from posebh_cli.data.codecs import _HeatmapCodec

    torch.set_num_threads(1)
    wall, cpu, stages = [], [], []
    for r in range(repeats):
        dataset.set_epoch(r)
        with bu.StageTimer(device) as timer:
            timer.wrap(type(dataset), "_read_image", "read+decode")
            timer.wrap(type(dataset), "_augment", "augment params")
            timer.wrap(dataset_mod, "warp_image", "warp (crop)")
            timer.wrap(dataset_mod, "normalise", "normalise")
            timer.wrap(_HeatmapCodec, "encode", "encode heatmaps")
            timer.wrap(dataset_mod, "_pad", "pad rows")
            start, start_cpu = time.perf_counter(), time.process_time()
            for i in range(len(dataset)):
                dataset[i]
            total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        wall.append(len(dataset) / total)
        cpu.append(len(dataset) / total_cpu)
        breakdown = dict(timer.seconds)
        breakdown["other"] = total_cpu - sum(breakdown.values())
        stages.append((total_cpu, breakdown))
    return bu.spread(cpu) | {"wall": bu.spread(wall)}, min(stages, key=lambda s: s[0])


def loader_rate(dataset, workers: int, batch: int, repeats: int) -> dict:
    """Samples/s through a DataLoader with `workers` processes and the training collation."""
    from posebh_cli.data.dataset import collate

    rates = []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=workers,
                                         collate_fn=collate, persistent_workers=False)
    for _ in range(repeats):
        start = time.perf_counter()
        count = sum(len(b["dataset_idx"]) for b in loader)
        rates.append(count / (time.perf_counter() - start))  # includes worker start-up, as each epoch pays it
    return bu.spread(rates)


def main(argv=None) -> None:
    args = parse_args(argv)
    device = bu.setup(args)
    info = bu.machine_info(device)
    bu.print_header("bench_data " + " ".join(f"--{k}={v}" for k, v in vars(args).items() if v is not None), info)
    size = tuple(int(v) for v in args.image_size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        dataset = make_dataset(write_dataset(work, args.images, size, args.format), args.max_keypoints)
        rate, (total, breakdown) = single_process(dataset, args.repeats, device)
        print(f"one process, 1 thread: {bu.fmt(rate, 1, ' samples per CPU-second')} (wall clock "
              f"{bu.fmt(rate['wall'], 1, ' samples/s')}; {args.images} {args.image_size} {args.format}, "
              f"256x192 crops, targets padded to {args.max_keypoints})")
        for stage, seconds in sorted(breakdown.items(), key=lambda kv: -kv[1]):
            print(f"  {stage:16s} {seconds * 1e3 / args.images:6.2f} ms/sample  {seconds / total * 100:5.1f}%")
        loaders = {}
        for workers in [int(w) for w in args.workers.split(",") if w.strip() and int(w) > 0]:
            loaders[workers] = loader_rate(dataset, workers, args.batch, args.repeats)
            print(f"DataLoader workers={workers} batch={args.batch}: {bu.fmt(loaders[workers], 1, ' samples/s')}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record = {"machine": info, "args": vars(args), "single_process": rate, "stages_s": breakdown,
              "loader": {str(k): v for k, v in loaders.items()}}
    if args.train_json:
        arms = json.loads(Path(args.train_json).read_text())["arms"]
        for arm in arms:
            need = arm["samples_per_s"] / rate["median"]
            print(f"step {arm['arm']} ({arm['dtype']}, batch {arm['batch']}): consumes {arm['samples_per_s']:.2f} "
                  f"samples/s = {need:.3f} cores of loading")
        record["train_arms"] = [{"arm": a["arm"], "samples_per_s": a["samples_per_s"]} for a in arms]
    bu.write_json(args.json, record)


if __name__ == "__main__":
    main()
