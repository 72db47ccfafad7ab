"""Multi-dataset benchmark on the synthetic skeleton zoo: the paper's Table 5 ablation on a CPU.

    python scripts/bench_mdt.py --out runs/bench               # default size, 3 seeds, CPU (see docs/benchmarks.md)
    python scripts/bench_mdt.py --out runs/bench-gpu --device cuda --size 4 --base-epochs 40 --epochs 20 --arch vit_small
    python scripts/bench_mdt.py --out runs/bench-zb --base zoo-base --eval-zoo-seed 3000   # arms from the shipped base

1. Writes a zoo of the six MDT datasets (COCO, AIC, MPII, AP-10K, APT-36K, COCO-WholeBody) whose sizes keep the
   real imbalance (large COCO- and AIC-like sets, small animal and whole-body sets) and prepares each.
2. Trains the multi-head baseline once (recipes/zoo-bench-base.yaml; the shared starting point, as the paper starts
   every variant from the same ViTPose++ checkpoint), or with --base takes a trained one (zoo-base, the zoo's
   ViTPose++ shipped in the package), then, per seed, continues it for the same number of
   epochs with every arm: `multihead` (more of the same), `posebh-nocss` (prototypes + cluster loss, the
   paper's "+L_Proto" row), `posebh` (+ cross-type self-supervision), with --with-acae the ACAE consistency
   method (its ACAE fitted on the base run's heads first) and with --with-distill the unified-skeleton
   distillation (a coco_mpii21 student started from the base run's COCO model, taught by its COCO and MPII heads,
   trained on COCO + MPII for as many samples as the other arms see).
3. Scores every run on each dataset's val split (AP, PCKh for MPII) and cross-skeleton (each head on the other
   datasets of its body plan, through the zoo's hidden ground truth; posebh_cli/evaluation/zoo.py). The distill student
   is scored on the datasets its union covers (COCO, MPII), cross-skeleton as COCO on MPII images and back, and
   on the four points COCO does not label, on COCO images (seed 003's Halpe-style protocol).
4. Writes <out>/results.json (every run) and <out>/results.md (mean ± std over seeds).

Re-running with the same --out skips what is done (zoo, prepared sets, finished runs), so a killed benchmark
resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "posebh_cli" / "recipes"
MDT_DATASETS = ("coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody")
# Training images per dataset at --size 1: the real imbalance, shrunk (COCO 150k, AIC 210k, MPII 22k,
# AP-10K 7k, APT-36K 36k frames of few videos, COCO-WholeBody as a small set as in the ablation's spirit).
ZOO_SIZES = {"coco": 450, "aic": 650, "mpii": 200, "ap10k": 100, "apt36k": 150, "coco_wholebody": 120}
ARMS = {"multihead": "zoo-bench-multihead.yaml", "posebh-nocss": "zoo-bench-posebh-nocss.yaml",
        "posebh": "zoo-bench-posebh.yaml"}
MAIN_METRICS = ("AP", "PCKh")
EVAL_SPLIT = "val"   # of the evaluation zoo, whose images no run trains on


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="runs/bench", help="output folder (zoo, prepared data, runs, results)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    p.add_argument("--zoo-seed", type=int, default=0, help="seed of the synthetic zoo (shared by all runs)")
    p.add_argument("--size", type=float, default=0.25, help="zoo size factor on the per-dataset image counts")
    p.add_argument("--eval-images", type=int, default=20,
                   help="val images per dataset, from an independent evaluation zoo (the training zoo's own val "
                        "split holds only 15%% of its small training sets)")
    p.add_argument("--image-size", default="192x144", help="zoo image size WIDTHxHEIGHT")
    p.add_argument("--eval-zoo-seed", type=int, default=None,
                   help="seed of the evaluation zoo (default: --zoo-seed + 1000); it must differ from the seed of "
                        "any zoo the base trained on")
    p.add_argument("--base", default=None,
                   help="start every arm from this model instead of training the base run: a model name "
                        "(zoo-base: the zoo's ViTPose++ shipped in the package) or a run folder")
    p.add_argument("--base-epochs", type=int, default=30, help="epochs of the multi-head base run")
    p.add_argument("--base-seed", type=int, default=0, help="training seed of the base run")
    p.add_argument("--epochs", type=int, default=3, help="epochs of every arm after the base run")
    p.add_argument("--arch", default="vit_pico", help="backbone (vit_pico, vit_tiny, vit_small, vit_base, ...)")
    p.add_argument("--img-size", default=None,
                   help="model input HEIGHTxWIDTH (default: the --base model's, else 256x192; at 128x96 a pico "
                        "model plateaus early)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=1, help="data-loader workers")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--precision", choices=["no", "bf16"], default=None,
                   help="train.mixed_precision of every run (default: bf16 on cuda, no on the CPU; bf16 autocast "
                        "gives about 1.5x the samples per CPU-second on a CPU with AVX-512 BF16)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 on a shared CPU: oversubscribed threads make steps 5-10x slower)")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), help="arms to run")
    p.add_argument("--with-acae", action="store_true", help="add the ACAE arm (fit-acae on the base, then acae)")
    p.add_argument("--acae-steps", type=int, default=1000, help="Adam steps of the ACAE fit")
    p.add_argument("--acae-min-score", type=float, default=0.2,
                   help="fit-acae --min-score (lower it for a weak base run)")
    p.add_argument("--with-distill", action="store_true",
                   help="add the distill arm (coco_mpii21 student taught by the base run's COCO and MPII heads)")
    p.add_argument("--extra-arm-seeds", type=int, nargs="+", default=None,
                   help="seeds of the acae and distill arms, a subset of --seeds (default: all of them)")
    return p.parse_args(argv)


# ------------------------------------------------------------------ data
def build_data(out: Path, sizes: dict[str, int], zoo_seed: int, image_size: tuple[int, int],
               tag: str = "") -> dict[str, Path]:
    """A zoo under out/zoo<tag> and its prepared datasets under out/prepared<tag>; what exists is kept."""
    from posebh_cli.data.prepare import prepare_dataset
    from posebh_cli.data.synth import synth_zoo

    zoo, prepared = out / f"zoo{tag}", out / f"prepared{tag}"
    missing = [n for n in MDT_DATASETS if not (zoo / n).is_dir()]
    if missing:
        synth_zoo(zoo, seed=zoo_seed, sizes={n: sizes[n] for n in missing}, image_size=image_size, datasets=missing)
    for name in MDT_DATASETS:
        if not (prepared / name / "meta.yaml").is_file():
            prepare_dataset(name, zoo / name, prepared / name)
    return {name: prepared / name for name in MDT_DATASETS}


# ------------------------------------------------------------------ recipes
def make_recipe(template: str, name: str, data: dict[str, Path], args, seed: int, epochs: int,
                init: Path | None) -> dict:
    from posebh_cli.commands.quickstart import scale_stages

    raw = yaml.safe_load((RECIPES / template).read_text())
    raw["name"] = name
    if args.img_size:
        h, w = (int(v) for v in args.img_size.lower().split("x"))
    elif init is not None:   # an arm continues its base at the base's input size
        h, w = json.loads((Path(init) / "model.json").read_text())["config"]["img_size"]
    else:
        h, w = 256, 192
    raw["model"].update(arch=args.arch, img_size=[h, w])
    raw["model"]["init"] = {"kind": "ours", "path": str(init)} if init else {"kind": "none"}
    for ds in raw["datasets"]:
        ds["path"] = str(data[ds["name"]])
    raw["stages"] = scale_stages(raw["stages"], raw["train"]["epochs"], epochs)
    raw["train"].update(epochs=epochs, seed=seed, batch_size=args.batch_size, num_workers=args.workers,
                        mixed_precision=args.precision or ("bf16" if args.device.startswith("cuda") else "no"))
    return raw


# ------------------------------------------------------------------ runs
def resolve_base(name_or_path: str, eval_seed: int) -> Path:
    """The --base model's folder; refused when its card says it trained on the evaluation zoo's seed."""
    from posebh_cli.models.store import resolve_checkpoint

    base = resolve_checkpoint(name_or_path)
    card = base / "card.json" if base.is_dir() else None
    trained_on = json.loads(card.read_text()).get("train_zoo", {}).get("seed") if card and card.is_file() else None
    if trained_on == eval_seed:
        raise SystemExit(f"--base {name_or_path}: it trained on the zoo of seed {trained_on}, the evaluation zoo's "
                         f"seed; pass another --eval-zoo-seed")
    return base


def train(recipe: dict, run_dir: Path) -> Path:
    """Train a recipe into run_dir (skipped when run_dir already holds a finished model)."""
    from posebh_cli.engine.trainer import train_mdt

    if (run_dir / "model.safetensors").is_file():
        return run_dir
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    recipe_file = run_dir.parent / f"{run_dir.name}.recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe, sort_keys=False))
    resume = (run_dir / "state").is_dir()
    return train_mdt(recipe_file, run_dir, resume=resume)


def score(run_dir: Path, data: dict[str, Path], args, cache: Path | None = None) -> dict:
    """Per-dataset metrics and cross-skeleton APs of a finished run on the evaluation zoo's val split (cached in
    `cache`, by default run_dir/scores.json)."""
    from posebh_cli.inference.evaluate import evaluate_model
    from posebh_cli.inference.predictor import load_checkpoint
    from posebh_cli.inference.zoo import score_extra_points
    from posebh_cli.inference.zoo import cross_skeleton_scores

    cache = cache or run_dir / "scores.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    model, recipe = load_checkpoint(run_dir, device=device)
    # the distill student has one union head, read as each dataset of its recipe; the other arms have one head each
    union_student = model.datasets != [d["name"] for d in recipe["datasets"]]
    heads = [d["name"] for d in recipe["datasets"]] if union_student else None
    per_dataset = {}
    for name in MDT_DATASETS:
        if heads is not None and name not in heads:
            per_dataset[name] = None
            continue
        metrics = evaluate_model(model, data[name], EVAL_SPLIT, name, batch_size=64, device=device, recipe=recipe)
        value = next((metrics[k] for k in MAIN_METRICS if k in metrics), -1.0)
        per_dataset[name] = value if value >= 0 else None   # -1: the split has no annotation
    # no flip test here: it would double the cost of the 13 pairs, and every arm is scored the same way
    cross = {pair: ap for pair, ap in cross_skeleton_scores(model, data, EVAL_SPLIT, flip=False, batch_size=64,
                                                            device=device, heads=heads).items() if ap >= 0}
    scored = [v for v in per_dataset.values() if v is not None]
    result = {"datasets": per_dataset, "mean": statistics.fmean(scored) if scored else None, "cross": cross,
              "cross_mean": statistics.fmean(cross.values()) if cross else None}
    if union_student:
        result["extra_points"] = score_extra_points(model, data["coco"], EVAL_SPLIT, flip=False, batch_size=64,
                                                    device=device)["AP"]
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(cache)
    return result


def fit_acae(base: Path, base_recipe: Path, out: Path, args) -> Path:
    """The ACAE of the base run's heads (`posebh fit-acae`), for the acae arm; kept when already there."""
    from posebh_cli.commands.fit_acae import fit_acae_command

    if not (out / "acae.json").is_file():
        fit_acae_command(base, base_recipe, out, steps=args.acae_steps, max_instances=500,
                         min_score=args.acae_min_score,
                         device="cuda" if args.device.startswith("cuda") else "cpu")
    return out


def split_coco_model(base: Path, out: Path) -> Path:
    """The base run's COCO model with its expert merged (`convert-checkpoint --split coco`): the distill
    student's starting point, since the student has no experts."""
    from posebh_cli.models.checkpoint import convert_checkpoint

    if not (out / "model.safetensors").is_file():
        convert_checkpoint(base, out, split="coco")
    return out


def distill_recipe(template: str, data: dict[str, Path], args, seed: int, base: Path, student_init: Path) -> dict:
    """The distill arm: teachers are the base run's heads; epochs stretched so the student, which trains on COCO +
    MPII only, sees as many samples as an arm that trains on all six datasets."""
    from posebh_cli.data.prepared import open_prepared

    count = {n: len(open_prepared(data[n]).instances("train")) for n in MDT_DATASETS}
    epochs = max(1, round(args.epochs * sum(count.values()) / (count["coco"] + count["mpii"])))
    recipe = make_recipe(template, f"bench-distill-s{seed}", data, args, seed, epochs, student_init)
    recipe["method_config"]["teachers"] = {"coco": str(base), "mpii": str(base)}
    return recipe


# ------------------------------------------------------------------ report
def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"


def summarize(results: dict[str, dict[int, dict]]) -> str:
    """Markdown tables: per-dataset main metric, their mean, cross-skeleton AP (mean ± std over seeds, in %)."""
    arms = list(results)
    lines = ["| arm | " + " | ".join(MDT_DATASETS) + " | mean of scored | coco+mpii mean | cross-skeleton mean "
             "| seeds |", "|---" * (len(MDT_DATASETS) + 5) + "|"]
    for arm in arms:
        runs = list(results[arm].values())
        cells = [_mean_std([r["datasets"][d] for r in runs if r["datasets"][d] is not None]) for d in MDT_DATASETS]
        cross = [r["cross_mean"] for r in runs if r["cross_mean"] is not None]
        means = [r["mean"] for r in runs if r["mean"] is not None]
        # the one mean every arm has, the distill student included (its union covers COCO and MPII only)
        pair = [statistics.fmean((r["datasets"]["coco"], r["datasets"]["mpii"])) for r in runs
                if r["datasets"]["coco"] is not None and r["datasets"]["mpii"] is not None]
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {_mean_std(means)} | {_mean_std(pair)} | "
                     f"{_mean_std(cross)} | {len(runs)} |")
    extra = {arm: [r["extra_points"] for r in results[arm].values() if "extra_points" in r] for arm in arms}
    for arm, values in extra.items():
        if values:
            lines += ["", f"{arm}: AP of the union points COCO does not label (pelvis, thorax, upper neck, head top) "
                          f"on COCO images, against the zoo's hidden points: {_mean_std(values)}"]
    pairs = sorted({p for arm in arms for r in results[arm].values() for p in r["cross"]})
    if pairs:
        lines += ["", "Cross-skeleton AP (head@images of another dataset, scored against the zoo's hidden points):",
                  "", "| pair | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
        for pair in pairs:
            cells = [_mean_std([r["cross"][pair] for r in results[arm].values() if pair in r["cross"]])
                     for arm in arms]
            lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from posebh_cli.data.synth.spec import HELD_OUT_FRACTION

    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "1"
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    w, h = (int(v) for v in args.image_size.lower().split("x"))
    started = time.perf_counter()
    sizes = {n: max(1, round(ZOO_SIZES[n] * args.size)) for n in MDT_DATASETS}
    data = build_data(out, sizes, args.zoo_seed, (w, h))
    # synth makes val 15% of train: ask for the train size that gives --eval-images val images
    eval_sizes = {n: math.ceil(args.eval_images / HELD_OUT_FRACTION) for n in MDT_DATASETS}
    eval_seed = args.zoo_seed + 1000 if args.eval_zoo_seed is None else args.eval_zoo_seed
    given_base = resolve_base(args.base, eval_seed) if args.base else None
    eval_data = build_data(out, eval_sizes, eval_seed, (w, h), "-eval")
    arms = {arm: ARMS[arm] for arm in args.arms}
    if args.with_acae:
        arms["acae"] = "zoo-bench-acae.yaml"
    if args.with_distill:
        arms["distill"] = "zoo-bench-distill.yaml"

    results: dict[str, dict[int, dict]] = {"base": {}, **{arm: {} for arm in arms}}
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    base_recipe = make_recipe("zoo-bench-base.yaml", "bench-base", data, args, args.base_seed, args.base_epochs, None)
    if given_base is None:
        base = train(base_recipe, out / "runs" / "base")
        base_recipe_file, scores_file = base / "recipe.yaml", None
    else:  # its recipe names the data fit-acae reads; its scores stay out of the model's own folder
        base, base_recipe_file = given_base, out / "runs" / "base.recipe.yaml"
        base_recipe_file.parent.mkdir(parents=True, exist_ok=True)
        base_recipe_file.write_text(yaml.safe_dump(base_recipe, sort_keys=False))
        scores_file = out / "runs" / "base.scores.json"
    results["base"] = {args.base_seed: score(base, eval_data, args, cache=scores_file)}
    timings["base"] = time.perf_counter() - t0
    acae = fit_acae(base, base_recipe_file, out / "runs" / "acae", args) if args.with_acae else None
    student_init = split_coco_model(base, out / "runs" / "base-coco") if args.with_distill else None
    for seed in args.seeds:
        runs = out / "runs" / f"s{seed}"
        for arm, template in arms.items():
            if arm in ("acae", "distill") and args.extra_arm_seeds is not None and seed not in args.extra_arm_seeds:
                continue
            t0 = time.perf_counter()
            if arm == "distill":
                recipe = distill_recipe(template, data, args, seed, base, student_init)
            else:
                recipe = make_recipe(template, f"bench-{arm}-s{seed}", data, args, seed, args.epochs, base)
            if arm == "acae":
                recipe["method_config"]["acae"] = str(acae)
            run_dir = train(recipe, runs / arm)
            results[arm][seed] = score(run_dir, eval_data, args)
            timings[f"s{seed}/{arm}"] = time.perf_counter() - t0
            print(f"seed {seed} {arm}: {results[arm][seed]}  ({time.perf_counter() - started:.0f} s so far)",
                  flush=True)
            # after every run, so a benchmark stopped early still reports what it finished
            table = write_report(out, args, sizes, results, timings, time.perf_counter() - started)
    print(table)
    print(f"wrote {out / 'results.json'} and {out / 'results.md'} in {time.perf_counter() - started:.0f} s")


def write_report(out: Path, args, sizes: dict, results: dict, timings: dict, seconds: float) -> str:
    report = {"args": vars(args), "zoo_sizes": sizes,
              "results": {arm: {str(s): r for s, r in res.items()} for arm, res in results.items()},
              "seconds": timings, "total_seconds": seconds}
    write_atomic(out / "results.json", json.dumps(report, indent=1))
    table = summarize({arm: res for arm, res in results.items() if res})
    write_atomic(out / "results.md", table)
    return table


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
