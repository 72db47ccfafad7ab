"""Transfer benchmark on the synthetic zoo: prototypes only vs PoseBH transfer vs baseline transfer (CPU-sized).

    python scripts/bench_transfer.py --out bench-transfer
    python scripts/bench_transfer.py --out bench-transfer-qs --source posebh-quickstart/runs/posebh

With --source, the source model is that checkpoint (e.g. the six-dataset PoseBH model `posebh quickstart`
trains), at its own input size; without it, a small source is trained on the zoo coco set (step 2).

1. `posebh synth` + `prepare-data`: the zoo's coco (source), 3dpw (smpl24) and interhand sets, plus separately
   synthesized 3dpw and interhand sets whose held-out split scores every row (the small sets' own held-out split
   is one or two clips).
2. A small PoseBH source model trained from scratch on the zoo coco set (heads, embedding and prototypes together).
3. Per target: fit-prototypes with the first 10 / 50 / all labelled images (no gradient training), then
   fine-tuning with recipes/zoo-transfer-<target>.yaml (PoseBH protocol, started from the all-images fit) and
   recipes/zoo-transfer-<target>-baseline.yaml (full fine-tuning, no prototypes), both from the same source.
   Both protocols start from the same source so that only the protocol differs.

Metrics on the target's held-out split: 3DPW AP/AR (smpl24 sigmas, no area term) plus PCK@0.2 (tight box) and EPE,
InterHand PCK@0.2/AUC/EPE. Finished fits and runs in `--out` are reused, so a second call only re-scores.
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
from posebh_cli.commands.transfer import finetune_transfer, fit_prototypes_run, transfer_recipe
from posebh_cli.errors import PosebhError
from posebh_cli.inference.evaluate import evaluate_model
from posebh_cli.data.prepared import open_prepared
from posebh_cli.evaluation import evaluate_predictions
from posebh_cli.inference.io import read_image
from posebh_cli.inference.predictor import Predictor, load_checkpoint
from posebh_cli.models.checkpoint import load_model

# 3DPW also gets the hand protocol's PCK@0.2 (tight box) and EPE: at this size AP is often 0 for every row.
TARGETS = {"3dpw": ("AP", "AR", "PCK@0.2", "EPE"), "interhand": ("PCK@0.2", "AUC", "EPE")}
HELD_OUT = {"3dpw": "test", "interhand": "val"}


def make_zoo(out: Path, sizes: dict[str, int], seed: int, image_size: tuple[int, int]) -> dict[str, Path]:
    """Synthesize and prepare each set; a seed whose 3DPW set holds a zero-size box (a figure that left the frame,
    which prepare-data refuses) is replaced by the next seed."""
    prepared = {}
    for name, size in sizes.items():
        folder = out / "prepared" / name
        for attempt in range(seed, seed + 5):
            if folder.exists():
                break
            native = out / f"native-{attempt}"
            if not (native / name).exists():
                synth_zoo(native, seed=attempt, sizes={name: size}, image_size=image_size, datasets=[name],
                          workers=1)
            try:
                prepare_dataset(name, native / name, folder)
            except PosebhError as exc:
                print(f"seed {attempt}: {exc}; trying the next seed")
        prepared[name] = folder
    return prepared


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


def score(checkpoint: Path, data: Path, split: str, target: str, source: str, random_rows: bool = False) -> dict:
    """Metrics of a checkpoint on a split, decoded and cropped as its recipe says (codec, box padding).

    `random_rows` replaces the target's prototypes by random unit vectors first: the chance level of a fit.
    """
    model, recipe = load_checkpoint(checkpoint)
    if random_rows:
        rows = model.prototypes.prototypes[model.num_global_keypoints:]
        rows.copy_(torch.nn.functional.normalize(torch.randn(rows.shape, generator=torch.Generator().manual_seed(0)),
                                                 dim=-1))
    metrics = evaluate_model(model, data, split, target, source=source, recipe=recipe)
    if target == "3dpw":
        metrics.update(box_pck(model, recipe, open_prepared(data), split, target, source))
    return metrics


def box_pck(model, recipe: dict, prepared, split: str, target: str, source: str) -> dict:
    """PCK@0.2 of the tight keypoint box and EPE (the InterHand protocol) of GT-box predictions on a split."""
    predictor = Predictor(model, dataset=target, source=source, recipe=recipe)
    gt = prepared.load_coco(split)
    results = []
    for image in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == image["id"] and not a.get("iscrowd", 0)]
        if not anns:
            continue
        pixels = read_image(prepared.image_root / image["file_name"])
        found = predictor.predict([pixels], [[a["bbox"] for a in anns]])[0]
        results += [{"image_id": image["id"], "category_id": a.get("category_id", 1), "ann_id": a["id"],
                     "keypoints": inst["keypoints"].reshape(-1).tolist(), "score": inst["score"]}
                    for a, inst in zip(anns, found)]
    return evaluate_predictions(gt, results, prepared.skeleton, "interhand")


def pick(metrics: dict, keys: tuple[str, ...]) -> dict:
    return {k: round(float(metrics[k]), 4) for k in keys if k in metrics}


def bench_target(out: Path, target: str, data: Path, heldout: Path, source: Path, img_size: list[int],
                 counts: list[int], batch_size: int) -> dict:
    """Every row is scored on the held-out split of `heldout`, a separately synthesized set of the target."""
    keys = TARGETS[target]
    split = HELD_OUT[target]
    rows: dict = {"fit": {}, "held_out": split,
                  "held_out_instances": len(json.loads((heldout / f"{split}.json").read_text())["annotations"])}
    full_fit = None
    for n in counts:
        start = time.perf_counter()
        fit_dir = out / f"fit-{target}-{n}"
        if not fit_dir.exists():
            fit_prototypes_run(source, data, out=fit_dir, max_images=n, progress=False)
        summary = json.loads((fit_dir / "fit.json").read_text())
        metrics = score(fit_dir, heldout, split, target, "prototypes")
        rows["fit"][n] = {**pick(metrics, keys), "instances": summary["instances"],
                          "seconds": round(time.perf_counter() - start, 1)}
        full_fit = fit_dir
    rows["random"] = pick(score(full_fit, heldout, split, target, "prototypes", random_rows=True), keys)
    overrides = [f"datasets.0.path={data}", f"model.img_size={json.dumps(img_size)}",
                 f"train.batch_size={batch_size}", "train.val_max_images=null", "train.log_every_steps=5"]
    for protocol in ("posebh", "baseline"):
        start = time.perf_counter()
        run = out / f"transfer-{target}-{protocol}"
        init = full_fit if protocol == "posebh" else source  # PoseBH starts from the all-images fit
        recipe = transfer_recipe(target, protocol, zoo=True)
        if not (run / "model.safetensors").exists():
            finetune_transfer(recipe, out=run, overrides=overrides + [f"model.init.path={init}"])
        row = pick(score(run, heldout, split, target, "head"), keys)
        if protocol == "posebh":
            row["prototypes"] = pick(score(run, heldout, split, target, "prototypes"), keys)
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows[protocol] = row
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
        lines.append("| random prototypes (chance) | - | "
                     + " | ".join(f"{rows['random'].get(k, float('nan')):.3f}" for k in keys) + " | - |")
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
    parser.add_argument("--source-images", type=int, default=120, help="training images of the zoo coco set")
    parser.add_argument("--source-epochs", type=int, default=8)
    parser.add_argument("--heldout-images", type=int, default=300,
                        help="size of the separately synthesized evaluation sets (15%% of it is held out)")
    parser.add_argument("--fit-images", default="10,50", help="fit-prototypes subsets (all images are added)")
    parser.add_argument("--img-size", default="64x48", help="model input HxW (with --source: the source's)")
    parser.add_argument("--source", type=Path, default=None,
                        help="a trained PoseBH checkpoint to transfer from instead of training a small one")
    parser.add_argument("--zoo-image-size", default="96x128", help="synthetic image size WIDTHxHEIGHT")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.img_size.split("x"))
    if args.source is not None:
        h, w = load_model(args.source).config.img_size
    zoo_size = tuple(int(v) for v in args.zoo_image_size.split("x"))
    counts = sorted({int(v) for v in args.fit_images.split(",") if v} | {args.images})
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    start = time.perf_counter()
    sizes = {"3dpw": args.images, "interhand": args.images}
    if args.source is None:
        sizes["coco"] = args.source_images
    data = make_zoo(out, sizes, args.seed, zoo_size)
    heldout = make_zoo(out / "heldout", {"3dpw": args.heldout_images, "interhand": args.heldout_images},
                       args.seed + 1000, zoo_size)
    timings["zoo"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    if args.source is None:
        source = train_source(out, data["coco"], [h, w], args.source_epochs, args.batch_size)
        source_eval = pick(evaluate_model(load_model(source), data["coco"], "val", "coco"), ("AP", "AR"))
    else:
        source, source_eval = args.source, {"checkpoint": str(args.source)}
    timings["source"] = round(time.perf_counter() - start, 1)
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "source_coco_val": source_eval, "targets": {}}
    for target in TARGETS:
        start = time.perf_counter()
        rows = bench_target(out, target, data[target], heldout[target], source, [h, w], counts, args.batch_size)
        results["targets"][target] = rows
        timings[target] = round(time.perf_counter() - start, 1)
    results["seconds"] = timings
    results["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                       text=True).stdout.strip()
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"source: {source_eval}")
    print(markdown(results))
    print(f"seconds: {timings}, commit {results['commit']}")


if __name__ == "__main__":
    main()
