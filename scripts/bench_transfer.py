"""Transfer benchmark on the synthetic zoo: prototypes only vs PoseBH transfer vs baseline transfer (CPU-sized).

    python scripts/bench_transfer.py --out bench-transfer

1. `posebh synth` + `prepare-data`: the zoo's coco (source), 3dpw (smpl24) and interhand sets.
2. A small PoseBH source model trained from scratch on the zoo coco set (heads, embedding and prototypes together).
3. Per target: fit-prototypes with the first 10 / 50 / all labelled images (no gradient training), then
   fine-tuning with recipes/zoo-transfer-<target>.yaml (PoseBH protocol, started from the all-images fit) and
   recipes/zoo-transfer-<target>-baseline.yaml (full fine-tuning, no prototypes), both from the same source.
   Both protocols start from the same source so that only the protocol differs.

Metrics on the target's held-out split: 3DPW AP/AR (smpl24 sigmas, no area term), InterHand PCK@0.2/AUC/EPE.
Writes `<out>/results.json` and prints a markdown table. Everything runs in fp32 on the CPU.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import torch
import yaml

from posebh_cli.data.prepare import prepare_dataset
from posebh_cli.data.synth import synth_zoo
from posebh_cli.engine.trainer import train_mdt
from posebh_cli.engine.transfer import find_recipe, finetune_transfer, fit_prototypes_run
from posebh_cli.inference.evaluate import evaluate_model
from posebh_cli.models.checkpoint import load_model

TARGETS = {"3dpw": ("AP", "AR"), "interhand": ("PCK@0.2", "AUC", "EPE")}


def make_zoo(out: Path, source_images: int, target_images: int, seed: int) -> dict[str, Path]:
    sizes = {"coco": source_images, "3dpw": target_images, "interhand": target_images}
    native, prepared = out / "native", out / "prepared"
    if not native.exists():
        synth_zoo(native, seed=seed, sizes=sizes, image_size=(96, 128), datasets=list(sizes), workers=1)
    for name in sizes:
        if not (prepared / name).exists():
            prepare_dataset(name, native / name, prepared / name)
    return {name: prepared / name for name in sizes}


def train_source(out: Path, coco: Path, img_size: list[int], epochs: int, batch_size: int) -> Path:
    """A PoseBH model trained from scratch on zoo coco: heads, embedding and prototypes in one stage."""
    run = out / "source"
    if (run / "model.safetensors").exists():
        return run
    recipe = {
        "name": "bench-transfer-source", "method": "posebh",
        "model": {"arch": "vit_pico", "img_size": img_size, "embed_dim": 64, "prototypes_per_keypoint": 3},
        "datasets": [{"name": "coco", "path": str(coco), "codec": "msra", "val_split": None}],
        "train": {"batch_size": batch_size, "epochs": epochs, "lr": 1e-3, "weight_decay": 0.05, "warmup_iters": 20,
                  "val_every_epochs": 0, "log_every_steps": 10, "checkpoint_every_epochs": 0},
        "stages": [{"name": "all", "epochs": [0, epochs], "trainable": ["backbone", "heads", "embedding"],
                    "prototypes": "update", "losses": ["heatmap", "proto", "proto_heatmap"]}],
        # a short run: a faster momentum so the source prototypes leave their random start
        "method_config": {"momentum": 0.99},
    }
    path = out / "source.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return train_mdt(path, out=run)


def pick(metrics: dict, keys: tuple[str, ...]) -> dict:
    return {k: round(float(metrics[k]), 4) for k in keys if k in metrics}


def bench_target(out: Path, target: str, data: Path, source: Path, img_size: list[int], counts: list[int],
                 batch_size: int) -> dict:
    keys = TARGETS[target]
    rows: dict = {"fit": {}}
    full_fit = None
    for n in counts:
        start = time.perf_counter()
        fit_dir = out / f"fit-{target}-{n}"
        if not fit_dir.exists():
            fit_prototypes_run(source, data, out=fit_dir, max_images=n, progress=False)
        summary = json.loads((fit_dir / "fit.json").read_text())
        rows["fit"][n] = {**pick(summary["metrics"], keys), "instances": summary["instances"],
                          "seconds": round(time.perf_counter() - start, 1)}
        full_fit = fit_dir
    overrides = [f"datasets.0.path={data}", f"model.img_size={json.dumps(img_size)}",
                 f"train.batch_size={batch_size}", "train.val_max_images=null", "train.log_every_steps=5"]
    for protocol in ("posebh", "baseline"):
        start = time.perf_counter()
        run = out / f"transfer-{target}-{protocol}"
        init = full_fit if protocol == "posebh" else source  # PoseBH starts from the all-images fit
        recipe = find_recipe(target, protocol, zoo=True)
        if not (run / "model.safetensors").exists():
            finetune_transfer(recipe, out=run, overrides=overrides + [f"model.init.path={init}"])
        model = load_model(run)
        held_out = yaml.safe_load((run / "recipe.yaml").read_text())["datasets"][0]["val_split"]
        row = pick(evaluate_model(model, data, held_out, target), keys)
        if protocol == "posebh":
            row["prototypes"] = pick(evaluate_model(model, data, held_out, target, source="prototypes"), keys)
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows[protocol] = row
        rows["held_out"] = held_out
        rows["held_out_instances"] = len(json.loads((data / f"{held_out}.json").read_text())["annotations"])
    return rows


def markdown(results: dict) -> str:
    lines = []
    for target, keys in TARGETS.items():
        rows = results["targets"][target]
        head = " | ".join(keys)
        lines += [f"**{target}** ({rows['held_out']} split, {rows['held_out_instances']} instances)", "",
                  f"| method | labelled images | {head} | seconds |", "|---|---|" + "---|" * len(keys) + "---|"]
        for n, row in rows["fit"].items():
            lines.append(f"| prototypes only (fit-prototypes) | {n} | "
                         + " | ".join(f"{row.get(k, float('nan')):.3f}" for k in keys) + f" | {row['seconds']} |")
        n_all = list(rows["fit"])[-1]
        for protocol, label in (("posebh", "PoseBH transfer (head)"), ("baseline", "baseline transfer (head)")):
            row = rows[protocol]
            lines.append(f"| {label} | {n_all} | " + " | ".join(f"{row.get(k, float('nan')):.3f}" for k in keys)
                         + f" | {row['seconds']} |")
        proto = rows["posebh"]["prototypes"]
        lines.append(f"| PoseBH transfer (its prototypes) | {n_all} | "
                     + " | ".join(f"{proto.get(k, float('nan')):.3f}" for k in keys) + " | - |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-transfer"))
    parser.add_argument("--images", type=int, default=100, help="training images of each target set")
    parser.add_argument("--source-images", type=int, default=100, help="training images of the zoo coco set")
    parser.add_argument("--source-epochs", type=int, default=4)
    parser.add_argument("--fit-images", default="10,50", help="fit-prototypes subsets (all images are added)")
    parser.add_argument("--img-size", default="64x48", help="model input HxW")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(2)
    h, w = (int(v) for v in args.img_size.split("x"))
    counts = sorted({int(v) for v in args.fit_images.split(",") if v} | {args.images})
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    start = time.perf_counter()
    data = make_zoo(out, args.source_images, args.images, args.seed)
    timings["zoo"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    source = train_source(out, data["coco"], [h, w], args.source_epochs, args.batch_size)
    timings["source"] = round(time.perf_counter() - start, 1)
    source_eval = pick(evaluate_model(load_model(source), data["coco"], "val", "coco"), ("AP", "AR"))
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "source_coco_val": source_eval, "targets": {}}
    for target in TARGETS:
        start = time.perf_counter()
        rows = bench_target(out, target, data[target], source, [h, w], counts, args.batch_size)
        results["targets"][target] = rows
        timings[target] = round(time.perf_counter() - start, 1)
    results["seconds"] = timings
    results["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                       text=True).stdout.strip()
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"source (zoo coco val): {source_eval}")
    print(markdown(results))
    print(f"seconds: {timings}, commit {results['commit']}")


if __name__ == "__main__":
    main()
