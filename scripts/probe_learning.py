"""Learning per CPU-minute on the zoo: a vit_pico trained for a fixed number of steps on one prepared zoo dataset,
with one variant switched (loss, heatmap stride, input size and patch size), scored on its val split.

    posebh synth --out zoo --seed 1 --datasets coco && posebh prepare-data coco --src zoo/coco --out prep/coco
    python scripts/probe_learning.py --data prep/coco --steps 200 --loss mse            # the landed setting
    python scripts/probe_learning.py --data prep/coco --steps 200 --loss ce --tau 0.1   # spatial-softmax CE
    python scripts/probe_learning.py --data prep/coco --steps 400 --img 96x128 --patch 8 --stride 4 --loss ce
    python scripts/probe_learning.py --data prep/coco --steps 300 --overfit 16   # can it memorise 16 fixed crops?

Prints one JSON line: training seconds, val median keypoint error as a fraction of the crop's longer side,
PCK@0.05 of it, and COCO AP/AP50/AR (GT boxes, flip test). The loop is deliberately plain (AdamW, 30-step warmup,
cosine decay, grad clip 1) so the variants differ in one thing only; it is a probe, not the trainer.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/probe_learning.py` from a checkout
    sys.path.insert(0, str(REPO))

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from posebh_cli.data.codecs import make_codec
from posebh_cli.data.dataset import AugmentConfig, TopDownDataset, collate
from posebh_cli.data.prepared import open_prepared
from posebh_cli.inference.evaluate import evaluate_model
from posebh_cli.models.heads import _init_small
from posebh_cli.models.pose_model import PoseModel
from posebh_cli.models.vit import ARCHS, ViT


def build_model(args, skeleton, width: int, height: int) -> PoseModel:
    model = PoseModel(args.arch, [skeleton.name], [skeleton], img_size=(height, width), head_channels=args.channels)
    if args.patch != 16:
        size = ARCHS[args.arch]
        model.backbone = ViT(img_size=(height, width), patch_size=args.patch, embed_dim=size.embed_dim,
                             depth=size.depth, num_heads=size.num_heads)
    if args.stride == args.patch // 2:  # one 2x deconv instead of two
        head = model.heads[0]
        head.deconv_layers = nn.Sequential(*list(head.deconv_layers.children())[:3])
        _init_small(head)
    return model


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, args) -> tuple[torch.Tensor, float]:
    """MSE (JointsMSE with target weights), spatial-softmax cross-entropy against the normalised target, or both."""
    mse = (((pred - target) * weight[..., None, None]) ** 2).mean()
    loss = mse if "mse" in args.loss else pred.new_zeros(())
    if "ce" in args.loss:
        log_p = F.log_softmax(pred.flatten(2) / args.tau, dim=-1)
        t = target.flatten(2)
        t = t / t.sum(-1, keepdim=True).clamp(min=1e-6)
        ce = -(t * log_p).sum(-1)
        loss = loss + args.ce_weight * (ce * weight).sum() / weight.sum().clamp(min=1)
    return loss, mse.item()


def median_error(model, dataset: TopDownDataset, codec, longer_side: int) -> tuple[float, float]:
    model.eval()
    errors = []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=64, collate_fn=collate):
            maps = model(batch["images"], batch["dataset_idx"])["heatmaps"][0]
            xy, _ = codec.decode(maps)
            keypoints = batch["keypoints"][:, :maps.shape[1]]
            visible = keypoints[..., 2] > 0
            d = torch.linalg.norm(torch.as_tensor(xy) - keypoints[..., :2], dim=-1) / longer_side
            errors.append(d[visible])
    errors = torch.cat(errors)
    return errors.median().item(), (errors < 0.05).float().mean().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a prepared dataset folder (train and val splits)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--img", default="192x256", help="model input WIDTHxHEIGHT")
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--stride", type=int, default=4, help="heatmap stride (patch/4: two deconvs, patch/2: one)")
    p.add_argument("--loss", default="mse", choices=["mse", "ce", "mse+ce"])
    p.add_argument("--ce-weight", type=float, default=1.0)
    p.add_argument("--tau", type=float, default=0.1, help="softmax temperature of the CE loss")
    p.add_argument("--sigma", type=float, default=2.0)
    p.add_argument("--arch", default="vit_pico")
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overfit", type=int, default=0, metavar="N",
                   help="train on the first N training crops, unaugmented, and score them too (optimisation check)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    width, height = map(int, args.img.split("x"))
    ds = open_prepared(args.data)
    model = build_model(args, ds.skeleton, width, height)
    codec = make_codec("udp", input_size=(width, height), heatmap_size=(width // args.stride, height // args.stride),
                       sigma=args.sigma)
    if args.overfit:  # a healthy loop memorises a few fixed crops fast; if not, the fault is not the data
        train = TopDownDataset(ds.instances("train")[:args.overfit], ds.skeleton, codec, train=False, dataset_idx=0,
                               input_size=(width, height))
    else:
        train = TopDownDataset(ds.instances("train"), ds.skeleton, codec, train=True, dataset_idx=0,
                               input_size=(width, height), aug=AugmentConfig(), seed=args.seed)
    loader = DataLoader(train, batch_size=min(args.batch, len(train)), shuffle=True, num_workers=1,
                        collate_fn=collate, drop_last=True, persistent_workers=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    start, step, mses = time.time(), 0, []
    while step < args.steps:
        for batch in loader:
            if step >= args.steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = args.lr * min(1.0, (step + 1) / 30) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
            pred = model(batch["images"], batch["dataset_idx"])["heatmaps"][0]
            k = pred.shape[1]
            loss, mse = heatmap_loss(pred, batch["heatmaps"][:, :k], batch["target_weight"][:, :k].float(), args)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            mses.append(mse)
            step += 1
            if step % 50 == 0:
                print(f"step {step} mse {np.mean(mses[-50:]):.2e} loss {loss.item():.3f} {time.time() - start:.0f}s",
                      flush=True)
    train_s = time.time() - start
    val = TopDownDataset(ds.instances("val"), ds.skeleton, codec, train=False, dataset_idx=0,
                         input_size=(width, height))
    median, pck05 = median_error(model, val, codec, max(width, height))
    fitted = {}
    if args.overfit:
        train_median, train_pck05 = median_error(model, train, codec, max(width, height))
        fitted = {"train_median_error": round(train_median, 4), "train_pck05": round(train_pck05, 3)}
    metrics = evaluate_model(model, ds, "val", ds.skeleton.name, flip=True)
    print(json.dumps({"args": vars(args), "train_s": round(train_s), "median_error": round(median, 4),
                      "pck05": round(pck05, 3), **fitted, **{k: metrics.get(k) for k in ("AP", "AP50", "AR")}}))


if __name__ == "__main__":
    main()
