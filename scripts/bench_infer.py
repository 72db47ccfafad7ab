"""Inference speed: our ViTPose(++) model against HF transformers' VitPoseForPoseEstimation, the device's FLOP
limit, and the whole `posebh predict` command.

    python scripts/bench_infer.py --threads 1 --batches 1,32 --iters 1   # CPU: ViT-B, eager, vs HF, + predict
    python scripts/bench_infer.py --threads 1 --compile --batches 1,32   # also torch.compile'd variants
    python scripts/bench_infer.py --device cuda --dtype bf16 --archs small,base,large,huge --batches 1,32,256 --compile

1. Model only: crops/s and latency at 256x192 of our PoseModel (ViTPose++: one expert and head per dataset, six
   by default, samples routed to dataset 0) and of HF's model with the same configuration and the same weights
   (HF weights mapped onto ours; the max heatmap difference is printed to show both compute the same thing).
   MFU = FLOPs per crop (torch.utils.flop_counter) x crops/s / peak, with the peak a timed large matmul in the
   same dtype unless --peak-tflops is given.
2. End to end: `posebh predict` (run_predict) on a folder of JPEGs with whole-image boxes at batch 32, against
   the model alone on the same batch with the same flip setting, and where the time goes (read, crop,
   normalise, model, decode, draw, write).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import _bench_utils as bu

ARCH_NAMES = {"pico": "vit_pico", "small": "vit_small", "base": "vit_base", "large": "vit_large", "huge": "vit_huge"}
DATASETS = ["coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody"]
IMG_SIZE = (256, 192)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bu.add_common_args(p)
    p.add_argument("--archs", default="base", help="comma list of pico, small, base, large, huge")
    p.add_argument("--batches", default="1,32,256", help="comma list of batch sizes")
    p.add_argument("--iters", type=int, default=None, help="timed calls per repeat (default: 2 on CPU, 20 on GPU)")
    p.add_argument("--experts", type=int, default=len(DATASETS),
                   help="datasets/experts of the model (6 = ViTPose++; 0 = plain single-dataset ViTPose)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    p.add_argument("--no-hf", action="store_true", help="skip the HF transformers baseline")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="device peak in TFLOP/s, per core on the CPU (default: a timed 2048^2 matmul)")
    p.add_argument("--predict-images", type=int, default=64, help="images for the end-to-end run (0 = skip it)")
    p.add_argument("--predict-batch", type=int, default=32)
    p.add_argument("--no-flip", action="store_true", help="end-to-end run without flip test")
    return p.parse_args(argv)


# ------------------------------------------------------------------ models
def build_models(arch: str, experts: int, with_hf: bool):
    """(ours, hf or None) with identical weights: HF is built with random weights that are copied onto ours."""
    from posebh_cli.models.official import hf_vitpose_to_ours
    from posebh_cli.models.pose_model import PoseModel
    from posebh_cli.models.vit import ARCHS
    from posebh_cli.skeletons import load_skeleton

    names = DATASETS[:experts] if experts else ["coco"]
    ours = PoseModel(arch, names, [load_skeleton(n) for n in names], num_experts=experts, img_size=IMG_SIZE).eval()
    if not with_hf:
        return ours, None
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

    size = ARCHS[arch]
    backbone = VitPoseBackboneConfig(image_size=list(IMG_SIZE), patch_size=[16, 16], hidden_size=size.embed_dim,
                                     num_hidden_layers=size.depth, num_attention_heads=size.num_heads,
                                     mlp_ratio=4, num_experts=max(experts, 1),
                                     part_features=size.part_features if experts else 0, layer_norm_eps=1e-6,
                                     out_indices=[size.depth])
    config = VitPoseConfig(backbone_config=backbone, num_labels=ours.skeletons[0].num_keypoints,
                           use_simple_decoder=False)
    hf = VitPoseForPoseEstimation(config).eval()
    with torch.no_grad():  # visible values everywhere (the default head init is ~1e-3)
        for name, t in hf.state_dict().items():
            if t.is_floating_point():
                t.normal_(0, 0.05)
                if name.endswith("running_var"):
                    t.abs_().add_(0.5)
    missing, unexpected = ours.load_state_dict(hf_vitpose_to_ours(hf.state_dict(), size.depth), strict=False)
    if unexpected or any(k.startswith(("backbone.", "heads.0.")) for k in missing):
        raise RuntimeError(f"HF -> ours mapping incomplete: missing {missing[:4]}, unexpected {unexpected[:4]}")
    return ours, hf


def forward_fns(ours, hf, batch: int, device: torch.device):
    """Callables running one batch: ours predicts dataset 0's head only (heads="own"), like predict does."""
    images = torch.randn(batch, 3, *IMG_SIZE, device=device)
    idx = torch.zeros(batch, dtype=torch.long, device=device)
    fns = {"ours": lambda m=ours: m(images, idx, heads="own")["heatmaps"][0]}
    if hf is not None:
        fns["hf"] = lambda m=hf: m(images, dataset_index=idx).heatmaps
    return fns


# ------------------------------------------------------------------ model-only table
def bench_models(args, device: torch.device, peak: float) -> list[dict]:
    rows = []
    iters = args.iters or (20 if device.type == "cuda" else 2)
    for short in args.archs.split(","):
        arch = ARCH_NAMES[short.strip()]
        ours, hf = build_models(arch, args.experts, with_hf=not args.no_hf)
        ours, hf = ours.to(device), hf.to(device) if hf is not None else None
        variants = {"ours": ours}
        if hf is not None:
            variants["hf"] = hf
        if args.compile:
            variants["ours+compile"] = torch.compile(ours)
            if hf is not None:
                variants["hf+compile"] = torch.compile(hf)
        with torch.no_grad():
            flops = bu.count_flops(forward_fns(ours, None, 1, device)["ours"])
            if hf is not None:
                check = forward_fns(ours, hf, 2, device)
                with bu.autocast(device, args.dtype):
                    diff = (check["ours"]().float() - check["hf"]().float()).abs().max().item()
                print(f"{arch}: {flops / 1e9:.2f} GFLOPs/crop, max |ours - hf| heatmap difference {diff:.2e}")
        for batch in [int(b) for b in args.batches.split(",")]:
            batch_rows = []
            for name, model in variants.items():
                fn = forward_fns(model, model, batch, device)["hf" if name.startswith("hf") else "ours"]
                with torch.no_grad(), bu.autocast(device, args.dtype):
                    warmup = 2 if "compile" in name else 1  # the first compiled calls compile
                    stats = bu.time_call(fn, device, iters=iters, repeats=args.repeats, warmup=warmup)
                rate = batch / stats["median"]
                batch_rows.append({"arch": arch, "variant": name, "batch": batch, "dtype": args.dtype,
                                   "latency_s": stats, "crops_per_s": rate,
                                   "crops_per_cpu_s": batch / stats["cpu"]["median"],
                                   "gflops_per_crop": flops / 1e9,
                                   "mfu": flops * bu.rate_for_mfu(stats, batch, device) / peak})
            hf = next((r for r in batch_rows if r["variant"] == "hf"), None)
            for r in batch_rows:
                r["vs_hf"] = r["crops_per_s"] / hf["crops_per_s"] if hf else None
                r["vs_hf_cpu"] = r["crops_per_cpu_s"] / hf["crops_per_cpu_s"] if hf else None
                ratio = f"{r['vs_hf']:.2f}x HF (CPU time {r['vs_hf_cpu']:.2f}x)" if hf else "-"
                print(f"{arch:10s} {r['variant']:13s} b={batch:<4d} {args.dtype}  latency "
                      f"{bu.fmt(r['latency_s'], 1e3, ' ms')}  {r['crops_per_s']:.2f} crops/s "
                      f"({r['crops_per_cpu_s']:.2f} per CPU-s)  MFU {r['mfu'] * 100:.1f}%  {ratio}", flush=True)
            rows += batch_rows
    return rows


# ------------------------------------------------------------------ end to end
def write_images(folder: Path, count: int) -> None:
    """`count` 640x480 JPEGs of the two real photos scikit-image bundles (one person, one cat), varied slightly."""
    import cv2
    from skimage import data

    sources = [cv2.resize(data.astronaut(), (640, 480)), cv2.resize(data.chelsea(), (640, 480))]
    rng = np.random.default_rng(0)
    for i in range(count):
        image = np.roll(sources[i % 2], int(rng.integers(-40, 40)), axis=1)
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def bench_predict(args, device: torch.device) -> dict:
    from posebh_cli.data import codecs
    from posebh_cli.inference import io, predictor as predictor_mod, run
    from posebh_cli.inference.predictor import Predictor
    from posebh_cli.models.checkpoint import save_checkpoint

    arch = ARCH_NAMES[args.archs.split(",")[0].strip()]
    ours, _ = build_models(arch, args.experts, with_hf=False)
    flip = not args.no_flip
    work = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    try:
        images_dir, ckpt = work / "images", work / "ckpt"
        images_dir.mkdir()
        write_images(images_dir, args.predict_images)
        save_checkpoint(ours, ckpt)

        # Model alone on one batch of the same size, through the predictor (flip test as configured).
        predictor = Predictor(ours, device=device, batch_size=args.predict_batch, flip=flip)
        batch = torch.randn(args.predict_batch, 3, *IMG_SIZE, device=device)
        with torch.no_grad(), bu.autocast(device, args.dtype):
            model_only = bu.time_call(lambda: predictor.heatmaps(batch), device, iters=1, repeats=args.repeats)
        model_rate = args.predict_batch / model_only["median"]

        totals, totals_cpu, stages = [], [], []
        for r in range(args.repeats):
            out = work / f"out{r}"
            with bu.StageTimer(device) as timer, bu.autocast(device, args.dtype):
                timer.wrap(io, "read_image", "read")
                timer.wrap(Predictor, "crop", "crop")
                timer.wrap(Predictor, "to_tensor", "normalise")
                timer.wrap(Predictor, "heatmaps", "model", sync=True)
                timer.wrap(codecs._HeatmapCodec, "decode", "decode", sync=True)
                timer.wrap(predictor_mod, "input_to_image", "decode")
                timer.wrap(run._Writer, "finish", "draw+nms")
                timer.wrap(io, "write_image", "write overlay")
                timer.wrap(run, "_write_json", "write json")
                start, start_cpu = time.perf_counter(), time.process_time()
                run.run_predict(images_dir, ckpt, out, batch_size=args.predict_batch, flip=flip,
                                device=str(device), warn=lambda m: None)
                totals.append(time.perf_counter() - start)
                totals_cpu.append(time.process_time() - start_cpu)
            stages.append(dict(timer.seconds))
        rate = bu.spread([args.predict_images / t for t in totals])
        rate["cpu"] = bu.spread([args.predict_images / t for t in totals_cpu])
        best = min(range(len(totals_cpu)), key=lambda i: totals_cpu[i])
        breakdown = stages[best]
        breakdown["other (load, loop)"] = totals_cpu[best] - sum(breakdown.values())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    model_cpu_rate = args.predict_batch / model_only["cpu"]["median"]
    print(f"\npredict {arch} {args.predict_images} images 640x480, batch {args.predict_batch}, flip {flip}: "
          f"{bu.fmt(rate, 1, ' img/s')} wall, {bu.fmt(rate['cpu'], 1, ' img per CPU-s')}")
    print(f"model alone, same batch and flip: {model_rate:.3g} crops/s wall, {model_cpu_rate:.3g} per CPU-s;  "
          f"predict / model = {rate['median'] / model_rate:.2f} wall, {rate['cpu']['median'] / model_cpu_rate:.2f} CPU")
    print(f"CPU time by stage, fastest run ({totals_cpu[best]:.2f} s CPU, {totals[best]:.2f} s wall):")
    for stage, seconds in sorted(breakdown.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:20s} {seconds:7.2f} s  {seconds / totals_cpu[best] * 100:5.1f}%")
    return {"arch": arch, "images": args.predict_images, "batch": args.predict_batch, "flip": flip,
            "images_per_s": rate, "model_only_crops_per_s": model_rate, "model_only_batch_s": model_only,
            "model_only_crops_per_cpu_s": model_cpu_rate, "ratio": rate["median"] / model_rate,
            "ratio_cpu": rate["cpu"]["median"] / model_cpu_rate, "stages_cpu_s": breakdown, "total_s": totals,
            "total_cpu_s": totals_cpu}


def main(argv=None) -> None:
    args = parse_args(argv)
    device = bu.setup(args)
    info = bu.machine_info(device)
    bu.print_header("bench_infer " + " ".join(f"--{k}={v}" for k, v in vars(args).items() if v is not None), info)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else bu.measure_peak_flops(device, args.dtype)
    unit = "per CPU-second" if device.type == "cpu" else ""
    print(f"peak {peak / 1e12:.3f} TFLOP/s {unit} ({'given' if args.peak_tflops else 'timed matmul'}, {args.dtype})")
    record = {"machine": info, "args": vars(args), "peak_flops": peak}
    if args.batches:
        record["models"] = bench_models(args, device, peak)
    if args.predict_images:
        record["predict"] = bench_predict(args, device)
    bu.write_json(args.json, record)


if __name__ == "__main__":
    main()
