"""`posebh train-mdt`: the multi-dataset training loop, with HF Accelerate.

Read `train_mdt` top to bottom: build everything from the recipe, then loop over epochs; each epoch applies
its stage (freezing, lr, on_stage_start once), each step asks the method for named losses, sums them,
backpropagates, clips and steps. The same file runs on one device as is, or on many under
`accelerate launch` / `torchrun` (each process reads its own shard through the distributed-aware sampler).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, DataLoader

from posebh_cli.engine.optim import build_optimizer, lr_at, set_lr
from posebh_cli.methods import load_recipe
from posebh_cli.recipe import Recipe
from posebh_cli.engine.stages import apply_stage
from posebh_cli.engine.state import Progress as TrainProgress
from posebh_cli.engine.state import find_state, load_state, progress_dict, save_state
from posebh_cli.errors import PosebhError, fault_point, input_error
from posebh_cli.models.build import build_model

MAIN_METRICS = ("AP", "PCKh", "AUC", "PCK")  # the first one an evaluation returns is "the" metric


def train_mdt(recipe_path: str | Path, out: str | Path | None = None, resume: bool = False, skip_nonfinite: int = 0,
              max_steps: int | None = None, overrides: list[str] | None = None) -> Path:
    """Train a recipe into a run directory; returns the run directory.

    A new run that fails before its first saved state leaves no run directory behind (nothing to resume).
    """
    recipe = load_recipe(recipe_path, overrides)
    _check_arch(recipe, recipe_path)
    run_dir = Path(out) if out is not None else Path("runs") / recipe.name
    _check_run_dir(run_dir, resume)
    fresh = not resume and not run_dir.exists()
    try:
        return _train(recipe, recipe_path, run_dir, resume, skip_nonfinite, max_steps)
    except BaseException:
        # Only rank 0 removes; a run with a saved state is kept for --resume.
        if fresh and os.environ.get("RANK", "0") == "0" and find_state(run_dir / "state") is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _train(recipe: Recipe, recipe_path: str | Path, run_dir: Path, resume: bool, skip_nonfinite: int,
           max_steps: int | None) -> Path:
    train = recipe.train

    accelerator = make_accelerator(recipe, run_dir)
    set_seed(train.seed)
    console = Console(stderr=True, quiet=not accelerator.is_main_process, markup=False)  # paths print as written

    from posebh_cli.data.prepared import open_prepared
    from posebh_cli.methods import METHODS

    if recipe.method not in METHODS:
        raise PosebhError(f"{recipe_path}: field 'method': method {recipe.method!r} is not available in this build "
                          f"(available: {', '.join(METHODS)})")
    method_cls = METHODS[recipe.method]
    prepared = [open_prepared(d.path) for d in recipe.datasets]
    if hasattr(method_cls, "build_model"):  # a method that owns its heads (distill: one union-skeleton head)
        model = method_cls.build_model(recipe, prepared)
    else:
        model = build_model(recipe, [p.skeleton for p in prepared],
                            with_embedding=getattr(method_cls, "needs_embedding", False))
    optimizer = build_optimizer(model, train)  # before any freezing: frozen params just get no gradient
    loader, sampler, datasets, loader_generator = build_train_loader(recipe, prepared, accelerator, recipe_path)

    progress = TrainProgress()
    if resume:
        saved = load_state(run_dir / "state", accelerator, model)
        progress = TrainProgress(**saved["progress"])
        optimizer.load_state_dict(saved["optimizer"])
    model, optimizer = accelerator.prepare(model, optimizer)
    method = method_cls(model, recipe.datasets, recipe.method_config, accelerator)
    if resume:
        method.load_state_dict(saved["method"])
        if accelerator.scaler is not None and saved.get("scaler") is not None:
            accelerator.scaler.load_state_dict(saved["scaler"])
        accelerator.step = progress.micro_step
        _truncate_metrics(run_dir / "metrics.jsonl", progress, accelerator)
        console.print(f"resuming {run_dir} at epoch {progress.epoch}, step {progress.step}")
    unwrapped = accelerator.unwrap_model(model)
    if accelerator.is_main_process and not resume:
        # A fresh start in a folder a killed run left without any state: its log lines are not this run's.
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.yaml").write_text(_yaml(recipe.to_dict()))
    if _has_tensorboard():
        accelerator.init_trackers(recipe.name)

    total_steps = len(loader) * train.epochs // train.grad_accum  # accumulation carries over epoch ends
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    samples_per_step = train.batch_size * train.grad_accum * accelerator.num_processes
    bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[info]}"), console=console, disable=not accelerator.is_main_process)
    task = bar.add_task(recipe.name, total=total_steps, completed=progress.step, info="")
    window = {"time": time.perf_counter(), "last_step": progress.step, "sums": {}, "count": 0}

    model.train()  # frozen modules stay in train mode too (engine/stages.py)
    with bar:
        while progress.epoch < train.epochs and not _done(progress, max_steps):
            epoch = progress.epoch
            stage = recipe.stage_at(epoch)
            apply_stage(unwrapped, stage)
            if progress.stage_started != stage.name:
                method.on_stage_start(stage)
                progress.stage_started = stage.name
            bar.update(task, description=f"{recipe.name} e{epoch} {stage.name}")

            # The sampler continues mid-epoch from the batches already consumed (not from what workers prefetched).
            sampler.load_state_dict({"epoch": epoch, "position": progress.batch_in_epoch * train.batch_size})
            for ds in datasets:
                ds.set_epoch(epoch)
            if hasattr(method, "set_epoch"):  # epoch-dependent weights (distill: KD decay)
                method.set_epoch(epoch, train.epochs)
            loader_generator.manual_seed(train.seed * 100003 + epoch)  # fixed worker seeds per epoch
            for batch in loader:
                batch = _to_device(batch, accelerator.device)
                with accelerator.accumulate(model):
                    losses = method.losses(batch, stage)
                    if not losses:
                        raise PosebhError(f"{recipe_path}: stage {stage.name!r}: field 'losses': no active loss term")
                    total = sum(losses.values())
                    if _nonfinite(losses, total, accelerator, progress, skip_nonfinite, epoch):
                        optimizer.zero_grad(set_to_none=True)
                        progress.batch_in_epoch += 1
                        progress.micro_step += 1
                        continue
                    accelerator.backward(total)
                    if accelerator.sync_gradients and train.clip_grad:
                        params = [p for p in model.parameters() if p.requires_grad]
                        accelerator.clip_grad_norm_(params, train.clip_grad)
                    set_lr(optimizer, lr_at(progress.step, epoch, recipe.stages, train))
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                progress.batch_in_epoch += 1
                progress.micro_step += 1
                _count_undecodable(batch, progress, console)
                _accumulate_log(window, losses, total)
                if not accelerator.sync_gradients:
                    continue
                method.after_step(batch, stage)
                progress.step += 1

                if progress.step % train.log_every_steps == 0 or _done(progress, max_steps):
                    _log(window, progress, epoch, stage.name, optimizer, samples_per_step, run_dir, accelerator,
                         bar, task)
                bar.update(task, completed=progress.step)
                if train.checkpoint_every_steps and progress.step % train.checkpoint_every_steps == 0:
                    _checkpoint(run_dir, accelerator, unwrapped, optimizer, method, progress)
                fault_point("train.step")
                if _done(progress, max_steps):
                    break

            if _done(progress, max_steps) and progress.batch_in_epoch < len(loader):
                break  # stopped mid-epoch by --max-steps: the saved state continues this epoch
            progress.epoch += 1
            progress.batch_in_epoch = 0
            fault_point("train.epoch_end")
            if _due(epoch, train.val_every_epochs, train.epochs):
                _validate(recipe, prepared, unwrapped, run_dir, accelerator, progress, console)
                model.train()
                fault_point("train.validated")
            # Not while gradients are still being accumulated: they are not part of the saved state.
            if _due(epoch, train.checkpoint_every_epochs, train.epochs) and accelerator.sync_gradients:
                _checkpoint(run_dir, accelerator, unwrapped, optimizer, method, progress)

    _checkpoint(run_dir, accelerator, unwrapped, optimizer, method, progress)
    if accelerator.is_main_process:
        _save_model(unwrapped, run_dir, recipe, progress)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if progress.skipped_images:
        console.print(f"{progress.skipped_images} training sample(s) skipped: their image failed to decode",
                      style="yellow", markup=False, soft_wrap=True)
    console.print(f"wrote {run_dir}", markup=False, soft_wrap=True)
    return run_dir


def _check_arch(recipe: Recipe, recipe_path: str | Path) -> None:
    from posebh_cli.models.vit import ARCHS

    if recipe.model.arch not in ARCHS:
        raise input_error(recipe_path, f"unknown architecture {recipe.model.arch!r} (allowed: {', '.join(ARCHS)})",
                          field="model.arch")


def _count_undecodable(batch: dict, progress: TrainProgress, console: Console) -> None:
    """Samples whose image failed to decode trained with zero weight; count them and name each file once."""
    failed = batch.get("decode_failed")
    if failed is None or not bool(failed.any()):
        return
    for flag, meta in zip(failed.tolist(), batch["meta"]):
        if flag:
            progress.skipped_images += 1
            console.print(f"warning: {meta['image_path']}: image failed to decode; sample skipped "
                          f"({progress.skipped_images} so far)", style="yellow", markup=False, highlight=False,
                          soft_wrap=True)


# ------------------------------------------------------------------ building blocks
def make_accelerator(recipe: Recipe, run_dir: Path) -> Accelerator:
    """Accelerate decides the device (GPU when there is one; `ACCELERATE_USE_CPU=1` forces the CPU)."""
    # Frozen groups and heads="own" leave parameters without gradients in a step; DDP must tolerate that.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision=recipe.train.mixed_precision,
                       gradient_accumulation_steps=recipe.train.grad_accum,
                       log_with="tensorboard" if _has_tensorboard() else None,
                       project_dir=str(run_dir), kwargs_handlers=[ddp])


def build_train_loader(recipe: Recipe, prepared: list, accelerator: Accelerator, recipe_path=None):
    """ConcatDataset of one TopDownDataset per recipe dataset (own codec, own half-body flag) + sampler.

    The sampler is distributed-aware (each rank takes its slice of one global order), so the loader is not
    passed through `accelerator.prepare`.
    """
    from posebh_cli.data.codecs import dataset_codec
    from posebh_cli.data.dataset import AugmentConfig, TopDownDataset, collate
    from posebh_cli.data.sampler import MultiDatasetSampler

    train, aug = recipe.train, recipe.train.augmentation
    h, w = recipe.model.img_size
    datasets = []
    for i, (ds, spec) in enumerate(zip(prepared, recipe.datasets)):
        codec = dataset_codec(spec, (h, w))
        augment = AugmentConfig(flip=aug.flip, half_body=aug.half_body if spec.half_body else 0.0,
                                scale_factor=aug.scale_factor, rot_factor=aug.rot_factor)
        datasets.append(TopDownDataset(ds.instances(spec.train_split), ds.skeleton, codec, train=True,
                                       dataset_idx=i, input_size=(w, h), aug=augment, seed=train.seed,
                                       box_padding=spec.box_padding))
        if len(datasets[-1]) == 0:  # its head would never be trained
            raise input_error(recipe_path, f"dataset {spec.name!r} ({spec.path}) has no labelled training sample "
                              f"in split '{spec.train_split}'", field=f"datasets[{i}].path")
    global_batch = train.batch_size * accelerator.num_processes
    if sum(len(d) for d in datasets) < global_batch:
        raise input_error(recipe_path, f"must be at most {sum(len(d) for d in datasets) // accelerator.num_processes} "
                          f"(the training samples of all datasets per process), got {train.batch_size}",
                          field="train.batch_size")
    if train.epoch_length is not None and train.epoch_length < global_batch:
        raise input_error(recipe_path, f"must be at least one global batch ({global_batch} samples), got "
                          f"{train.epoch_length}", field="train.epoch_length")
    ratios = None if recipe.datasets[0].ratio is None else [d.ratio for d in recipe.datasets]
    sampler = MultiDatasetSampler([len(d) for d in datasets], ratios, batch_size=train.batch_size,
                                  num_replicas=accelerator.num_processes, rank=accelerator.process_index,
                                  seed=train.seed, epoch_length=train.epoch_length)
    generator = torch.Generator()  # its own stream: creating an iterator must not consume the global RNG
    loader = DataLoader(ConcatDataset(datasets), batch_size=train.batch_size, sampler=sampler,
                        num_workers=train.num_workers, collate_fn=collate, drop_last=True,
                        pin_memory=accelerator.device.type == "cuda", generator=generator)
    return loader, sampler, datasets, generator


# ------------------------------------------------------------------ steps, logs, checkpoints
def _nonfinite(losses: dict[str, Tensor], total: Tensor, accelerator: Accelerator, progress: TrainProgress,
               allowed: int, epoch: int) -> bool:
    """True when this step must be skipped; raises when no skip is left. Agreed on by all processes."""
    bad = [name for name, value in losses.items() if not torch.isfinite(value.detach()).all()]
    flag = torch.tensor([float(bool(bad) or not torch.isfinite(total.detach()).all())], device=accelerator.device)
    if accelerator.reduce(flag, reduction="sum").item() == 0:
        return False
    if progress.skipped_nonfinite < allowed:
        progress.skipped_nonfinite += 1
        return True
    where = f"loss term '{bad[0]}' is {losses[bad[0]].item()}" if bad else "a loss term is not finite on another process"
    raise PosebhError(f"step {progress.step + 1} (epoch {epoch}): {where}; stopping "
                      f"(--skip-nonfinite N skips up to N such steps; {progress.skipped_nonfinite} skipped so far)")


def _accumulate_log(window: dict, losses: dict[str, Tensor], total: Tensor) -> None:
    """Running sums stay on the device; they are read (one sync) only when a log line is written."""
    sums = window["sums"]
    for name, value in [("loss", total), *losses.items()]:
        sums[name] = sums.get(name, 0.0) + value.detach().float()
    window["count"] += 1


def _log(window: dict, progress: TrainProgress, epoch: int, stage: str, optimizer, samples_per_step: int,
         run_dir: Path, accelerator: Accelerator, bar: Progress, task) -> None:
    """Mean loss terms since the last log line, samples/s and the base lr: to the bar, trackers and metrics.jsonl."""
    now = time.perf_counter()
    values = {name: float(total) / max(1, window["count"]) for name, total in window["sums"].items()}
    steps = progress.step - window["last_step"]
    values["samples_per_s"] = samples_per_step * steps / max(now - window["time"], 1e-9)
    group = optimizer.param_groups[-1]
    values["lr"] = group["lr"] / group.get("lr_scale", 1.0)
    window.update(time=now, last_step=progress.step, sums={}, count=0)
    accelerator.log(values, step=progress.step)
    terms: dict[str, float] = {}  # per-dataset terms summed by kind for the bar: heatmap, proto_ppc, ...
    for name, value in values.items():
        if name not in ("loss", "samples_per_s", "lr"):
            terms[name.split("/")[0]] = terms.get(name.split("/")[0], 0.0) + value
    shown = "  ".join(f"{name} {value:.3g}" for name, value in terms.items())
    bar.update(task, info=f"loss {values['loss']:.3g} ({shown})  {values['samples_per_s']:.1f} samples/s  "
                          f"lr {values['lr']:.2e}")
    _append_metrics(run_dir, {"step": progress.step, "epoch": epoch, "stage": stage, **values}, accelerator)


def _append_metrics(run_dir: Path, record: dict, accelerator: Accelerator) -> None:
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, progress: TrainProgress, accelerator: Accelerator) -> None:
    """On resume, drop log lines written after the checkpoint (the killed run's lost steps and validations).

    A validation record (no "stage" key) carries the epoch count after its epoch; one written after a state
    saved at the same step but before that epoch ended is repeated by the resumed run, so it goes too.
    """
    if not accelerator.is_main_process or not path.is_file():
        return

    def before_checkpoint(line: str) -> bool:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return False  # a line torn by the kill
        if record.get("step", 0) > progress.step:
            return False
        return "stage" in record or record.get("epoch", 0) <= progress.epoch

    kept = [line for line in path.read_text().splitlines() if line and before_checkpoint(line)]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


def _checkpoint(run_dir: Path, accelerator: Accelerator, model: nn.Module, optimizer, method,
                progress: TrainProgress) -> None:
    trainer_state = {
        "progress": progress_dict(progress),
        "optimizer": optimizer.state_dict(),
        "scaler": None if accelerator.scaler is None else accelerator.scaler.state_dict(),
        "method": method.state_dict(),
    }
    save_state(run_dir / "state", accelerator, model, trainer_state)


def _validate(recipe: Recipe, prepared: list, model: nn.Module, run_dir: Path, accelerator: Accelerator,
              progress: TrainProgress, console: Console) -> None:
    """Evaluate every dataset with a val split on the main process; keep the best checkpoint in best/.

    "Best" is the mean over datasets of each one's main metric (AP, or PCKh for MPII-like sets).
    """
    if accelerator.is_main_process:
        from posebh_cli.inference.evaluate import evaluate_model

        record, mains = {"step": progress.step, "epoch": progress.epoch}, []
        for spec, ds in zip(recipe.datasets, prepared):
            if spec.val_split is None:
                continue
            metrics = evaluate_model(model, ds, spec.val_split, spec.name,
                                     batch_size=recipe.train.val_batch_size, max_images=recipe.train.val_max_images,
                                     recipe=recipe.to_dict())  # the codec and flip test the heads trained with
            record.update({f"val/{spec.name}/{k}": v for k, v in metrics.items()})
            main = next((k for k in MAIN_METRICS if k in metrics), None)
            if main is not None:
                mains.append(metrics[main])
        if mains:
            record["val/main"] = sum(mains) / len(mains)
            console.print(f"epoch {progress.epoch}: val main metric {record['val/main']:.4f}")
            if progress.best_metric is None or record["val/main"] > progress.best_metric:
                progress.best_metric = record["val/main"]
                _save_model(model, run_dir / "best", recipe, progress)
        accelerator.log({k: v for k, v in record.items() if k.startswith("val/")}, step=progress.step)
        _append_metrics(run_dir, record, accelerator)
    accelerator.wait_for_everyone()
    best = torch.tensor([progress.best_metric if progress.best_metric is not None else float("nan")],
                        device=accelerator.device)
    best = float(accelerator.reduce(best, reduction="sum").item() / accelerator.num_processes)
    progress.best_metric = None if math.isnan(best) else best  # every process keeps the same state


def _save_model(model: nn.Module, target: Path, recipe: Recipe, progress: TrainProgress) -> None:
    """model.safetensors + model.json (save_checkpoint writes each under a temp name and renames)."""
    from posebh_cli.models.checkpoint import save_checkpoint

    save_checkpoint(model, target, recipe=recipe.to_dict(),
                    extra={"step": progress.step, "epoch": progress.epoch, "best_metric": progress.best_metric})


# ------------------------------------------------------------------ small helpers
def _check_run_dir(run_dir: Path, resume: bool) -> None:
    has_state = find_state(run_dir / "state") is not None
    if resume and not has_state:
        raise PosebhError(f"{run_dir}: no training state to resume from (state/ is missing)")
    if not resume and (has_state or (run_dir / "model.safetensors").exists()):
        raise PosebhError(f"{run_dir}: already holds a run; pass --resume to continue it or choose another --out")


def _done(progress: TrainProgress, max_steps: int | None) -> bool:
    return max_steps is not None and progress.step >= max_steps


def _due(epoch: int, every: int, epochs: int) -> bool:
    """Every `every` epochs (counting from 1) and after the last one; 0 = never."""
    return every > 0 and ((epoch + 1) % every == 0 or epoch + 1 == epochs)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
