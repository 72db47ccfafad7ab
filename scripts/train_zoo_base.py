"""Reproduce the shipped zoo base model (`zoo-base`): the zoo's ViTPose++, i.e. the multi-head baseline trained
with the bundled `zoo-base` recipe on the six MDT datasets of the synthetic zoo.

    python scripts/train_zoo_base.py --work runs/zoo-base-work            # synth + prepare + train (resumes)
    python scripts/train_zoo_base.py --work runs/zoo-base-work --ship     # + score on a fresh zoo, write the
                                                                          #   package's posebh_cli/weights/zoo-base

Every step is the command a user would type (`posebh synth`, `posebh prepare-data`, `posebh train-mdt`), run in
`--work`; a step whose output exists is skipped and an interrupted training continues with `--resume`, so the
script can be run again after any interruption. `--ship` scores the final model on a zoo synthesized with a
seed never used for training (val split, GT boxes, flip test) and writes fp16 weights, model.json and a card.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python scripts/train_zoo_base.py` from a checkout
    sys.path.insert(0, str(REPO))

MDT_DATASETS = ("coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody")
TRAIN_SEED, TRAIN_SCALE = 1000, 3.0       # the zoo the model is trained on
EVAL_SEED, EVAL_SCALE = 2000, 0.5         # the held-out zoo of the card (never used for training)
RECIPE = "zoo-base"
SHIP_DIR = REPO / "posebh_cli" / "weights" / "zoo-base"


def posebh(*args: str, cwd: Path) -> None:
    command = [sys.executable, "-m", "posebh_cli.cli", *args]
    print("$ posebh " + " ".join(args), flush=True)
    subprocess.run(command, cwd=cwd, check=True)


def make_zoo(work: Path, name: str, seed: int, scale: float) -> Path:
    """Synthesize and prepare the six MDT datasets under work/name (skipped where they exist)."""
    native, prepared = work / name / "native", work / name / "prepared"
    if not all((native / d).is_dir() for d in MDT_DATASETS):
        posebh("synth", "--out", str(native), "--seed", str(seed), "--scale", str(scale),
               "--datasets", ",".join(MDT_DATASETS), cwd=work)
    for d in MDT_DATASETS:
        if not (prepared / d / "meta.yaml").is_file():
            posebh("prepare-data", d, "--src", str(native / d), "--out", str(prepared / d), cwd=work)
    return prepared


def train(work: Path, threads: int | None) -> Path:
    """`posebh train-mdt --recipe zoo-base` with the recipe's dataset paths (relative: zoo-base/prepared/<d>).

    The run is finished when model.json exists and no training state is left; otherwise it (re)starts or resumes.
    """
    run = work / "runs" / "zoo-base"
    has_state = (run / "state").is_dir() or (run / "state.old").is_dir()
    if (run / "model.json").is_file() and not has_state:
        return run
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    posebh("train-mdt", "--recipe", RECIPE, "--out", str(run), *(["--resume"] if has_state else []), cwd=work)
    return run


def training_figures(run: Path, batch_size: int = 32) -> dict:
    """Steps, samples seen and training hours from the run's metrics.jsonl (one line per logged window)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    logged = [r for r in records if r.get("samples_per_s")]
    seconds, previous = 0.0, 0
    for r in logged:  # each line covers the steps since the previous one at its logged rate
        seconds += (r["step"] - previous) * batch_size / r["samples_per_s"]
        previous = r["step"]
    return {"steps": previous, "samples_seen": previous * batch_size, "train_hours": round(seconds / 3600, 2)}


def score(run: Path, prepared: Path) -> dict[str, dict]:
    """Every MDT dataset's val metrics with its own head: GT boxes, flip test."""
    from posebh_cli.data.prepared import open_prepared
    from posebh_cli.inference.evaluate import evaluate_model
    model, recipe = model_of_run(run)
    return {d: evaluate_model(model, open_prepared(prepared / d), "val", d, flip=True, recipe=recipe)
            for d in MDT_DATASETS}


def model_of_run(run: Path):
    """(model, recipe dict): the run's final model, or for a run still training its last complete saved state."""
    from safetensors.torch import load_file

    from posebh_cli.engine.state import find_state
    from posebh_cli.files import read_yaml
    from posebh_cli.models.build import build_model
    from posebh_cli.models.checkpoint import load_model
    from posebh_cli.models.pose_model import load_state_strict
    from posebh_cli.recipe import recipe_from_dict
    from posebh_cli.skeletons import load_skeleton

    if (run / "model.json").is_file():
        return load_model(run), json.loads((run / "model.json").read_text()).get("recipe")
    state = find_state(run / "state")
    if state is None:
        raise SystemExit(f"{run}: neither a final model nor a complete training state")
    raw = read_yaml(run / "recipe.yaml", "recipe file")
    recipe = recipe_from_dict(raw, check_paths=False)
    model = build_model(recipe, [load_skeleton(d.name) for d in recipe.datasets], with_embedding=False)
    load_state_strict(model, load_file(str(state / "model.safetensors")), state / "model.safetensors")
    return model.eval(), recipe.to_dict()


def ship(run: Path, scores: dict, figures: dict, out: Path = SHIP_DIR) -> Path:
    """fp16 weights + model.json + README.md card into the package (weights are cast back to fp32 on load)."""
    import torch
    from safetensors.torch import save_file

    from posebh_cli.files import atomic_file, write_json
    from posebh_cli.models.checkpoint import checkpoint_meta

    model, recipe = model_of_run(run)
    meta = {"recipe": recipe, "extra": {}}
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    card = {"name": "zoo-base", "recipe": RECIPE, "train_zoo": {"seed": TRAIN_SEED, "scale": TRAIN_SCALE},
            "eval_zoo": {"seed": EVAL_SEED, "scale": EVAL_SCALE, "split": "val", "boxes": "ground truth",
                         "flip_test": True},
            "commit": _commit(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
            **figures, "scores": scores}
    meta["extra"] = dict(meta.get("extra") or {}, card=card)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(checkpoint_meta(model, meta.get("recipe"), meta["extra"]), indent=2)
    with atomic_file(out / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"posebh": text})
    with atomic_file(out / "model.json") as tmp:
        tmp.write_text(text + "\n")
    write_json(out / "card.json", card)
    with atomic_file(out / "README.md") as tmp:
        tmp.write_text(card_markdown(card))
    return out


def card_markdown(card: dict) -> str:
    """The human card: what the model is, how it was made, what it scores (numbers from card.json)."""
    rows = []
    for name, metrics in card["scores"].items():
        key = "PCKh" if "PCKh" in metrics else "AP"
        rows.append(f"| {name} | {key} | {100 * metrics[key]:.1f} |")
    return "\n".join([
        "# zoo-base: the synthetic zoo's ViTPose++",
        "",
        "The multi-head baseline (vit_pico backbone with one expert FFN part per dataset, one 64-channel heatmap head "
        "per dataset, 256x192 input) trained on the six MDT datasets of the synthetic zoo with the bundled recipe "
        f"`{card['recipe']}`: `posebh train-mdt --recipe {card['recipe']}`. `posebh quickstart` starts PoseBH from it.",
        "",
        f"- training zoo: `posebh synth --seed {card['train_zoo']['seed']} --scale {card['train_zoo']['scale']}`",
        f"- steps {card['steps']}, samples seen {card['samples_seen']}, training time {card['train_hours']} h "
        f"({card['machine']}), commit {card['commit']}",
        f"- reproduce: `python scripts/train_zoo_base.py --work runs/zoo-base-work --ship`",
        "- weights: fp16 (cast to fp32 on load)",
        "",
        f"Held-out scores: a zoo synthesized with seed {card['eval_zoo']['seed']} (never used for training), "
        "val split, ground-truth boxes, flip test (x100):",
        "",
        "| dataset | metric | value |",
        "|---|---|---|",
        *rows,
        "",
    ])


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/zoo-base-work"))
    parser.add_argument("--threads", type=int, default=None, help="OMP threads for training (1 on a shared CPU)")
    parser.add_argument("--ship", action="store_true", help="score on the held-out zoo and write the package copy")
    parser.add_argument("--run", type=Path, default=None, help="ship this run folder instead of training")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.run is None:
        make_zoo(work, "zoo-base", TRAIN_SEED, TRAIN_SCALE)
        run = train(work, args.threads)
    else:
        run = args.run.resolve()
    if args.ship:
        held_out = make_zoo(work, "zoo-eval", EVAL_SEED, EVAL_SCALE)
        scores = score(run, held_out)
        out = ship(run, scores, training_figures(run))
        print(json.dumps({"shipped": str(out), "scores": scores}, indent=2))


if __name__ == "__main__":
    main()
