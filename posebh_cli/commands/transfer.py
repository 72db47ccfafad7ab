"""Transfer to a new skeleton (paper §4.5): nonparametric prototype fitting, and fine-tuning from a multi-dataset model.

* `fit_prototypes_run` (`posebh fit-prototypes`): backbone and embedding frozen; the new skeleton's prototypes are
  fitted from embeddings at its labelled keypoints (`methods/prototype_fit.py`). The output is the source model
  split to one expert with the new skeleton appended to its prototype bank (no head for it), so it predicts the
  new skeleton through prototype heatmaps right away (`posebh predict --prototypes NAME`).
* the recipe init `{kind: transfer, path, expert}` is model surgery: `models/transfer.py`.
* `finetune_transfer` (`posebh finetune-transfer`): `train_mdt` on a transfer recipe; the protocol (frozen
  embedding, prototypes fitted then frozen, backbone frozen then thawed, Adam) is data in the recipe's stages.
* `transfer_run` (`posebh transfer`): picks the recipe for a target and protocol, fits the prototypes first
  (PoseBH protocol), then fine-tunes. The source is `--checkpoint` (a model name or a path), else the recipe's
  `model.init.path` when it exists, else the default model; the data is `--data`, else the recipe's path (for
  `--zoo`, also the quickstart's folder). Every missing input is listed at once with the command that makes it.
  The new model takes the source's architecture and input size (`--set model.img_size=[h, w]` asks for another
  size; the position table is then interpolated).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape

from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import atomic_folder, is_main_process
from posebh_cli.models.transfer import append_prototypes, choose_expert
from posebh_cli.recipe import bundled_recipes, find_recipe

TARGETS = ("3dpw", "interhand")
PROTOCOLS = ("posebh", "baseline")
QUICKSTART_DIR = Path("posebh-quickstart")  # `posebh quickstart`'s default folder: prepared/<name>, runs/posebh
# What makes each target's prepared dataset (the recipes' default places are data/prepared/<target>).
PREPARE_HINTS = {"3dpw": "posebh prepare-data 3dpw --src <3DPW root with imageFiles/ and sequenceFiles/> --out {path}",
                 "interhand": "posebh prepare-data interhand --src <InterHand2.6M root> --out {path}"}
ZOO_PREPARE_HINT = "posebh synth --out zoo --datasets {name} && posebh prepare-data {name} --src zoo/{name} --out {path}"


# ------------------------------------------------------------------ shared pieces
def default_box_padding(prepared) -> float:
    """InterHand boxes are padded x1.5 in the annotations already (mmpose), so they are cropped as they are."""
    return 1.0 if "interhand" in (prepared.source_format or "").lower() else 1.25


# ------------------------------------------------------------------ fit-prototypes
def fit_prototypes_run(checkpoint: str | Path | None, data: str | Path, split: str = "train", out: str | Path | None = None,
                       max_images: int | None = None, expert: str | None = None, epochs: int = 10,
                       algorithm: str = "sinkhorn", batch_size: int = 32, box_padding: float | None = None,
                       val_split: str | None = None, val_max_images: int | None = None, device: str | None = None,
                       progress: bool = True, console: Console | None = None) -> tuple[Path, dict]:
    """Fit the prototypes of a prepared dataset's skeleton into a frozen PoseBH model; returns (out dir, val metrics).

    The metrics are those of the prototype heatmaps on `val_split` (default: val, else test; {} when neither).
    """
    from posebh_cli.data.codecs import make_codec
    from posebh_cli.data.dataset import TopDownDataset, collate
    from posebh_cli.data.prepared import open_prepared
    from posebh_cli.inference.evaluate import evaluate_model
    from posebh_cli.inference.predictor import default_flip_test, load_checkpoint
    from posebh_cli.methods.prototype_fit import FitConfig, collect_pixels, fit_prototypes
    from posebh_cli.models.checkpoint import save_checkpoint

    from posebh_cli.commands.devices import resolve_device
    from posebh_cli.models.store import resolve_checkpoint

    console = console or Console(stderr=True, quiet=not is_main_process())
    device = resolve_device(device)
    checkpoint = resolve_checkpoint(checkpoint)  # a model name or a path; None: the default model
    source, source_recipe = load_checkpoint(checkpoint)
    # the mirrored crops are embedded too where the model is flip-tested, i.e. unless it trained without flips
    config = FitConfig(algorithm=algorithm, epochs=epochs, flip=default_flip_test(source_recipe))
    config.check()
    if not source.with_embedding:
        raise input_error(checkpoint, "has no keypoint embedding; fit-prototypes needs a PoseBH checkpoint",
                          field="with_embedding")
    expert = choose_expert(source, expert, checkpoint)
    plain = source.split(expert).to(device).eval()
    prepared = open_prepared(data)
    name, skeleton = prepared.name, prepared.skeleton
    if name in plain.datasets:
        raise input_error(data, f"dataset name {name!r} is also the expert's; the new skeleton needs its own name",
                          field="name")
    if split not in prepared.splits:
        raise input_error(data, f"no split {split!r} (has {', '.join(prepared.splits)})", field="splits")
    val_split = val_split or next((s for s in ("val", "test") if s in prepared.splits and s != split), None)
    padding = box_padding if box_padding is not None else default_box_padding(prepared)

    h, w = plain.config.img_size
    codec = make_codec("msra", input_size=(w, h), heatmap_size=(w // 4, h // 4), sigma=2.0)
    instances = prepared.instances(split)
    if max_images is not None:
        keep = set(sorted({inst.image_id for inst in instances})[:max_images])
        instances = [inst for inst in instances if inst.image_id in keep]
    if not instances:
        raise input_error(prepared.split_path(split), "no labelled instance to fit prototypes from")
    dataset = TopDownDataset(instances, skeleton, codec, train=False, dataset_idx=0, input_size=(w, h),
                             box_padding=padding)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    pixels = collect_pixels(plain, loader, skeleton.num_keypoints, skeleton.flip_indices, config, progress)
    result = fit_prototypes(pixels, skeleton.num_keypoints, plain.config.prototypes_per_keypoint, config)
    if result.empty:
        missing = ", ".join(skeleton.keypoints[k] for k in result.empty)
        console.print(f"[yellow]warning:[/] no labelled pixel for {escape(str(missing))}; "
                      "their prototypes stay random")

    model = append_prototypes(plain, name, skeleton, result.prototypes)
    recipe = {"name": f"fit-prototypes-{name}",
              "datasets": [{"name": name, "path": str(data), "train_split": split, "val_split": val_split,
                            "codec": "msra", "sigma": 2.0, "box_padding": padding}]}
    if not config.flip:  # the fitted model is tested as its source: without flip test
        recipe["train"] = {"augmentation": {"flip": 0.0}}
    metrics = {}
    if val_split is not None:
        metrics = evaluate_model(model, prepared, val_split, name, source="prototypes", recipe=recipe,
                                 max_images=val_max_images, batch_size=batch_size, device=device)
    summary = {"checkpoint": str(checkpoint), "expert": expert, "data": str(data), "split": split,
               "images": len({inst.image_id for inst in instances}), "instances": len(instances),
               "algorithm": algorithm, "epochs": epochs, "box_padding": padding,
               "pixels_per_keypoint": result.pixels_per_keypoint, "val_split": val_split, "metrics": metrics}
    out = Path(out) if out is not None else Path("runs") / f"fit-{name}"

    def write(tmp: Path) -> None:
        save_checkpoint(model.cpu(), tmp, recipe=recipe, extra={"fit_prototypes": summary})
        (tmp / "fit.json").write_text(json.dumps(summary, indent=2) + "\n")

    with atomic_folder(out) as tmp:
        write(tmp)
    return out, metrics


# ------------------------------------------------------------------ fine-tuning
def finetune_transfer(recipe: str | Path, out: str | Path | None = None, resume: bool = False,
                      overrides: list[str] | None = None) -> tuple[Path, dict]:
    """Train a transfer recipe (train_mdt); returns (run dir, the last validation metrics of its dataset)."""
    from posebh_cli.methods import load_recipe
    from posebh_cli.engine.trainer import train_mdt

    parsed = load_recipe(recipe, overrides)
    if len(parsed.datasets) != 1:
        raise input_error(recipe, f"a transfer recipe trains one target dataset, got {len(parsed.datasets)}",
                          field="datasets")
    if parsed.model.init.kind != "transfer" and not resume:
        raise input_error(recipe, f"a transfer recipe starts from a source model; got init kind "
                                  f"{parsed.model.init.kind!r}", field="model.init.kind")
    run_dir = train_mdt(recipe, out=out, resume=resume, overrides=overrides)
    return run_dir, last_validation(run_dir, parsed.datasets[0].name)


def last_validation(run_dir: Path, dataset: str) -> dict:
    """The metrics of the last validation record of `dataset` in a run's metrics.jsonl ({} when none)."""
    path = Path(run_dir) / "metrics.jsonl"
    prefix = f"val/{dataset}/"
    found: dict = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            values = {k[len(prefix):]: v for k, v in record.items() if k.startswith(prefix)}
            if values:
                found = values
    return found


def transfer_recipe(target: str, protocol: str = "posebh", zoo: bool = False) -> Path:
    """The bundled [zoo-]transfer-<target>[-baseline] recipe for a named target; any other target is a recipe path
    or bundled recipe name."""
    if protocol not in PROTOCOLS:
        raise PosebhError(f"--protocol: must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if target not in TARGETS:
        try:
            return find_recipe(target)
        except PosebhError:
            raise PosebhError(f"--target: {target!r} is neither {' nor '.join(TARGETS)} nor a recipe file "
                              f"or bundled recipe ({', '.join(bundled_recipes())})") from None
    return find_recipe(f"{'zoo-' if zoo else ''}transfer-{target}{'-baseline' if protocol == 'baseline' else ''}")


def transfer_run(target: str, protocol: str | None = None, zoo: bool = False,
                 checkpoint: str | Path | None = None, data: str | Path | None = None, out: str | Path | None = None,
                 resume: bool = False, overrides: list[str] | None = None, fit: bool = True,
                 device: str | None = None, console: Console | None = None) -> tuple[Path, dict]:
    """`posebh transfer`: the target's recipe; with the PoseBH protocol and `fit`, the prototypes are fitted first
    (into `<run>/fit`, which then initialises the run) instead of starting from random directions.

    `protocol` None is posebh when the source model has a keypoint embedding, else baseline (a ViTPose++ model).
    """
    from posebh_cli.methods import load_recipe
    from posebh_cli.models.checkpoint import load_model

    console = console or Console(stderr=True, quiet=not is_main_process())
    overrides = list(overrides or [])
    raw_recipe = load_recipe(transfer_recipe(target, protocol or "posebh", zoo), overrides, check_paths=False)
    source, data_path, missing = _transfer_inputs(raw_recipe, target, zoo, checkpoint, data)
    if missing:
        raise PosebhError(f"posebh transfer --target {target}: missing inputs: " + "; ".join(missing))
    source_model = load_model(source)
    if protocol is None:
        protocol = "posebh" if source_model.with_embedding else "baseline"
        if protocol == "baseline":
            console.print(f"{source}: no keypoint embedding (a ViTPose++ model): using the baseline protocol "
                          "(full fine-tuning); a PoseBH model gets the PoseBH protocol", markup=False)
    recipe = transfer_recipe(target, protocol, zoo)
    overrides += [f"model.init.path={source}", f"datasets.0.path={data_path}",
                  f"model.arch={source_model.config.arch}"]
    if not any(item.split("=", 1)[0].strip() == "model.img_size" for item in overrides):
        h, w = source_model.config.img_size  # the source's input size unless the user asks for another
        overrides.append(f"model.img_size=[{h}, {w}]")
    del source_model
    parsed = load_recipe(recipe, overrides)
    console.print(f"transfer {parsed.name}: source {source}, data {data_path}, input "
                  f"{parsed.model.img_size[0]}x{parsed.model.img_size[1]}", markup=False)
    run_dir = Path(out) if out is not None else Path("runs") / parsed.name
    if fit and parsed.method == "posebh" and parsed.model.init.kind == "transfer" and not resume:
        spec = parsed.datasets[0]
        fit_dir = run_dir / "fit"
        with _main_process_first():  # the main process fits; the others then find its finished fit
            if not (fit_dir / "fit.json").is_file():  # a finished fit from an earlier attempt is reused
                _, metrics = fit_prototypes_run(parsed.model.init.path, spec.path, split=spec.train_split,
                                                out=fit_dir, expert=parsed.model.init.expert,
                                                box_padding=spec.box_padding, val_split=spec.val_split,
                                                val_max_images=parsed.train.val_max_images, device=device,
                                                console=console)
                if metrics:
                    console.print("prototypes only: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        overrides += [f"model.init.path={fit_dir}", f"model.init.expert={_expert_of(fit_dir)}"]
    return finetune_transfer(recipe, out=run_dir, resume=resume, overrides=overrides)


def _transfer_inputs(recipe, target: str, zoo: bool, checkpoint: str | Path | None,
                     data: str | Path | None) -> tuple[Path | None, Path, list[str]]:
    """(source checkpoint, prepared dataset, every missing input with the command that makes it)."""
    from posebh_cli.models.store import resolve_checkpoint

    missing = []
    spec = recipe.datasets[0]
    data_path = Path(data) if data is not None else Path(spec.path)
    quickstart_data = QUICKSTART_DIR / "prepared" / spec.name
    if data is None and zoo and not (data_path / "meta.yaml").is_file() and (quickstart_data / "meta.yaml").is_file():
        data_path = quickstart_data
    if not (data_path / "meta.yaml").is_file():
        hint = (ZOO_PREPARE_HINT if zoo else PREPARE_HINTS.get(target, "posebh prepare-data FORMAT --src SRC "
                                                                       "--out {path}")).format(path=data_path,
                                                                                               name=spec.name)
        missing.append(f"prepared dataset {data_path} (make it with `{hint}`, or give --data)")
    source = None
    if checkpoint is not None:
        try:
            source = resolve_checkpoint(checkpoint)
        except PosebhError as exc:
            missing.append(f"source model: {exc}")
    else:
        init_path = Path(recipe.model.init.path) if recipe.model.init.path else None
        quickstart_run = QUICKSTART_DIR / "runs" / "posebh"
        if init_path is not None and init_path.exists():
            source = init_path
        elif zoo and (quickstart_run / "model.json").is_file():
            source = quickstart_run
        else:
            try:
                source = resolve_checkpoint(None)
            except PosebhError as exc:
                missing.append(f"source model (--checkpoint NAME or PATH; the recipe's {init_path} does not "
                               f"exist): {exc}")
    return source, data_path, missing


def _main_process_first():
    """Under a multi-process launch the main process runs the block first (the others wait, then run it)."""
    import contextlib
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return contextlib.nullcontext()
    from accelerate import PartialState

    return PartialState().main_process_first()


def _expert_of(fit_dir: Path) -> str:
    return json.loads((fit_dir / "fit.json").read_text())["expert"]


__all__ = ["transfer_recipe", "finetune_transfer", "fit_prototypes_run",
           "last_validation", "transfer_run"]
