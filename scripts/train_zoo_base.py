"""Reproduce the shipped zoo base model (`zoo-base`): the zoo's ViTPose++, i.e. the multi-head baseline trained on
the six MDT datasets of the synthetic zoo in four stages with bundled recipes:

1. `zoo-base`: vit_pico at 256x192 from random init, 40 epochs (runs/zoo-base); its model is written as fp16 with
   a scored card to <work>/zoo-base-256, exactly as it would ship;
2. `zoo-base-384`: that model continued at 384x288 for 6 epochs (runs/zoo-base-384), the position table
   interpolated to the new token grid (on the zoo, token resolution buys the most per CPU-minute); written as fp16
   with its card to <work>/zoo-base-384;
3. `zoo-base-noflip`: that model continued without mirrored crops for 72k samples (runs/zoo-base-noflip). The zoo
   colours a figure's left and right limbs differently; mirrored crops with swapped labels make that cue
   contradictory, and the first two stages pick a side at random. Written with its card to <work>/zoo-base-noflip;
4. `zoo-base-wholebody`: that model continued for 115k samples with COCO-WholeBody's share at 0.4
   (runs/zoo-base-wholebody): its head learns the sides last.

Where a GPU is present `posebh train-mdt` trains on it; the recipes' single loader process then sets the pace, so the
shipped fourth stage ran its command directly, with `--device cuda --set train.num_workers=12`, and was finished
and shipped here with `--run` (docs/benchmarks.md, "The shipped base in four stages").

    python scripts/train_zoo_base.py --work runs/zoo-base-work            # synth + prepare + all stages (resumes)
    python scripts/train_zoo_base.py --work runs/zoo-base-work --ship     # + score on a fresh zoo, write the
                                                                          #   package's posebh_cli/weights/zoo-base
    python scripts/train_zoo_base.py --work runs/zoo-base-work --stages 1 --score   # the first stage alone

Every step is the command a user would type (`posebh synth`, `posebh prepare-data`, `posebh train-mdt`), run in
`--work`; a step whose output exists is skipped and an interrupted training continues with `--resume`, so the
script can be run again after any interruption. `--ship` scores the final model on a zoo synthesized with a
seed never used for training (val split, GT boxes, flip test where the stage trained with mirrored crops) and
writes fp16 weights, model.json and a card.

The first stage takes longer than one machine lives here; `--continue-shipped` starts its run folder from a
first-stage copy's weights at its step (<work>/zoo-base-256, else the package's copy when it is one; fresh optimizer
moments) instead of step 0, and the card lists the segments:

    python scripts/train_zoo_base.py --work runs/zoo-base-work --continue-shipped   # then --ship as above

A first stage stopped mid-schedule is still at its high learning rate. `--anneal N` uses a branch instead: the
run's last state trained N more steps at the recipe's final learning rate, in <work>/runs/zoo-base-anneal, while
the run itself is left as it was, to continue at its own rate.

The held-out zoo is synthesized at scale 2 so that its val split holds enough figures for a stable AP on the small
sets (101 AP-10K and 130 APT-36K figures; at scale 0.5, with 31 and 60, a dataset's score moved by up to 25 AP
with the sample). `--rescore` scores the shipped copy again and rewrites only its card's scores (weights and training
record kept):

    python scripts/train_zoo_base.py --work runs/zoo-base-work --rescore

Under- or overfitting? `--score --train-gap` also scores the model on its own training images: the training zoo's
seed at scale 0.25 synthesizes the first twelfth of the very images it trained on (every image is seeded by seed,
dataset, split and index), in <work>/zoo-seed1000-x0.25. Equal scores there and on the held-out zoo mean the model
underfits (more samples or capacity help, more distinct images do not). MPII is left out: its training
annotations carry no head box, which PCKh needs, as in the real set.
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
EVAL_SEED, EVAL_SCALE = 2000, 2.0         # the held-out zoo of the card (never used for training)
TRAIN_SLICE_SCALE = 0.25                  # --train-gap: the first images of the training zoo, resynthesized
RECIPE = "zoo-base"                       # first stage: 256x192 from random init
HIRES_RECIPE = "zoo-base-384"             # second stage: the first stage's model continued at 384x288
NOFLIP_RECIPE = "zoo-base-noflip"         # third stage: the second stage's model continued without mirrored crops
WHOLEBODY_RECIPE = "zoo-base-wholebody"   # fourth stage: the third continued with COCO-WholeBody's share at 0.4
FIRST_STAGE = "zoo-base-256"              # in --work: the first stage's model as fp16 with its card, the 2nd's init
HIRES_STAGE = "zoo-base-384"              # in --work: the second stage's model as fp16 with its card, the 3rd's init
NOFLIP_STAGE = "zoo-base-noflip"          # in --work: the third stage's model as fp16 with its card, the 4th's init
SHIP_DIR = REPO / "posebh_cli" / "weights" / "zoo-base"
# From this commit on, the zoo labels COCO-WholeBody faces and hands only where COCO-WholeBody would (large enough to
# annotate); a card's zoo says so (`wholebody_parts`), cards of stages trained before it do not.
WHOLEBODY_RELABELLED = "4492e4a"
TRAIN_ZOO = {"seed": TRAIN_SEED, "scale": TRAIN_SCALE, "wholebody_parts": "annotatable"}


def posebh(*args: str, cwd: Path) -> None:
    command = [sys.executable, "-m", "posebh_cli.cli", *args]
    print("$ posebh " + " ".join(args), flush=True)
    subprocess.run(command, cwd=cwd, check=True)


def held_out_name(seed: int, scale: float) -> str:
    """The folder of a scoring zoo, named by what makes it, so that a zoo of other settings is never reused."""
    return f"zoo-seed{seed}-x{scale:g}"


def held_out_zoo(work: Path) -> Path:
    """The card's held-out zoo (prepared datasets), made in `work` when missing."""
    return make_zoo(work, held_out_name(EVAL_SEED, EVAL_SCALE), EVAL_SEED, EVAL_SCALE)


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


def train(work: Path, threads: int | None, continue_shipped: bool = False, precision: str | None = None) -> Path:
    """`posebh train-mdt --recipe zoo-base` with the recipe's dataset paths (relative: zoo-base/prepared/<d>).

    The run is finished when model.json exists and no training state is left; otherwise it (re)starts or resumes.
    """
    run = work / "runs" / "zoo-base"
    has_state = (run / "state").is_dir() or (run / "state.old").is_dir()
    if (run / "model.json").is_file() and not has_state:
        return run
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    if not has_state and continue_shipped:
        has_state = seed_from_shipped(run, work)
    if precision is not None and has_state:
        close_segment(run, precision)
    overrides = ["--set", f"train.mixed_precision={precision}"] if precision is not None else []
    posebh("train-mdt", "--recipe", RECIPE, "--out", str(run), *(["--resume"] if has_state else []), *overrides,
           cwd=work)
    return run


def anneal(run: Path, work: Path, steps: int, precision: str | None) -> Path:
    """A branch of `run`: its last saved state trained `steps` more steps with every stage at the recipe's final
    learning rate. Kept (not retrained) when it already branched from that state with that many steps."""
    import shutil

    from posebh_cli.engine.state import find_state
    from posebh_cli.files import read_yaml

    step = last_saved_step(run)
    if step is None:
        raise SystemExit(f"{run}: no complete training state to anneal")
    branch = run.parent / f"{run.name}-anneal"
    wanted = {"from_step": step, "steps": steps}
    done = branch / "anneal.json"
    if done.is_file() and {k: json.loads(done.read_text()).get(k) for k in wanted} == wanted:
        return branch
    shutil.rmtree(branch, ignore_errors=True)
    branch.mkdir(parents=True)
    shutil.copytree(find_state(run / "state"), branch / "state")
    for name in ("metrics.jsonl", "recipe.yaml", "segments.json"):
        if (run / name).is_file():
            shutil.copy2(run / name, branch / name)
    stages = read_yaml(run / "recipe.yaml", "recipe file")["stages"]
    lr = stages[-1]["lr"]
    end_segment(branch, step)   # the branch continues this state
    overrides = [f"stages.{i}.lr={lr}" for i in range(len(stages))]
    if precision is not None:
        overrides.append(f"train.mixed_precision={precision}")
    posebh("train-mdt", "--recipe", RECIPE, "--out", str(branch), "--resume", "--max-steps", str(step + steps),
           *[arg for o in overrides for arg in ("--set", o)], cwd=work)
    done.write_text(json.dumps({**wanted, "lr": lr}, indent=1) + "\n")
    return branch


def last_saved_step(run: Path) -> int | None:
    """The optimizer step of the run's last complete training state (None: there is none)."""
    import torch

    from posebh_cli.engine.state import find_state
    state = find_state(run / "state")
    return None if state is None else int(torch.load(state / "trainer.pt", map_location="cpu",
                                                    weights_only=False)["progress"]["step"])


def close_segment(run: Path, precision: str) -> None:
    """Before a resume that changes the precision: end the current segment at the last saved step, so the steps
    trained so far keep the precision they ran with (from the run's recipe.yaml)."""
    step = last_saved_step(run)
    if step is not None and (run / "metrics.jsonl").is_file() and _run_precision(run) != precision:
        end_segment(run, step)


def end_segment(run: Path, step: int) -> None:
    """Write the segments up to `step` into segments.json; the next segment continues the same state (weights and
    AdamW moments). Nothing changes when no step was trained since the last segment ended."""
    segments = training_figures(run, until=step)["segments"]
    if segments[-1]["steps"][1] <= segments[-1]["steps"][0]:
        return
    segments[-1]["same_run"] = True
    write_segments(run, segments)


def seed_from_shipped(run: Path, work: Path) -> bool:
    """Start `run` as a resumable state at the shipped model's step: its weights, fresh AdamW moments.

    A session's machine does not outlive it, so a run that takes longer than a session continues in the next one
    from what the package ships (fp16 weights cast back to fp32; the optimizer's moments start again). The trainer
    then resumes as after any interruption: same recipe, same sampler order, the lr schedule at that step. The
    card lists these segments. False (nothing written) when the shipped model is not from this recipe and zoo.
    """
    import torch

    from posebh_cli.data.prepared import open_prepared
    from posebh_cli.engine.optim import build_optimizer
    from posebh_cli.engine.state import COMPLETE, Progress, progress_dict, rng_state
    from posebh_cli.engine.trainer import build_train_loader
    from posebh_cli.models.checkpoint import load_model
    from posebh_cli.recipe import find_recipe
    from posebh_cli.methods import load_recipe

    source = first_stage_model(work)
    if source is None:
        return False
    card = json.loads((source / "card.json").read_text())
    steps = int(card["steps"])
    old_cwd = Path.cwd()
    os.chdir(work)  # the recipe's dataset paths are relative to the work folder
    try:
        recipe = load_recipe(str(find_recipe(RECIPE)))
        prepared = [open_prepared(d.path) for d in recipe.datasets]
        single = type("OneProcess", (), {"num_processes": 1, "process_index": 0, "device": torch.device("cpu")})()
        loader = build_train_loader(recipe, prepared, single)[0]
    finally:
        os.chdir(old_cwd)
    epoch, batch_in_epoch = divmod(steps * recipe.train.grad_accum, len(loader))
    model = load_model(source)
    model.float()
    progress = Progress(step=steps, micro_step=steps * recipe.train.grad_accum, epoch=epoch,
                        batch_in_epoch=batch_in_epoch, stage_started=recipe.stage_at(epoch).name)
    trainer_state = {"progress": progress_dict(progress), "optimizer": build_optimizer(model, recipe.train).state_dict(),
                     "scaler": None, "method": {}}
    state = run / "state"
    state.mkdir(parents=True)
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(state / "model.safetensors"))
    torch.save(trainer_state, state / "trainer.pt")
    torch.save(rng_state(), state / "rng_rank0.pt")
    (state / COMPLETE).write_text("ok\n")
    segments = card.get("segments") or [{"steps": [0, steps], "train_hours": card.get("train_hours"),
                                         "commit": card.get("commit"), "start": "random init"}]
    write_segments(run, segments)
    print(f"seeded {run} from {source} at step {steps} (epoch {epoch}, batch {batch_in_epoch})", flush=True)
    return True


def first_stage_model(work: Path) -> Path | None:
    """A first-stage model folder: <work>/zoo-base-256, else the package's copy when it is one; None: neither."""
    return next((folder for folder in (work / FIRST_STAGE, SHIP_DIR) if is_first_stage(folder)), None)


def is_first_stage(folder: Path) -> bool:
    """Whether `folder` holds a first-stage model of this zoo (recipe zoo-base) with its card."""
    card_file = folder / "card.json"
    if not card_file.is_file():
        return False
    card = json.loads(card_file.read_text())
    zoo = card.get("train_zoo") or {}
    return card.get("recipe") == RECIPE and (zoo.get("seed"), zoo.get("scale")) == (TRAIN_SEED, TRAIN_SCALE)


def train_hires(work: Path, first: Path, threads: int | None) -> Path:
    """Second stage: the first stage's model (`first`, a run folder) written to work/zoo-base-256 as fp16 with
    its scored card, exactly as it would ship, then `posebh train-mdt --recipe zoo-base-384` from it."""
    return continue_stage(work, first, FIRST_STAGE, HIRES_RECIPE, threads)


def train_noflip(work: Path, hires: Path, threads: int | None) -> Path:
    """Third stage: the second stage's model (`hires`, a run folder) written to work/zoo-base-384 as fp16 with its
    scored card, then `posebh train-mdt --recipe zoo-base-noflip` from it."""
    return continue_stage(work, hires, HIRES_STAGE, NOFLIP_RECIPE, threads)


def train_wholebody(work: Path, noflip: Path, threads: int | None) -> Path:
    """Fourth stage: the third stage's model (`noflip`, a run folder) written to work/zoo-base-noflip as fp16 with
    its scored card, then `posebh train-mdt --recipe zoo-base-wholebody` from it."""
    return continue_stage(work, noflip, NOFLIP_STAGE, WHOLEBODY_RECIPE, threads)


def continue_stage(work: Path, previous: Path, init_name: str, recipe: str, threads: int | None) -> Path:
    """`posebh train-mdt --recipe <recipe>` in work/runs/<recipe>, from the previous stage's run shipped (fp16,
    scored card) to work/<init_name>, the folder the recipe's `model.init.path` names. Resumes an interrupted run."""
    run = work / "runs" / recipe
    if (run / "model.json").is_file():   # the trainer writes it once, at the end
        return run
    has_state = (run / "state").is_dir()
    init = work / init_name
    if not (init / "model.json").is_file():
        ship(previous, score(previous, held_out_zoo(work)), card_figures(previous, work), out=init)
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    posebh("train-mdt", "--recipe", recipe, "--out", str(run), *(["--resume"] if has_state else []), cwd=work)
    return run


def card_figures(run: Path, work: Path) -> dict:
    """The card's training record of `run`. A later-stage run (its recipe starts from an earlier stage's model
    folder) continues that model's card: its steps, hours and segments come first, its scores are kept."""
    from posebh_cli.files import read_yaml

    figures = training_figures(run)
    recipe = read_yaml(run / "recipe.yaml", "recipe file")
    model = recipe["model"]
    init = model.get("init") or {}
    if init.get("kind") != "ours":
        return figures
    previous = json.loads((work / init["path"] / "card.json").read_text())
    size = size_name(model["img_size"])
    resized = size_name(previous.get("input", [256, 192])) != size
    own = figures["segments"]   # this run's: more than one when it was resumed elsewhere (another machine)
    for segment in own:
        segment.update(steps=[previous["steps"] + step for step in segment["steps"]], recipe=recipe["name"])
        if segment is not own[0]:
            segment["start"] = f"this stage's state at step {segment['steps'][0]} (weights and AdamW moments)"
    own[0]["start"] = (f"the {previous['recipe']} model of step {previous['steps']} (fp16, as it shipped)"
                       f"{f' at {size}: position table interpolated,' if resized else ','} fresh AdamW moments")
    earlier = [*previous.get("earlier_stages", []),
               {"recipe": previous["recipe"], "input": previous.get("input", [256, 192]), "scores": previous["scores"],
                "flip_test": previous.get("eval_zoo", {}).get("flip_test", True),
                "train_zoo": previous.get("train_zoo")}]
    return {"steps": previous["steps"] + figures["steps"],
            "samples_seen": previous["samples_seen"] + figures["samples_seen"],
            "train_hours": round(previous["train_hours"] + figures["train_hours"], 2),
            "segments": [*(previous.get("segments") or []), *own], "earlier_stages": earlier}


def write_segments(run: Path, segments: list[dict]) -> None:
    (run / "segments.json").write_text(json.dumps(segments, indent=1) + "\n")


def training_figures(run: Path, batch_size: int = 32, until: int | None = None) -> dict:
    """Steps, samples seen, training hours and segments, from the run's metrics.jsonl (one line per logged window)
    and the earlier segments in segments.json (those of the shipped copy a run was seeded from, and those this run
    closed when a resume changed its precision). `until`: count only the steps up to this one."""
    earlier = json.loads((run / "segments.json").read_text()) if (run / "segments.json").is_file() else []
    start = earlier[-1]["steps"][1] if earlier else 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    logged = [r for r in records if r.get("samples_per_s") and start < r["step"] <= (until or r["step"])]
    seconds, previous = 0.0, start
    for r in logged:  # each line covers the steps since the previous one at its logged rate
        seconds += (r["step"] - previous) * batch_size / r["samples_per_s"]
        previous = r["step"]
    last = max((r["step"] for r in records if r["step"] <= (until or r["step"])), default=previous)
    if logged and last > previous:  # steps after the last logged window (a run's final steps), at its rate
        seconds += (last - previous) * batch_size / logged[-1]["samples_per_s"]
        previous = last
    if not earlier:
        begun = "random init"
    elif earlier[-1].get("same_run"):
        begun = f"the same run's state at step {start} (weights and AdamW moments)"
    else:
        begun = f"the shipped weights of step {start} (fp16 cast to fp32), fresh AdamW moments"
    annealed = json.loads((run / "anneal.json").read_text()) if (run / "anneal.json").is_file() else None
    if annealed:
        begun += f", every stage at lr {annealed['lr']:g} (an annealed branch; the run goes on from step {start})"
    this = {"steps": [start, previous], "train_hours": round(seconds / 3600, 2), "commit": _commit(),
            "precision": _run_precision(run), "start": begun}
    segments = [*earlier, this]
    hours = sum(seg.get("train_hours") or 0.0 for seg in segments)
    return {"steps": previous, "samples_seen": previous * batch_size, "train_hours": round(hours, 2),
            "segments": segments}


def _run_precision(run: Path) -> str:
    """train.mixed_precision of the run's recipe.yaml (the trainer rewrites it on every start, --set included)."""
    from posebh_cli.files import read_yaml
    return str(read_yaml(run / "recipe.yaml", "recipe file").get("train", {}).get("mixed_precision", "no"))


def score(run: Path, prepared: Path, split: str = "val", datasets=MDT_DATASETS) -> dict[str, dict]:
    """Each dataset's metrics on `split` with its own head: GT boxes, flip test unless the run trained without
    mirrored crops (the predictor's default for the run's recipe)."""
    from posebh_cli.data.prepared import open_prepared
    from posebh_cli.inference.evaluate import evaluate_model
    model, recipe = model_of_run(run)
    return {d: evaluate_model(model, open_prepared(prepared / d), split, d, recipe=recipe) for d in datasets}


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
    raw["model"]["init"] = {"kind": "none"}   # the saved state holds every weight: no need for the init folder
    recipe = recipe_from_dict(raw, check_paths=False)
    model = build_model(recipe, [load_skeleton(d.name) for d in recipe.datasets], with_embedding=False)
    load_state_strict(model, load_file(str(state / "model.safetensors")), state / "model.safetensors")
    return model.eval(), recipe.to_dict()


def ship(run: Path, scores: dict, figures: dict, out: Path = SHIP_DIR, trained: dict | None = None) -> Path:
    """fp16 weights + model.json + README.md card into the package (weights are cast back to fp32 on load).
    `trained`: the card's commit and machine when they are not this checkout's (a rescored shipped copy)."""
    import torch
    from safetensors.torch import save_file

    from posebh_cli.files import atomic_file, write_json
    from posebh_cli.inference.predictor import default_flip_test
    from posebh_cli.models.checkpoint import checkpoint_meta

    model, recipe = model_of_run(run)
    meta = {"recipe": recipe, "extra": {}}
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    card = {"name": "zoo-base", "recipe": recipe["name"], "input": recipe["model"]["img_size"],
            "train_zoo": TRAIN_ZOO,
            "eval_zoo": {"seed": EVAL_SEED, "scale": EVAL_SCALE, "split": "val", "boxes": "ground truth",
                         "flip_test": default_flip_test(recipe)},
            "commit": _commit(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
            **(trained or {}), **figures, "scores": scores}
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
    size = size_name(card.get("input", [256, 192]))
    stages = [*card.get("earlier_stages", []), {"recipe": card["recipe"], "input": card.get("input", [256, 192]),
                                               "scores": card["scores"], "train_zoo": card.get("train_zoo"),
                                               "flip_test": card["eval_zoo"].get("flip_test", True)}]
    columns = ["dataset", "metric", *(f"{stage['recipe']} ({size_name(stage['input'])})" for stage in stages)]
    rows = []
    for name, metrics in card["scores"].items():
        metric = main_metric(metrics)
        values = [stage["scores"][name][metric] for stage in stages]
        rows.append("| " + " | ".join([name, metric, *(f"{100 * v:.1f}" for v in values)]) + " |")
    steps = [f"`{stages[0]['recipe']}` at {size_name(stages[0]['input'])} from random init"]
    for before, stage in zip(stages, stages[1:]):
        resized = stage["input"] != before["input"]
        steps.append(f"`{stage['recipe']}` continuing it" + (f" at {size_name(stage['input'])}" if resized else "")
                     + ("" if stage.get("flip_test", True) else " without mirrored crops"))
    made = (f"trained on the six MDT datasets of the synthetic zoo with the bundled recipe"
            f"{'s' if len(stages) > 1 else ''} {', then '.join(steps)} (`posebh train-mdt --recipe <name>`)")
    relabelled = [stage["recipe"] for stage in stages if not (stage.get("train_zoo") or {}).get("wholebody_parts")]
    flip_tests = [stage.get("flip_test", True) for stage in stages]
    if all(flip_tests):
        test = "flip test"
    elif not any(flip_tests):
        test = "no flip test"
    else:
        test = ("flip test for the stages trained with mirrored crops, none for "
                + ", ".join(f"`{stage['recipe']}`" for stage, flip in zip(stages, flip_tests) if not flip))
    return "\n".join([
        "# zoo-base: the synthetic zoo's ViTPose++",
        "",
        "The multi-head baseline (vit_pico backbone with one expert FFN part per dataset, one 64-channel heatmap head "
        f"per dataset, {size} input) {made}. `posebh quickstart` starts PoseBH from it.",
        "",
        f"- training zoo: `posebh synth --seed {card['train_zoo']['seed']} --scale {card['train_zoo']['scale']}`",
        f"- steps {card['steps']}, samples seen {card['samples_seen']}, training time {card['train_hours']} h "
        f"({card['machine']}), commit {card['commit']}",
        f"- reproduce: `python scripts/train_zoo_base.py --work runs/zoo-base-work --ship`",
        *segment_lines(card.get("segments") or []),
        "- weights: fp16 (cast to fp32 on load)",
        "",
        f"Held-out scores: a zoo synthesized with seed {card['eval_zoo']['seed']} at scale "
        f"{card['eval_zoo']['scale']} (never used for training), "
        f"val split, ground-truth boxes, {test} (x100):",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *rows,
        "",
        *([f"{', '.join(f'`{r}`' for r in relabelled)} trained and were scored on zoos that labelled every "
           f"COCO-WholeBody face and hand, however small. Since commit {WHOLEBODY_RELABELLED} the zoo labels them, "
           "as COCO-WholeBody does, only where they are large enough to annotate (`face_valid`, `lefthand_valid`, "
           "`righthand_valid`); the later stages' WholeBody scores count only those.", ""] if relabelled else []),
    ])


def size_name(img_size) -> str:
    """An input size [height, width] as the field names it: 256x192."""
    return "x".join(str(n) for n in img_size)


def main_metric(metrics: dict) -> str:
    """The metric a dataset's card row shows: PCKh for MPII, AP for the others."""
    return "PCKh" if "PCKh" in metrics else "AP"


def x100(scores: dict[str, dict]) -> dict[str, float]:
    """Each dataset's main metric x100, one decimal: what the script prints."""
    return {d: round(100 * m[main_metric(m)], 1) for d, m in scores.items()}


def segment_lines(segments: list[dict]) -> list[str]:
    """One line per training segment: a run longer than one machine's life continues from the shipped copy, and
    a resume may change the precision (fp32 is "no")."""
    if len(segments) < 2:
        return []
    return ["- trained in segments:",
            *[f"  - steps {seg['steps'][0]}-{seg['steps'][1]}, {seg.get('train_hours')} h, "
              f"{'fp32' if seg.get('precision', 'no') == 'no' else seg['precision'] + ' autocast'}, "
              f"{'recipe ' + seg['recipe'] + ', ' if seg.get('recipe') else ''}"
              f"{'on ' + seg['machine'] + ', ' if seg.get('machine') else ''}"
              f"commit {seg.get('commit')}, from {seg.get('start')}" for seg in segments]]


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
    parser.add_argument("--stages", type=int, choices=[1, 2, 3, 4], default=4,
                        help=f"train the first N stages ({RECIPE}, {HIRES_RECIPE}, {NOFLIP_RECIPE}, "
                             f"{WHOLEBODY_RECIPE}); --score or --ship the last of them")
    parser.add_argument("--continue-shipped", action="store_true",
                        help="a new first-stage run starts from a first-stage copy's weights and step "
                             "(<work>/zoo-base-256, else the package's copy when it is one): a run longer than one "
                             "machine's life continues on the next")
    parser.add_argument("--anneal", type=int, default=None, metavar="STEPS",
                        help="ship/score a branch: the run's last state trained STEPS more steps at the final lr")
    parser.add_argument("--score", action="store_true", help="print the held-out scores without shipping")
    parser.add_argument("--rescore", action="store_true",
                        help="score the shipped copy on the held-out zoo and rewrite its card's scores")
    parser.add_argument("--train-gap", action="store_true",
                        help="with --score: also score the model on its own training images (see above)")
    parser.add_argument("--precision", choices=["no", "bf16"], default=None,
                        help="train.mixed_precision for this training segment (bf16 autocast: about 1.5x the "
                             "samples per CPU-second on a CPU with AVX-512 BF16); recorded per segment in the card")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.rescore:
        card = json.loads((SHIP_DIR / "card.json").read_text())
        scores = score(SHIP_DIR, held_out_zoo(work))
        kept = ("steps", "samples_seen", "train_hours", "segments", "earlier_stages", "train_zoo")
        ship(SHIP_DIR, scores, {k: card[k] for k in kept if k in card},
             trained={"commit": card["commit"], "machine": card["machine"]})
        print(json.dumps({"rescored": str(SHIP_DIR), "x100": x100(scores)}))
        return
    if args.run is None:
        make_zoo(work, "zoo-base", TRAIN_SEED, TRAIN_SCALE)
        run = train(work, args.threads, args.continue_shipped, args.precision)
    else:
        run = args.run.resolve()
    if args.anneal:
        run = anneal(run, work, args.anneal, args.precision)
    if args.run is None and args.stages >= 2:
        run = train_hires(work, run, args.threads)
    if args.run is None and args.stages >= 3:
        run = train_noflip(work, run, args.threads)
    if args.run is None and args.stages >= 4:
        run = train_wholebody(work, run, args.threads)
    if args.ship or args.score:
        scores = score(run, held_out_zoo(work))
        if args.score:
            print(json.dumps({"run": str(run), "step": last_saved_step(run), "x100": x100(scores)}))
            if args.train_gap:
                own = make_zoo(work, held_out_name(TRAIN_SEED, TRAIN_SLICE_SCALE), TRAIN_SEED,
                               TRAIN_SLICE_SCALE)
                own_scores = score(run, own, "train", [d for d in MDT_DATASETS if d != "mpii"])
                print(json.dumps({"own_training_images_x100": x100(own_scores)}))
            return
        out = ship(run, scores, card_figures(run, work))
        print(json.dumps({"shipped": str(out), "scores": scores}, indent=2))


if __name__ == "__main__":
    main()
