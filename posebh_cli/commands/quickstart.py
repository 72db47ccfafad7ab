"""`posebh quickstart`: the whole flow on the synthetic skeleton zoo, sized to a time budget on a laptop CPU.

    synth zoo ─▶ prepare-data ─▶ train-mdt (PoseBH, six datasets) ─▶ fit-prototypes (3DPW's SMPL-24 skeleton)
              ─▶ evaluate every dataset ─▶ predict on held-out zoo images and on real photos ─▶ table

By default PoseBH's stages start from the zoo base model shipped in the package (`zoo-base`, the zoo's ViTPose++),
as the paper starts from ViTPose++, and the table compares the base with the PoseBH model on every dataset.
`--from-scratch` trains the whole PoseBH model from random weights instead.

Every step writes under --out and is skipped when its output is already there, so an interrupted quickstart
picks up where it stopped (training resumes from its last epoch checkpoint). The number of training epochs (on a
slow machine: their length) is fitted to --minutes-budget from a few timed steps.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from posebh_cli.errors import PosebhError
from posebh_cli.files import read_yaml
from posebh_cli.recipe import find_recipe, scale_stages

MDT_DATASETS = ("coco", "aic", "mpii", "ap10k", "apt36k", "coco_wholebody")
NEW_SKELETON = "3dpw"      # the transfer target: SMPL-24 points, a skeleton none of the six heads predicts
RECIPE = "zoo-quickstart.yaml"             # --from-scratch
BASE_RECIPE = "zoo-quickstart-base.yaml"   # default: PoseBH's stages on top of the shipped base model
BASE_MODEL = "zoo-base"
ZOO_IMAGES = 4             # held-out zoo images drawn per head


@dataclass
class Plan:
    """What the quickstart builds: zoo sizes (training images), image and model sizes, epochs bounds."""

    sizes: dict[str, int]
    image_size: tuple[int, int] = (192, 144)        # zoo images, (w, h)
    model_size: tuple[int, int] = (256, 192)        # model input, (h, w): the papers' size; 128x96 plateaus early
    batch_size: int = 32
    min_epochs: int = 2                             # one per recipe stage
    min_steps: int = 20
    max_epochs: int = 40
    fit_epochs: int = 10
    calibration_steps: int = 4                      # 0: train exactly min_epochs, no timing
    workers: int = 1
    reserve: float = 0.25                           # share of the budget kept for fitting, evaluating, predicting
    base: Path | None = None                        # the base model PoseBH starts from; None: from scratch

    @property
    def recipe(self) -> str:
        return RECIPE if self.base is None else BASE_RECIPE


FULL = Plan(sizes={"coco": 400, "aic": 600, "mpii": 200, "ap10k": 100, "apt36k": 150, "coco_wholebody": 120,
                   "3dpw": 100})
TINY = Plan(sizes={"coco": 6, "aic": 6, "mpii": 6, "ap10k": 6, "apt36k": 20, "coco_wholebody": 6, "3dpw": 20},
            image_size=(96, 72), model_size=(64, 48), batch_size=8, min_epochs=2, fit_epochs=2,
            calibration_steps=0, workers=0)



def with_base(plan: Plan) -> Plan:
    """The plan that starts from the shipped base model: its input size, and zoo images like its training zoo."""
    from posebh_cli.models.store import builtin_models

    base = builtin_models().get(BASE_MODEL)
    if base is None:
        raise PosebhError(f"the zoo base model '{BASE_MODEL}' is not installed with this posebh (posebh_cli/weights/"
                          f"{BASE_MODEL}); run `posebh quickstart --from-scratch`, or make it with "
                          "scripts/train_zoo_base.py")
    config = json.loads((base / "model.json").read_text())["config"]
    return replace(plan, base=base, model_size=tuple(config["img_size"]), min_epochs=max(plan.min_epochs, 3),
                   image_size=plan.image_size if plan is TINY else (256, 192))   # 3 stages: 3 epochs at least


def quickstart_recipe(prepared: dict[str, Path], plan: Plan, seed: int, epochs: int,
                      epoch_steps: int | None = None) -> dict:
    """The quickstart recipe as a dict: paths, sizes and seed filled in, stages scaled to `epochs`, each epoch
    `epoch_steps` steps long when given (else one pass over the training sets)."""
    raw = read_yaml(find_recipe(plan.recipe), "recipe file")
    raw["model"]["img_size"] = list(plan.model_size)
    if plan.base is not None:
        raw["model"]["init"] = {"kind": "ours", "path": str(plan.base)}
    for ds in raw["datasets"]:
        ds["path"] = str(prepared[ds["name"]])
    raw["stages"] = scale_stages(raw["stages"], raw["train"]["epochs"], epochs)
    raw["train"].update(epochs=epochs, seed=seed, batch_size=plan.batch_size, num_workers=plan.workers)
    if epoch_steps is not None:
        raw["train"]["epoch_length"] = epoch_steps * plan.batch_size
    return raw


# ------------------------------------------------------------------ steps
def make_zoo(out: Path, plan: Plan, seed: int) -> dict[str, Path]:
    """Synthesize the missing zoo datasets and prepare the missing prepared ones."""
    from posebh_cli.data.prepare import prepare_dataset
    from posebh_cli.data.synth import synth_zoo

    zoo, prepared = out / "zoo", out / "prepared"
    missing = [n for n in plan.sizes if not (zoo / n).is_dir()]
    if missing:
        synth_zoo(zoo, seed=seed, sizes={n: plan.sizes[n] for n in missing}, image_size=plan.image_size,
                  datasets=missing)
    for name in plan.sizes:
        if not (prepared / name / "meta.yaml").is_file():
            shutil.rmtree(prepared / name, ignore_errors=True)   # an empty folder left by a killed run
            prepare_dataset(name, zoo / name, prepared / name)
    return {name: prepared / name for name in plan.sizes}


def _write_recipe(path: Path, recipe: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def seconds_per_step(out: Path, prepared: dict[str, Path], plan: Plan, seed: int, stage: int) -> float:
    """Seconds per training step of one recipe stage, from a throw-away run made of that stage alone.

    The rate is the trainer's own, logged over the second half of the steps, so start-up (imports, data loader
    workers, the first batch) does not count: on a busy machine start-up alone can take tens of seconds.
    Stages differ: cross-type self-supervision runs every head on every row, so its steps cost about twice the
    first stage's.
    """
    from posebh_cli.engine.trainer import train_mdt

    where = out / "runs" / ".calibration"
    shutil.rmtree(where, ignore_errors=True)
    recipe = quickstart_recipe(prepared, plan, seed, plan.min_epochs)   # every stage kept (one epoch each at least)
    stages = recipe["stages"]
    # Timed alone, a stage still runs what the earlier stages started (e.g. the clusters a later cluster loss needs).
    actions = list(dict.fromkeys(a for s in stages[:stage + 1] for a in s.get("on_start") or []))
    recipe["stages"] = [dict(stages[stage], epochs=[0, plan.min_epochs], on_start=actions)]
    half = max(1, plan.calibration_steps // 2)
    recipe["train"]["log_every_steps"] = half
    recipe_file = _write_recipe(out / "runs" / ".calibration.yaml", recipe)
    start = time.perf_counter()
    try:
        train_mdt(recipe_file, where, max_steps=2 * half)
        wall = (time.perf_counter() - start) / (2 * half)
        records = [json.loads(line) for line in (where / "metrics.jsonl").read_text().splitlines() if line.strip()]
    finally:
        shutil.rmtree(where, ignore_errors=True)
        recipe_file.unlink(missing_ok=True)
    rates = [r["samples_per_s"] for r in records if r.get("samples_per_s")]
    return plan.batch_size / rates[-1] if len(rates) > 1 else wall


def steps_per_epoch(prepared: dict[str, Path], plan: Plan) -> int:
    from posebh_cli.data.prepared import open_prepared

    instances = sum(len(open_prepared(prepared[n]).instances("train")) for n in MDT_DATASETS)
    return max(1, instances // plan.batch_size)


def plan_training(stage_seconds: list[float], stages: list[dict], recipe_epochs: int, steps_per_epoch: int,
                  budget_s: float, plan: Plan) -> tuple[int, int | None]:
    """(epochs, epoch_steps) that fit `budget_s`, given each stage's seconds per step: the most whole epochs (stage
    boundaries scaled as `scale_stages` does) when at least `plan.min_epochs` fit; else the recipe's own epochs
    (its stage proportions as written) shortened to the `epoch_steps` steps that fit (None when the epochs are
    whole), so that every stage still trains, at least `plan.min_steps` steps in all."""
    def cost(epochs: int, steps: int) -> float:
        scaled = scale_stages(stages, recipe_epochs, epochs)
        return sum((s["epochs"][1] - s["epochs"][0]) * steps * t for s, t in zip(scaled, stage_seconds))

    for epochs in range(plan.max_epochs, plan.min_epochs - 1, -1):
        if cost(epochs, steps_per_epoch) <= budget_s:
            return epochs, None
    epochs = max(recipe_epochs, plan.min_epochs)
    fit = int(budget_s // cost(epochs, 1))
    return epochs, min(steps_per_epoch, max(fit, -(-plan.min_steps // epochs)))


def train_model(out: Path, prepared: dict[str, Path], plan: Plan, seed: int, budget_s: float,
                console: Console) -> Path:
    """Train (or resume, or keep) the PoseBH run in out/runs/posebh with as many steps as the budget allows."""
    from posebh_cli.engine.state import find_state
    from posebh_cli.engine.trainer import train_mdt

    run_dir = out / "runs" / "posebh"
    recipe_file = out / "runs" / "posebh.recipe.yaml"
    if (run_dir / "model.safetensors").is_file():
        console.print(f"training: done already ({run_dir})")
        return run_dir
    if find_state(run_dir / "state") is not None and recipe_file.is_file():
        console.print(f"training: resuming {run_dir}")
        return train_mdt(recipe_file, run_dir, resume=True)
    shutil.rmtree(run_dir, ignore_errors=True)   # logs of a run killed before its first checkpoint
    epochs, epoch_steps = plan.min_epochs, None
    if plan.calibration_steps:
        raw = read_yaml(find_recipe(plan.recipe), "recipe file")
        calibration_start = time.perf_counter()
        stage_seconds = [seconds_per_step(out, prepared, plan, seed, i) for i in range(len(raw["stages"]))]
        budget_s = max(0.0, budget_s - (time.perf_counter() - calibration_start))
        per_epoch = steps_per_epoch(prepared, plan)
        epochs, epoch_steps = plan_training(stage_seconds, raw["stages"], raw["train"]["epochs"], per_epoch,
                                            budget_s, plan)
        console.print(f"training: {' / '.join(f'{t:.2f}' for t in stage_seconds)} s/step by stage, {per_epoch} "
                      f"steps/epoch -> {epochs} epochs for a {budget_s / 60:.1f}-minute training budget")
        if epoch_steps is not None:
            console.print(f"[yellow]note:[/] this machine fits only {epoch_steps} of the {per_epoch} steps of an "
                          f"epoch in the budget; each of the {epochs} epochs is shortened to {epoch_steps} steps, so "
                          "that every stage trains. A larger --minutes-budget trains whole epochs.")
    recipe = _write_recipe(recipe_file, quickstart_recipe(prepared, plan, seed, epochs, epoch_steps))
    return train_mdt(recipe, run_dir)


def fit_new_skeleton(out: Path, run_dir: Path, prepared: Path, plan: Plan, console: Console) -> tuple[Path, dict]:
    """Prototypes for the new skeleton fitted into the frozen model (`posebh fit-prototypes`)."""
    from posebh_cli.commands.transfer import fit_prototypes_run

    where = out / "runs" / f"fit-{NEW_SKELETON}"
    if (where / "fit.json").is_file():
        console.print(f"fit-prototypes: done already ({where})")
        return where, json.loads((where / "fit.json").read_text()).get("metrics", {})
    return fit_prototypes_run(run_dir, prepared, split="train", out=where, epochs=plan.fit_epochs, console=console)


def evaluate_all(run_dir: Path, prepared: dict[str, Path]) -> dict[str, dict]:
    """Each MDT dataset's val metrics with its own head ({} for a val split without annotations)."""
    from posebh_cli.data.prepared import open_prepared
    from posebh_cli.inference.evaluate import evaluate_model
    from posebh_cli.inference.predictor import load_checkpoint

    model, recipe = load_checkpoint(run_dir)
    metrics = {}
    for name in MDT_DATASETS:
        ds = open_prepared(prepared[name])
        if not ds.load_coco("val").get("annotations"):
            metrics[name] = {}
            continue
        metrics[name] = evaluate_model(model, ds, "val", name, recipe=recipe)
    return metrics


def real_photos(folder: Path) -> tuple[dict[str, Path], str]:
    """scikit-image's astronaut (a person) and cat photos as files; none when scikit-image is missing."""
    import cv2

    try:
        from skimage import data
    except ImportError:
        return {}, "scikit-image is not installed: no real photos, held-out zoo images only"
    folder.mkdir(parents=True, exist_ok=True)
    photos = {}
    for name, image in (("astronaut", data.astronaut()), ("cat", data.chelsea())):
        path = folder / name / f"{name}.jpg"
        path.parent.mkdir(exist_ok=True)
        if not path.is_file():
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        photos[name] = path.parent
    return photos, ""


def predict_photos(out: Path, run_dir: Path, fit_dir: Path, prepared: dict[str, Path],
                   console: Console) -> list[Path]:
    """Overlays of the COCO and AP-10K heads and of the new skeleton's prototypes, first on held-out zoo images
    (the val split of this quickstart's zoo, whose seed the base never trained on) in their ground-truth boxes,
    then on real photos (the astronaut, the cat) as whole images. The models learned from the zoo alone: the zoo
    images show what they learned, the photos how far it carries."""
    from posebh_cli.inference.run import run_predict

    heads = (("coco", run_dir, {"dataset": "coco"}), ("ap10k", run_dir, {"dataset": "ap10k"}),
             (NEW_SKELETON, fit_dir, {"prototypes": NEW_SKELETON}))
    jobs = []
    for dataset, checkpoint, head in heads:
        images, boxes = held_out_zoo_images(prepared[dataset], out / "photos" / f"zoo-{dataset}", ZOO_IMAGES)
        jobs.append((f"zoo-{dataset}", images, checkpoint, {**head, "boxes": boxes}))
    photos, note = real_photos(out / "photos")
    if note:
        console.print(f"[yellow]note:[/] {note}")
    else:
        jobs += [("astronaut-coco", photos["astronaut"], run_dir, {"dataset": "coco", "whole_image": True}),
                 ("astronaut-" + NEW_SKELETON, photos["astronaut"], fit_dir,
                  {"prototypes": NEW_SKELETON, "whole_image": True}),
                 ("cat-ap10k", photos["cat"], run_dir, {"dataset": "ap10k", "whole_image": True})]
    overlays = []
    for name, source, checkpoint, options in jobs:
        where = out / "predictions" / name
        if not where.is_dir():
            run_predict(source, checkpoint, where, **options)
        overlays += sorted(where.glob("*.overlay.*"))
    return overlays


def write_overview(overlays: list[Path], path: Path) -> Path:
    """All overlays in one picture, a row per prediction folder (zoo-coco, zoo-ap10k, ..., cat-ap10k)."""
    import cv2

    from posebh_cli.inference.draw import contact_sheet

    rows: dict[str, list] = {}
    for overlay in overlays:
        rows.setdefault(overlay.parent.name, []).append(cv2.imread(str(overlay)))
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    cv2.imwrite(str(tmp), contact_sheet(list(rows.items()), tile_height=160, columns=ZOO_IMAGES))
    tmp.replace(path)
    return path


def held_out_zoo_images(prepared: Path, folder: Path, count: int) -> tuple[Path, Path]:
    """The first `count` held-out images (val split, else test: 3DPW has no val) of a prepared zoo set that show
    a figure, copied into `folder`, and their ground-truth boxes as a COCO dict beside it (what
    `posebh predict --boxes` reads)."""
    from posebh_cli.data.prepared import open_prepared
    from posebh_cli.files import write_json

    ds = open_prepared(prepared)
    coco = ds.load_coco("val" if "val" in ds.splits else "test")
    annotated = {a["image_id"] for a in coco["annotations"] if a.get("num_keypoints", 1) > 0}
    images = [im for im in coco["images"] if im["id"] in annotated][:count]
    ids = {im["id"] for im in images}
    folder.mkdir(parents=True, exist_ok=True)
    for image in images:
        target = folder / Path(image["file_name"]).name
        if not target.is_file():
            shutil.copyfile(ds.image_root / image["file_name"], target)
    boxes = folder.parent / f"{folder.name}.boxes.json"   # beside the folder: predict reads every file inside it
    write_json(boxes, {"images": images, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]})
    return folder, boxes


# ------------------------------------------------------------------ the command
def _main_metric(metrics: dict) -> tuple[str, float | None]:
    for key in ("AP", "PCKh", "AUC", "PCK"):
        if key in metrics:
            return key, metrics[key]
    return "-", None


def results_table(metrics: dict[str, dict], fit_metrics: dict, minutes: float,
                  base_metrics: dict[str, dict] | None = None) -> Table:
    """One row per dataset: its main metric (x100) for PoseBH and, when it started from one, the base model."""
    table = Table(title=f"posebh quickstart: synthetic zoo, {minutes:.1f} minutes")
    columns = [("dataset", "left"), ("predicted by", "left"), ("metric", "left")]
    columns += [(f"base ({BASE_MODEL})", "right")] if base_metrics is not None else []
    for column, justify in columns + [("PoseBH", "right")]:
        table.add_column(column, justify=justify)

    def shown(m: dict) -> str:
        value = _main_metric(m)[1]
        return "-" if value is None else f"{100 * value:.1f}"

    for name, m in metrics.items():
        base = [shown(base_metrics.get(name, {}))] if base_metrics is not None else []
        table.add_row(name, f"head {name}", _main_metric(m)[0], *base, shown(m))
    base = ["-"] if base_metrics is not None else []
    table.add_row(f"{NEW_SKELETON} (new skeleton)", "fitted prototypes", _main_metric(fit_metrics)[0], *base,
                  shown(fit_metrics))
    return table


def _check_settings(out: Path, settings: dict) -> None:
    """Record the options a folder was started with; continuing it with other options would mix two runs."""
    path = out / "settings.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != settings:
            raise PosebhError(f"{out}: was started with {saved}, not {settings}; use the same options or another --out")
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings))


def run_quickstart(out: str | Path = "posebh-quickstart", minutes_budget: float = 15.0, seed: int = 0, tiny: bool = False,
                   console: Console | None = None, from_scratch: bool = False) -> dict:
    """Run the whole quickstart into `out`; returns the summary also written to out/quickstart.json."""
    console = console or Console()
    if minutes_budget <= 0:
        raise PosebhError(f"--minutes-budget: must be positive, got {minutes_budget}")
    out = Path(out)
    plan = TINY if tiny else FULL
    if out.exists() and not out.is_dir():
        raise PosebhError(f"{out}: exists and is not a folder; choose another --out")
    if not from_scratch:
        plan = with_base(plan)
    resumed = out.is_dir() and any(out.iterdir())
    _check_settings(out, {"seed": seed, "tiny": tiny, "from_scratch": from_scratch})   # creates out and writes its settings
    if resumed:
        console.print(f"[bold]{out} exists:[/] continuing in it (finished steps are skipped; delete it to start over)")
    started = time.perf_counter()
    budget = minutes_budget * 60

    console.rule("1/5 synthetic zoo and prepare-data")
    prepared = make_zoo(out, plan, seed)
    console.rule("2/5 train PoseBH on six datasets" + ("" if plan.base is None else f", from the base model {BASE_MODEL}"))
    train_budget = max(0.0, budget * (1 - plan.reserve) - (time.perf_counter() - started))
    run_dir = train_model(out, prepared, plan, seed, train_budget, console)
    console.rule(f"3/5 fit prototypes for a new skeleton ({NEW_SKELETON}, SMPL-24)")
    fit_dir, fit_metrics = fit_new_skeleton(out, run_dir, prepared[NEW_SKELETON], plan, console)
    console.rule("4/5 evaluate every dataset")
    metrics = evaluate_all(run_dir, prepared)
    base_metrics = None if plan.base is None else evaluate_all(plan.base, prepared)
    console.rule("5/5 predict on held-out zoo images and on real photos")
    overlays = predict_photos(out, run_dir, fit_dir, prepared, console)
    overview = write_overview(overlays, out / "predictions" / "overview.jpg")

    minutes = (time.perf_counter() - started) / 60
    summary = {"out": str(out), "seed": seed, "tiny": tiny, "minutes": minutes, "checkpoint": str(run_dir),
               "fitted_checkpoint": str(fit_dir), "base": None if plan.base is None else str(plan.base),
               "base_metrics": base_metrics, "metrics": metrics, f"{NEW_SKELETON}_prototypes": fit_metrics,
               "overlays": [str(p) for p in overlays], "overview": str(overview)}
    tmp = out / "quickstart.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(out / "quickstart.json")
    console.print(results_table(metrics, fit_metrics, minutes, base_metrics))
    console.print("overlays:\n" + "\n".join(f"  {p}" for p in overlays))
    console.print(f"all overlays in one picture: {overview}")
    console.print(f"checkpoint: {run_dir}  (try: posebh predict --checkpoint {run_dir} ...)")
    return summary


__all__ = ["run_quickstart", "scale_stages", "quickstart_recipe", "plan_training", "Plan", "FULL", "TINY"]
