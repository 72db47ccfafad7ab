"""Frames per second of `posebh predict` on a zoo video, with PyTorch and with ONNX Runtime, beside the model alone.

    python scripts/bench_predict.py --threads 1                         # 300 frames, batch 8 and 32, torch and onnx
    python scripts/bench_predict.py --threads 1 --frames 30 --repeats 1 # a quick check that it runs
    python scripts/bench_predict.py --device cuda --batches 8,32,128

1. The video: `--frames` COCO images of the synthetic zoo (`posebh synth --datasets coco --seed 5`), resized to
   `--size` and written as MJPEG in AVI (consecutive frames are different scenes; that costs nothing here).
2. End to end: `run_predict`, the code `posebh predict clip.avi --boxes boxes.json` runs: load the model, decode
   the video, crop, normalise, the model (with flip test unless --no-flip), decode the heatmaps, rescore and
   OKS-NMS, draw, write the overlay video and the JSON files. The boxes are the zoo's own figure boxes (about two
   per frame, as a person detector would give; a detector's own time is not counted); `--boxes whole` takes one
   whole-frame box instead. Every other option is predict's default (video tracking included). One untimed run
   on a short clip comes first (first-call allocations); each timed run still loads the model (ONNX Runtime:
   builds its session), as a user's run does.
3. Model only: crops per second of the bare heatmap network, one forward pass per crop (the graph `posebh export`
   writes: the built-in model's backbone with the dataset's expert merged, and its head) on pre-made crops of the
   same frames at the same batch, in PyTorch and in ONNX Runtime. `model share` = the time these forward passes
   (x2 with flip test) would take alone / the end-to-end time.

The ONNX row runs `posebh predict --checkpoint model.onnx` after `posebh export`; where that path is not there, the
row says why and the rest still runs. With --threads, ONNX Runtime sessions use the same number of intra-op threads
as torch (its default is one per physical core). Prints a markdown table with the command, commit and machine.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import _bench_utils as bu

BACKENDS = ("torch", "onnx")
ZOO_SEED = 5


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=300, help="frames of the zoo video")
    p.add_argument("--size", default="640x480", help="frame WIDTHxHEIGHT (zoo images are resized to it)")
    p.add_argument("--batches", default="8,32", help="comma list of predict --batch-size values")
    p.add_argument("--backends", default="torch,onnx", help="comma list of torch, onnx")
    p.add_argument("--boxes", default="zoo", choices=("zoo", "whole"),
                   help="zoo: the zoo's figure boxes as a --boxes file; whole: one whole-frame box per frame")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True, help="flip test (predict's default)")
    p.add_argument("--checkpoint", default="zoo-base", help="model name or path (default: the built-in zoo-base)")
    p.add_argument("--dataset", default="coco", help="head to predict with")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch (and ONNX Runtime) CPU threads; use 1 on a CPU shared with other jobs")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row; the spread is reported")
    p.add_argument("--model-crops", type=int, default=64,
                   help="crops per timed repeat of the model alone (whole batches, at least one)")
    p.add_argument("--work", default=None, help="keep the video, boxes and exported model in this folder")
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    args.batch_list = [int(b) for b in args.batches.split(",")]
    args.backend_list = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in args.backend_list if b not in BACKENDS]
    if unknown or not args.backend_list:
        p.error(f"--backends: unknown {unknown}; choose from {', '.join(BACKENDS)}")
    width, _, height = args.size.partition("x")
    args.frame_size = (int(width), int(height))
    if args.frames < 1 or min(args.batch_list) < 1 or args.repeats < 1:
        p.error("--frames, --batches and --repeats must be positive")
    return args


# ------------------------------------------------------------------ inputs
def make_video(work: Path, frames: int, size: tuple[int, int]) -> tuple[Path, Path, int]:
    """(video, boxes file, crops): `frames` zoo COCO images resized to `size` as MJPEG AVI, and their figure boxes
    keyed by frame index (what `posebh predict --boxes` matches a video frame by)."""
    import cv2

    from posebh_cli.data.synth import synth_zoo

    zoo = work / "zoo"
    if not (zoo / "coco").exists():
        synth_zoo(zoo, seed=ZOO_SEED, sizes={"coco": frames}, datasets=["coco"], progress=False, workers=1)
    gt = json.loads((zoo / "coco/annotations/person_keypoints_train2017.json").read_text())
    images = sorted(gt["images"], key=lambda im: im["file_name"])[:frames]
    by_image: dict[int, list] = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann["bbox"])
    video, boxes = work / f"zoo_{frames}.avi", []
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, size)
    try:
        for frame, image in enumerate(images):
            picture = cv2.imread(str(zoo / "coco/train2017" / image["file_name"]))
            writer.write(cv2.resize(picture, size, interpolation=cv2.INTER_LINEAR))
            sx, sy = size[0] / image["width"], size[1] / image["height"]
            boxes += [{"image_id": frame, "category_id": 1, "score": 1.0,
                       "bbox": [round(x * sx, 2), round(y * sy, 2), round(w * sx, 2), round(h * sy, 2)]}
                      for x, y, w, h in by_image.get(image["id"], []) if w > 0 and h > 0]
    finally:
        writer.release()
    if len(images) < frames:
        raise SystemExit(f"the zoo gave {len(images)} images, fewer than --frames {frames}")
    boxes_file = work / f"zoo_{frames}_boxes.json"
    boxes_file.write_text(json.dumps(boxes))
    return video, boxes_file, len(boxes)


def cut_clip(video: Path, frames: int, out: Path) -> Path:
    """The first `frames` frames of `video` (the warm-up input)."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 25, size)
    for _ in range(frames):
        ok, frame = capture.read()
        if not ok:
            break
        writer.write(frame)
    writer.release()
    capture.release()
    return out


def sample_crops(video: Path, checkpoint: Path, dataset: str, count: int) -> torch.Tensor:
    """`count` normalised crops [count, 3, H, W] of the video's first frames (whole frames, cycled)."""
    from posebh_cli.data.dataset import normalise
    from posebh_cli.inference import io
    from posebh_cli.inference.predictor import Predictor, load_checkpoint

    model, recipe = load_checkpoint(checkpoint)
    predictor = Predictor(model, dataset=dataset, recipe=recipe, flip=False)
    capture, info = io.open_video(video)
    frames = [frame for _, frame in zip(range(min(count, 8)), io.iter_frames(capture))]
    box = [0.0, 0.0, float(info.width), float(info.height)]
    crops = [normalise(predictor.crop(frames[i % len(frames)], box)[0]) for i in range(count)]
    return torch.from_numpy(np.stack(crops))


# ------------------------------------------------------------------ backends
@contextlib.contextmanager
def ort_threads(threads: int | None):
    """ONNX Runtime sessions opened inside use `threads` intra-op threads, like torch (None: ORT's default)."""
    import onnxruntime as ort

    original = ort.SessionOptions
    if threads:
        def options():
            made = original()
            made.intra_op_num_threads = threads
            return made

        ort.SessionOptions = options
    try:
        yield
    finally:
        ort.SessionOptions = original


def export_onnx(checkpoint: Path, dataset: str, out: Path) -> str | None:
    """Export through `posebh export`; None when it worked, else why not (one line)."""
    try:
        from posebh_cli.commands.export import export_command

        if not out.exists():
            export_command(str(checkpoint), dataset, "onnx", out, device="cpu")
    except Exception as exc:  # noqa: BLE001 - any failure only skips the row, and says why
        return f"posebh export failed: {first_line(exc)}"
    return None


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def model_forward(backend: str, checkpoint: Path, dataset: str, onnx_file: Path | None, device: torch.device):
    """A callable running the bare heatmap network on a batch of normalised crops."""
    if backend == "torch":
        from posebh_cli.inference.predictor import load_checkpoint
        from posebh_cli.models.export import HeatmapModule

        model, _ = load_checkpoint(checkpoint)
        single = model if len(model.datasets) == 1 and not model.backbone.num_experts else model.split(dataset)
        module = HeatmapModule(single).eval().to(device)

        def run(crops: torch.Tensor):
            with torch.inference_mode():
                out = module(crops.to(device))
                bu.synchronize(device)
            return out

        return run
    import onnxruntime as ort

    providers = (["CUDAExecutionProvider"] if device.type == "cuda" else []) + ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(onnx_file), sess_options=ort.SessionOptions(), providers=providers)
    name = session.get_inputs()[0].name
    return lambda crops: session.run(None, {name: crops.numpy()})


def time_predict(args, backend: str, batch: int, model_path: Path, video: Path, boxes: Path | None, work: Path,
                 warmup_clip: Path) -> dict:
    """Seconds (wall and process CPU) of `args.repeats` runs of run_predict on the whole video."""
    from posebh_cli.inference.run import run_predict

    options = dict(batch_size=batch, flip=args.flip, device=str(args.device), warn=lambda line: None,
                   dataset=args.dataset)
    if boxes is not None:
        options["boxes"] = boxes
    else:
        options["whole_image"] = True
    quiet = contextlib.redirect_stdout(io.StringIO())  # the progress bar's blank lines off a non-terminal
    with quiet:
        run_predict(warmup_clip, model_path, work / "warmup", **options)
    shutil.rmtree(work / "warmup")
    wall, cpu, instances = [], [], 0
    for repeat in range(args.repeats):
        out = work / f"out_{backend}_{batch}_{repeat}"
        start, start_cpu = time.perf_counter(), time.process_time()
        with quiet:
            summary = run_predict(video, model_path, out, **options)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        instances = summary.instances
        shutil.rmtree(out)
    return {"wall_s": bu.spread(wall), "cpu_s": bu.spread(cpu), "instances": instances}


# ------------------------------------------------------------------ report
def table(rows: list[dict], frames: int, crops: int, passes: int) -> str:
    lines = ["| backend | batch | predict frames/s | predict frames per CPU-s | predict crops/s | "
             "model only crops/s (1 pass) | model share |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        if row.get("skipped"):
            lines.append(f"| {row['backend']} | {row['batch']} | skipped: {row['skipped']} | | | | |")
            continue
        wall, cpu = row["predict"]["wall_s"], row["predict"]["cpu_s"]
        slowest, fastest = frames / wall["max"], frames / wall["min"]
        model_rate = row["model_crops_per_s"]
        share = crops * passes / model_rate / wall["median"]
        lines.append(f"| {row['backend']} | {row['batch']} | {frames / wall['median']:.1f} "
                     f"[{slowest:.1f}-{fastest:.1f}] | {frames / cpu['median']:.1f} | {crops / wall['median']:.1f} | "
                     f"{model_rate:.1f} | {share * 100:.0f}% |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    from posebh_cli.models.store import resolve_checkpoint

    checkpoint = resolve_checkpoint(args.checkpoint)
    info = bu.machine_info(device)
    command = "python scripts/bench_predict.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None
                                                                                     else argv))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_predict_"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    try:
        video, boxes_file, crops = make_video(work, args.frames, args.frame_size)
        boxes = boxes_file if args.boxes == "zoo" else None
        crops = crops if boxes is not None else args.frames
        warmup_clip = cut_clip(video, min(args.frames, max(args.batch_list)), work / "warmup.avi")
        samples = sample_crops(video, checkpoint, args.dataset, max(args.batch_list))
        ort_version = None
        for backend in args.backend_list:
            model_path, why = checkpoint, None
            if backend == "onnx":
                try:
                    import onnxruntime
                    ort_version = onnxruntime.__version__
                except ImportError:
                    why = "onnxruntime is not installed (pip install 'posebh[onnx]')"
                model_path = work / f"{checkpoint.name}_{args.dataset}.onnx"
                why = why or export_onnx(checkpoint, args.dataset, model_path)
            with ort_threads(args.threads) if backend == "onnx" and why is None else contextlib.nullcontext():
                forward = None if why else model_forward(backend, checkpoint, args.dataset, model_path, device)
                for batch in args.batch_list:
                    row = {"backend": backend, "batch": batch}
                    if why is None:
                        try:
                            row["predict"] = time_predict(args, backend, batch, model_path, video, boxes, work,
                                                          warmup_clip)
                        except Exception as exc:  # noqa: BLE001
                            if backend == "torch":
                                raise
                            why = f"`posebh predict --checkpoint model.onnx` is not there yet ({first_line(exc)})"
                    if why is not None:
                        print(f"{backend} batch {batch}: skipped: {why}", flush=True)
                        rows.append(row | {"skipped": why})
                        continue
                    crops_in = samples[:batch]
                    stats = bu.time_call(lambda: forward(crops_in), device, iters=max(1, args.model_crops // batch),
                                         repeats=args.repeats)
                    row["model_crops_per_s"] = batch / stats["median"]
                    row["model_batch_s"] = stats
                    rows.append(row)
                    wall = row["predict"]["wall_s"]["median"]
                    print(f"{backend} batch {batch}: predict {args.frames / wall:.2f} frames/s, "
                          f"model alone {row['model_crops_per_s']:.1f} crops/s", flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    passes = 2 if args.flip else 1
    boxes_text = (f"the zoo's figure boxes (--boxes file, {crops} crops, {crops / args.frames:.2f} per frame)"
                  if args.boxes == "zoo" else "one whole-frame box per frame (--whole-image)")
    threads = f"{torch.get_num_threads()}" + ("" if args.threads else " (torch default)")
    ort_text = (f"onnxruntime {ort_version}, intra-op threads {args.threads or 'ORT default (physical cores)'}"
                if ort_version else "onnxruntime not used")
    print()
    print(f"# posebh predict on a {args.frames}-frame zoo video")
    print()
    print(f"- command: `{command}`")
    print(f"- commit: {info['commit']}; machine: {info['cpu']}, {info['cores']} cores, load average "
          f"{info['load_avg_1m']:.2f} at the start; torch {info['torch']}, threads {threads}; {ort_text}; "
          f"device {args.device}" + (f" ({info['gpu']})" if "gpu" in info else ""))
    print(f"- video: {args.frames} frames {args.size}, MJPEG AVI of zoo COCO images (seed {ZOO_SEED}); model "
          f"{args.checkpoint} ({checkpoint}), head {args.dataset}; boxes: {boxes_text}; flip test "
          f"{'on (2 passes per crop)' if args.flip else 'off'}")
    print(f"- predict: median [min-max] of {args.repeats} run(s) of run_predict end to end (model load, decode, crop, "
          f"model, heatmap decode, NMS, draw, overlay video + JSON); model only: the bare heatmap network on pre-made "
          f"crops at the same batch; model share = crops x passes / model rate / predict time")
    print()
    print(table(rows, args.frames, crops, passes))
    record = {"machine": info, "command": command, "args": {k: v for k, v in vars(args).items()},
              "crops": crops, "passes_per_crop": passes, "rows": rows}
    bu.write_json(args.json, record)
    return record


if __name__ == "__main__":
    main()
