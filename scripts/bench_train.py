"""Training-step speed and peak memory: the multi-head baseline against PoseBH without and with CSS.

    python scripts/bench_train.py --threads 1                        # CPU: ViT-B, batch 8, 3 timed steps
    python scripts/bench_train.py --device cuda --dtype bf16 --batch 64 --iters 20
    python scripts/bench_train.py --arch pico --head-channels 64 --batch 32 --arms multihead --dtype bf16  # zoo-base

One step is what the engine does (engine/trainer.py): the method's losses, their sum, backward, gradient
clipping, AdamW step, zero_grad, then the method's after_step (the prototype momentum update). Everything
trains (backbone, heads, embedding), on a ViTPose++ model with the six MDT datasets, a batch mixing all six
(random targets in each skeleton). Arms:
  multihead      heatmap loss, each head on its own samples (the baseline)
  posebh-nocss   + prototype losses (PPC/PPD), prototype heatmaps, cluster negatives, momentum update
  posebh         + cross-type self-supervision (every head on every other dataset's samples)
Each arm runs in its own process, so the peak resident memory (CPU) is the arm's own.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from dataclasses import dataclass
from types import SimpleNamespace

import torch

import _bench_utils as bu

DATASETS = ["coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody"]
ARMS = {
    "multihead": ("multihead", ("heatmap",)),
    "posebh-nocss": ("posebh", ("heatmap", "proto", "proto_heatmap", "cluster")),
    "posebh": ("posebh", ("heatmap", "proto", "proto_heatmap", "cluster", "css")),
}
ARCH_NAMES = {"pico": "vit_pico", "tiny": "vit_tiny", "small": "vit_small", "base": "vit_base",
              "large": "vit_large", "huge": "vit_huge"}


@dataclass
class Stage:
    """The fields of recipe.StageSpec a method reads."""

    losses: tuple
    name: str = "bench"
    prototypes: str = "update"
    trainable: tuple = ("backbone", "heads", "embedding")
    on_start: tuple = ("cluster_prototypes",)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bu.add_common_args(p)
    p.add_argument("--arch", default="base", choices=list(ARCH_NAMES))
    p.add_argument("--img-size", default="256x192", help="input HEIGHTxWIDTH")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--head-channels", type=int, default=256, help="deconv width of the heads (zoo-base: 64)")
    p.add_argument("--iters", type=int, default=None, help="timed steps per repeat (default: 1 on CPU, 10 on GPU)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma list of {', '.join(ARMS)}")
    p.add_argument("--posebh-heads", default="own", choices=("own", "all"),
                   help="method_config.heads of the posebh arms (all = every head on every row, as released)")
    p.add_argument("--one-arm", default=None, help=argparse.SUPPRESS)  # internal: run one arm, print JSON
    return p.parse_args(argv)


def make_batch(skeletons, batch: int, img_size: tuple[int, int], device: torch.device, seed: int = 0) -> dict:
    """A batch cycling through the datasets, with Gaussian targets at random visible points of each skeleton."""
    from posebh_cli.data.codecs import gaussian_heatmaps

    g = torch.Generator().manual_seed(seed)
    kmax = max(s.num_keypoints for s in skeletons)
    h, w = img_size[0] // 4, img_size[1] // 4
    dataset_idx = torch.arange(batch) % len(skeletons)
    centres = torch.rand(batch, kmax, 2, generator=g) * torch.tensor([w - 1.0, h - 1.0])
    visible = torch.zeros(batch, kmax)
    for row, d in enumerate(dataset_idx.tolist()):
        visible[row, : skeletons[d].num_keypoints] = (torch.rand(skeletons[d].num_keypoints, generator=g) < 0.8)
    heatmaps, weight = gaussian_heatmaps(centres, visible, (w, h), 2.0, subpixel=False)
    keypoints = torch.cat([centres * 4, visible[..., None]], dim=-1)
    batch_dict = {"images": torch.randn(batch, 3, *img_size, generator=g), "heatmaps": heatmaps,
                  "target_weight": weight, "keypoints": keypoints, "dataset_idx": dataset_idx}
    batch_dict = {k: v.to(device) for k, v in batch_dict.items()}
    batch_dict["meta"] = [{} for _ in range(batch)]
    return batch_dict


def run_arm(args, arm: str, device: torch.device) -> dict:
    from posebh_cli.methods import METHODS
    from posebh_cli.models.pose_model import PoseModel
    from posebh_cli.skeletons import load_skeleton

    method_name, losses = ARMS[arm]
    img_size = tuple(int(v) for v in args.img_size.split("x"))
    skeletons = [load_skeleton(n) for n in DATASETS]
    torch.manual_seed(0)
    model = PoseModel(ARCH_NAMES[args.arch], DATASETS, skeletons, img_size=img_size,
                      with_embedding=method_name == "posebh", head_channels=args.head_channels).to(device).train()
    specs = [SimpleNamespace(name=n) for n in DATASETS]
    config = {"heads": args.posebh_heads} if method_name == "posebh" else {}
    method = METHODS[method_name](model, specs, config, None)
    stage = Stage(losses=losses, on_start=("cluster_prototypes",) if method_name == "posebh" else ())
    method.on_stage_start(stage)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.1)
    batch = make_batch(skeletons, args.batch, img_size, device)
    terms = {}

    def step() -> None:
        with bu.autocast(device, args.dtype):
            terms.update(method.losses(batch, stage))
        total = sum(terms.values())
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        method.after_step(batch, stage)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    iters = args.iters or (10 if device.type == "cuda" else 1)
    stats = bu.time_call(step, device, iters=iters, repeats=args.repeats)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2 ** 20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"arm": arm, "batch": args.batch, "dtype": args.dtype, "step_s": stats,
            "samples_per_s": args.batch / stats["median"], "samples_per_cpu_s": args.batch / stats["cpu"]["median"],
            "peak_mb": peak_mb, "loss_terms": sorted(terms)}


def main(argv=None) -> None:
    args = parse_args(argv)
    device = bu.setup(args)
    if args.one_arm:
        print("RESULT " + json.dumps(run_arm(args, args.one_arm, device)))
        return
    info = bu.machine_info(device)
    bu.print_header("bench_train " + " ".join(f"--{k}={v}" for k, v in vars(args).items() if v is not None), info)
    rows = []
    child = [sys.executable, __file__, "--device", args.device, "--dtype", args.dtype, "--arch", args.arch,
             "--img-size", args.img_size, "--batch", str(args.batch), "--repeats", str(args.repeats),
             "--head-channels", str(args.head_channels),
             "--posebh-heads", args.posebh_heads]
    child += ["--threads", str(args.threads)] if args.threads else []
    child += ["--iters", str(args.iters)] if args.iters else []
    for arm in args.arms.split(","):
        proc = subprocess.run(child + ["--one-arm", arm], capture_output=True, text=True)
        result = next((line[len("RESULT "):] for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
        if proc.returncode or result is None:
            sys.exit(f"arm {arm} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(result))
        r = rows[-1]
        ratio = ""
        if rows[0]["arm"] == "multihead":
            ratio = (f"  step time vs multihead: {rows[0]['samples_per_s'] / r['samples_per_s']:.2f}x wall, "
                     f"{rows[0]['samples_per_cpu_s'] / r['samples_per_cpu_s']:.2f}x CPU")
        print(f"{arm:13s} b={r['batch']} {r['dtype']}  step wall {bu.fmt(r['step_s'], 1, ' s')}, CPU "
              f"{bu.fmt(r['step_s']['cpu'], 1, ' s')}  {r['samples_per_s']:.2f} samples/s "
              f"({r['samples_per_cpu_s']:.2f} per CPU-s)  peak {r['peak_mb']:.0f} MB{ratio}", flush=True)
    bu.write_json(args.json, {"machine": info, "args": vars(args), "arms": rows})


if __name__ == "__main__":
    main()
