"""The `posebh` command: parse options, call one function per command, print with rich.

No logic lives here. Every command runs inside `_user_errors`, which turns a `PosebhError` into one red
line on stderr and exit status 2 (no traceback for user mistakes); an OS refusal (disk full, read-only folder,
permission) is one line too, exit 1 for a full disk, else 2. Usage errors (a missing or invalid option) are one
line, exit 2. User text (paths, names, messages) is printed without rich markup: `pose[bold]v2.yaml` stays as written.

The options several commands share (`--checkpoint`, `--device`, `--recipe`, `--set`) are defined once below and
reused. Under a multi-process launch (torchrun / accelerate) only the main process prints to stdout.
"""
from __future__ import annotations

import errno
import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

try:  # typer vendors its own click (typer._click) in recent versions; its exceptions come from there
    from typer._click import exceptions as click_exceptions
    from typer.exceptions import Abort as _Abort
except ImportError:
    from click import exceptions as click_exceptions
    from click.exceptions import Abort as _Abort

from posebh_cli.errors import PosebhError
from posebh_cli.files import is_main_process


class _OneLineUsageErrors(TyperGroup):
    """Click usage errors as one line (`error: posebh CMD: Missing option '--src'.`), exit 2, not a rich box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        except click_exceptions.NoArgsIsHelpError as exc:  # `posebh` alone: the help is already printed
            sys.exit(exc.exit_code)
        except click_exceptions.ClickException as exc:
            where = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "posebh"
            err_console.print(f"[bold red]error:[/] {escape(where)}: {escape(exc.format_message())} "
                              f"(see {escape(where)} --help)", highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except _Abort:
            err_console.print("aborted", highlight=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # non-standalone click returns an Exit's code


app = typer.Typer(cls=_OneLineUsageErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Multi-dataset 2D pose estimation across heterogeneous skeletons (PoseBH, ViTPose++, ACAE, KD).")
skeletons_app = typer.Typer(no_args_is_help=True, help="List and show the built-in skeletons.")
app.add_typer(skeletons_app, name="skeletons")
recipes_app = typer.Typer(no_args_is_help=True, help="List and show the bundled recipes.")
app.add_typer(recipes_app, name="recipes")
models_app = typer.Typer(no_args_is_help=True, help="Named local models: list, add (copy or convert once), "
                                                     "choose the default. Nothing is downloaded.")
app.add_typer(models_app, name="models")

# ---------------------------------------------------------------- options shared by several commands
CheckpointOption = Annotated[Optional[str], typer.Option(
    "--checkpoint", help="Model name (posebh models list) or checkpoint folder / .safetensors / official .pth "
                         "(default: the default model).")]
DeviceOption = Annotated[Optional[str], typer.Option(
    "--device", help="cpu, cuda, cuda:1, ... (default: cuda when available, else cpu).")]
RecipeOption = Annotated[str, typer.Option(
    "--recipe", help="Recipe: a bundled name (vitb, vitb.yaml; posebh recipes list) or a YAML path.")]
SetOption = Annotated[list[str], typer.Option(
    "--set", help="Override a recipe key, e.g. --set train.epochs=1 (stages are scaled to it; repeatable).")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version  # the installed distribution's (cli sits below the package root)

        print(f"posebh {version('posebh')}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """Multi-dataset 2D pose estimation across heterogeneous skeletons (PoseBH, ViTPose++, ACAE, KD)."""

# stdout carries tables and lines full of user text (paths, names), so it reads no markup at all; stderr keeps
# markup for the red "error:" and escapes the message.
console = Console(markup=False, quiet=not is_main_process())  # other ranks stay silent
err_console = Console(stderr=True)


def _one_line(exc: PosebhError) -> str:
    """The error's own message; an error re-raised from a DataLoader worker carries the worker's traceback."""
    message = str(exc).strip()
    if "Original Traceback" in message:
        message = message.splitlines()[-1].split("PosebhError: ", 1)[-1]
    return message


# OS refusals that are the user's or the machine's situation, not a bug: one line, no traceback.
_OS_ERRORS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
              errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}


def _error_line(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _user_errors(fn):
    """Run a command; a PosebhError or an OS refusal becomes one line on stderr, exit status 2 (disk full: 1)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PosebhError as exc:
            _error_line(_one_line(exc))
            raise typer.Exit(code=PosebhError.exit_code) from None
        except OSError as exc:
            if exc.errno not in _OS_ERRORS:
                raise
            where = exc.filename if exc.filename is not None else "output"
            _error_line(f"{where}: {_OS_ERRORS[exc.errno]} ({exc.strerror}); nothing was left half-written")
            # A full disk is the machine's state (exit 1); a read-only or forbidden path is the user's choice (2).
            raise typer.Exit(code=1 if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 2) from None

    return wrapper


# ---------------------------------------------------------------- quickstart
@app.command("quickstart")
@_user_errors
def quickstart(
    out: Path = typer.Option(Path("posebh-quickstart"), "--out", help="Working folder; re-running continues in it."),
    minutes_budget: float = typer.Option(15.0, "--minutes-budget", help="Time budget; training epochs fit in it."),
    seed: int = typer.Option(0, "--seed", help="Seed of the zoo and of training."),
    tiny: bool = typer.Option(False, "--tiny", help="A few images and epochs: checks the whole flow in about a minute."),
    from_scratch: bool = typer.Option(False, "--from-scratch", help="Train the whole PoseBH model from random weights "
                                      "instead of starting from the shipped zoo base model (zoo-base)."),
    device: DeviceOption = None,
) -> None:
    """Synthetic zoo -> prepare -> train PoseBH on six datasets -> fit a new skeleton -> evaluate -> predict photos."""
    from posebh_cli.commands.quickstart import run_quickstart
    from posebh_cli.commands.train import use_training_device

    if use_training_device(device) == "cpu":
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # every step of the quickstart picks the best device: hide the GPUs

    run_quickstart(out, minutes_budget=minutes_budget, seed=seed, tiny=tiny, console=Console(),
                   from_scratch=from_scratch)


# ---------------------------------------------------------------- skeletons
@skeletons_app.command("list")
@_user_errors
def skeletons_list() -> None:
    """List the built-in skeletons with their keypoint counts."""
    from posebh_cli.commands.skeletons import skeletons_table

    console.print(skeletons_table())


@skeletons_app.command("show")
@_user_errors
def skeletons_show(name: str = typer.Argument(..., help="Built-in skeleton name or path to a skeleton YAML file.")) -> None:
    """Show one skeleton: every keypoint with its index, sigma and mirror."""
    from posebh_cli.commands.skeletons import skeleton_table
    from posebh_cli.skeletons import load_skeleton

    sk = load_skeleton(name)
    console.print(skeleton_table(sk))
    if sk.parts:
        console.print("parts: " + ", ".join(f"{k}=[{a},{b})" for k, (a, b) in sk.parts.items()))
    if sk.notes:
        console.print(sk.notes)


# ---------------------------------------------------------------- recipes
@recipes_app.command("list")
@_user_errors
def recipes_list() -> None:
    """List the recipes bundled with posebh (usable by name, e.g. --recipe zoo-pico-posebh)."""
    from posebh_cli.commands.recipes import recipes_table

    console.print(recipes_table())


@recipes_app.command("show")
@_user_errors
def recipes_show(name: str = typer.Argument(..., help="Bundled recipe name (or a path to a recipe YAML).")) -> None:
    """Print one recipe's YAML (copy it to start your own)."""
    from posebh_cli.commands.recipes import recipe_text

    print(recipe_text(name), end="")


# ---------------------------------------------------------------- synth
@app.command("synth")
@_user_errors
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the datasets into (one sub-folder per dataset)."),
    seed: int = typer.Option(0, "--seed", help="Same seed and options give byte-identical files."),
    scale: float = typer.Option(1.0, "--scale", help="Multiply the default dataset sizes."),
    sizes: Optional[str] = typer.Option(None, "--sizes", help="Training images per dataset, e.g. coco=2000,aic=3000."),
    datasets: Optional[str] = typer.Option(None, "--datasets", help="Comma-separated subset, e.g. coco,mpii (default all)."),
    image_size: str = typer.Option("256x192", "--image-size", help="WIDTHxHEIGHT of the images."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes that render images (default up to 2)."),
) -> None:
    """Generate the synthetic skeleton zoo: every dataset in its native format, plus hidden all-skeleton ground truth."""
    from posebh_cli.commands.synth import synth_command, synth_table

    summary = synth_command(str(out), seed, scale, sizes, datasets, image_size, workers)
    console.print(synth_table(out, summary))


# ---------------------------------------------------------------- prepare-data
@app.command("prepare-data")
@_user_errors
def prepare_data(
    fmt: str = typer.Argument(..., metavar="FORMAT",
                              help="coco | aic | mpii | ap10k | apt36k | coco_wholebody | interhand | 3dpw"),
    src: Path = typer.Option(..., "--src", help="Dataset root folder in its official layout."),
    out: Path = typer.Option(..., "--out", help="Prepared dataset folder to create (must not exist)."),
    skip_missing: bool = typer.Option(False, "--skip-missing",
                                      help="Drop (and count) images whose file is missing or unreadable."),
    seed: int = typer.Option(0, "--seed", help="Seed of the APT-36K video split."),
    check_images: bool = typer.Option(True, "--check-images/--no-check-images",
                                      help="Check that every listed image exists and is readable (header and end "
                                           "marker)."),
    verify_images: bool = typer.Option(False, "--verify-images", help="Decode every image fully (slower)."),
    detections: Optional[Path] = typer.Option(None, "--detections",
                                              help="COCO detection results for val (coco, coco_wholebody)."),
) -> None:
    """Convert a dataset from its native files into a prepared dataset (COCO-style JSON per split + meta.yaml)."""
    from posebh_cli.commands.prepare import prepare_dataset, summary_table

    summary = prepare_dataset(fmt, src, out, skip_missing=skip_missing, seed=seed, check_images=check_images,
                              detections=detections, verify_images=verify_images)
    console.print(summary_table(summary))
    for note in summary["notes"]:
        console.print(note, highlight=False)


# ---------------------------------------------------------------- train-mdt
@app.command("train-mdt")
@_user_errors
def train_mdt(
    recipe: RecipeOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<recipe name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    skip_nonfinite: int = typer.Option(0, "--skip-nonfinite", min=0, help="Skip up to N steps with a NaN/inf loss."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop after N optimizer steps."),
    set_: SetOption = [],
    device: DeviceOption = None,
) -> None:
    """Train one model on the recipe's datasets (multi-head baseline or PoseBH), on 1..N devices."""
    from posebh_cli.commands.train import train_command

    train_command(recipe, device=device, out=out, resume=resume, skip_nonfinite=skip_nonfinite,
                  max_steps=max_steps, overrides=set_)


# ---------------------------------------------------------------- fit-prototypes, finetune-transfer, transfer
def _print_transfer_metrics(title: str, metrics: dict) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}")
    if metrics:
        console.print(table)


@app.command("fit-prototypes")
@_user_errors
def fit_prototypes(
    checkpoint: CheckpointOption = None,
    data: Path = typer.Option(..., "--data", help="Prepared dataset of the new skeleton."),
    split: str = typer.Option("train", "--split", help="Labelled split to fit from."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output checkpoint folder (default runs/fit-<dataset>)."),
    max_images: Optional[int] = typer.Option(None, "--max-images", min=1, help="Use only the first N images."),
    expert: Optional[str] = typer.Option(None, "--expert", help="Source dataset whose expert runs (default coco)."),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Passes of the fitting algorithm over the pixels."),
    algorithm: str = typer.Option("sinkhorn", "--algorithm", help="sinkhorn (Sinkhorn + momentum) or kmeans."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Crops per forward pass."),
    box_padding: Optional[float] = typer.Option(None, "--box-padding", help="Crop = box x this (default 1.25; "
                                                "1.0 for InterHand, whose boxes are padded already)."),
    val_max_images: Optional[int] = typer.Option(None, "--val-max-images", min=1, help="Score on N val images."),
    device: DeviceOption = None,
) -> None:
    """Add a new skeleton to a frozen PoseBH model by fitting its keypoint prototypes (no gradient training)."""
    from posebh_cli.commands.transfer import fit_prototypes_run

    where, metrics = fit_prototypes_run(checkpoint, data, split=split, out=out, max_images=max_images, expert=expert,
                                        epochs=epochs, algorithm=algorithm, batch_size=batch_size,
                                        box_padding=box_padding, val_max_images=val_max_images, device=device,
                                        console=err_console)
    _print_transfer_metrics("prototype heatmaps, validation", metrics)
    console.print(f"wrote {where}")


@app.command("finetune-transfer")
@_user_errors
def finetune_transfer(
    recipe: RecipeOption,
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<recipe name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    set_: SetOption = [],
    device: DeviceOption = None,
) -> None:
    """Fine-tune a multi-dataset model on a new skeleton with the recipe's transfer protocol."""
    from posebh_cli.commands.train import use_training_device
    from posebh_cli.commands.transfer import finetune_transfer as run

    use_training_device(device)
    where, metrics = run(recipe, out=out, resume=resume, overrides=set_)
    _print_transfer_metrics(f"{where}: last validation", metrics)


@app.command("transfer")
@_user_errors
def transfer(
    target: str = typer.Option(..., "--target", help="3dpw, interhand, or a transfer recipe (YAML or bundled name)."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="posebh (paper 4.5) or baseline (full "
                                           "fine-tuning); default: posebh for a PoseBH source, else baseline."),
    zoo: bool = typer.Option(False, "--zoo", help="Use the synthetic-zoo CPU recipes (zoo-transfer-*.yaml); finds "
                             "posebh quickstart's folder (posebh-quickstart/) too."),
    checkpoint: Annotated[Optional[str], typer.Option(
        "--checkpoint", help="Source model: a name or a path (default: the recipe's model.init.path when it exists, "
                             "else the default model).")] = None,
    data: Optional[Path] = typer.Option(None, "--data", help="Prepared dataset of the target (default: the recipe's, "
                                        "data/prepared/<target>)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<recipe name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    fit: bool = typer.Option(True, "--fit/--no-fit", help="PoseBH protocol: fit the prototypes before training."),
    set_: SetOption = [],
    device: DeviceOption = None,
) -> None:
    """Transfer to 3DPW or InterHand2.6M (or any recipe): fit prototypes, then fine-tune (alias of finetune-transfer)."""
    from posebh_cli.commands.train import use_training_device
    from posebh_cli.commands.transfer import transfer_run

    device = use_training_device(device)
    where, metrics = transfer_run(target, protocol=protocol, zoo=zoo, checkpoint=checkpoint, data=data, out=out,
                                  resume=resume, overrides=set_, fit=fit, device=device,
                                  console=Console(stderr=True, quiet=not is_main_process()))
    _print_transfer_metrics(f"{where}: last validation", metrics)


# ---------------------------------------------------------------- fit-acae
@app.command("fit-acae")
@_user_errors
def fit_acae(
    checkpoint: CheckpointOption = None,
    recipe: RecipeOption = ...,
    out: Path = typer.Option(..., "--out", help="ACAE folder to write (acae.safetensors, acae.json, latents.png)."),
    latents: Optional[int] = typer.Option(None, "--latents", help="Latent points L (default min(48, joints/2))."),
    centre_latents: Optional[int] = typer.Option(None, "--centre-latents", help="Centre latents (default ~L/6)."),
    lam: float = typer.Option(0.6, "--lambda", help="Sparsity weight on mean|W_enc| + mean|W_dec|."),
    steps: int = typer.Option(2000, "--steps", help="Adam steps (lr 3e-2, x0.1 at 1/2 and 4/5)."),
    max_instances: int = typer.Option(2000, "--max-instances", help="Training crops per dataset for the pseudo-GT."),
    min_score: float = typer.Option(0.2, "--min-score", help="Drop crops where a head's mean max-heatmap is lower."),
    heads: Optional[str] = typer.Option(None, "--heads", help="Comma-separated heads (default: the first head's body plan)."),
    use_gt: bool = typer.Option(False, "--use-gt", help="Overwrite the own head's prediction with labelled GT."),
    device: DeviceOption = None,
) -> None:
    """Fit the affine-combining autoencoder on every head's pseudo-GT (ACAE step 2), for `method: acae`."""
    from posebh_cli.commands.fit_acae import fit_acae_command

    summary = fit_acae_command(checkpoint, recipe, out, latents=latents, centre_latents=centre_latents, lam=lam,
                               steps=steps, max_instances=max_instances, min_score=min_score,
                               heads=heads.split(",") if heads else None, use_gt=use_gt, device=device)
    table = Table(title=f"ACAE: {summary['instances']} instances, {summary['latents']} latents "
                        f"({summary['pairs']} pairs + {summary['centre_latents']} centre) in {summary['out']}")
    for column in ("head", "reconstruction error (input px)"):
        table.add_column(column)
    for name, error in summary["reconstruction_error_px"].items():
        table.add_row(name, f"{error:.3f}")
    console.print(table)


# ---------------------------------------------------------------- evaluate
@app.command("evaluate")
@_user_errors
def evaluate(
    results: Optional[Path] = typer.Option(None, "--results", help="COCO results JSON to score (no model), e.g. "
                                           "posebh predict's results.json."),
    annotations: Optional[Path] = typer.Option(None, "--annotations", help="COCO keypoint GT JSON for --results."),
    skeleton: Optional[str] = typer.Option(None, "--skeleton", help="Skeleton name or YAML for --results."),
    protocol: Optional[str] = typer.Option(None, "--protocol",
                                           help="coco | coco_noarea | wholebody | pckh | interhand (default: by skeleton)."),
    checkpoint: CheckpointOption = None,
    data: Optional[Path] = typer.Option(None, "--data", help="Prepared dataset folder to run the model on."),
    split: str = typer.Option("val", "--split", help="Split of the prepared dataset."),
    boxes: Optional[Path] = typer.Option(None, "--boxes", help="Detections JSON (default: GT boxes)."),
    flip: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="Flip test (default: on, unless the model "
                                        "trained without mirrored crops, train.augmentation.flip 0)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Model head to use (default: by dataset name)."),
    prototypes: Optional[str] = typer.Option(None, "--prototypes", help="Score the prototype heatmaps of this "
                                             "fitted skeleton / dataset in the model's prototype bank."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    device: DeviceOption = None,
    output: Optional[Path] = typer.Option(None, "--out", "--output", help="Write the metrics as a flat JSON object."),
    save_predictions: Optional[Path] = typer.Option(None, "--save-predictions", help="Write the model's predictions "
                                                    "as a COCO keypoint results file (what --results reads)."),
) -> None:
    """Score a results file against annotations, or run a model (default: the default model) on a prepared split.
    `--checkpoint model.onnx` runs a file of `posebh export` with ONNX Runtime."""
    from posebh_cli.commands.evaluate import metrics_table, run_evaluate

    metrics = run_evaluate(results=results, annotations=annotations, skeleton=skeleton, protocol=protocol,
                           checkpoint=checkpoint, data=data, split=split, boxes=boxes, flip=flip, dataset=dataset,
                           batch_size=batch_size, device=device, output=output, prototypes=prototypes,
                           save_predictions=save_predictions,
                           warn=lambda line: err_console.print(line, style="yellow", highlight=False, soft_wrap=True,
                                                               markup=False))
    console.print(metrics_table(metrics, title=str(results or checkpoint or "default model")))
    if save_predictions is not None:
        console.print(f"wrote {save_predictions}", markup=False)
    if output is not None:
        console.print(f"wrote {output}")


# ---------------------------------------------------------------- predict
@app.command("predict")
@_user_errors
def predict(
    inputs: list[Path] = typer.Argument(..., metavar="INPUT", help="Images, folders of images and videos, mixed. "
                                        "Outputs are named after each file's path below the INPUT that named it; with "
                                        "several INPUTs a folder's outputs go under OUT/<folder name>/. Names that "
                                        "clash keep their extension (a.jpg.json, a.png.json), then get -2, -3."),
    checkpoint: CheckpointOption = None,
    skeleton: Optional[str] = typer.Option(None, "--skeleton", help="Use the head (else the fitted prototype "
                                           "skeleton) with this skeleton."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Use this dataset's head (and expert)."),
    boxes: Optional[Path] = typer.Option(None, "--boxes", help="COCO detection file (matched by file name or id)."),
    whole_image: bool = typer.Option(False, "--whole-image", help="One box per image/frame (default without --boxes)."),
    out: Path = typer.Option(Path("predictions"), "--out", help="Output folder: one JSON per input, results.json "
                             "(every instance, COCO results) and overlays."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Crops per forward pass."),
    flip: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="Flip test: average with the mirrored crop "
                                        "(default: on, unless the model trained without mirrored crops)."),
    prototypes: Optional[str] = typer.Option(None, "--prototypes", help="Predict from the prototype heatmaps of "
                                             "this dataset/skeleton in the prototype bank."),
    kpt_thr: float = typer.Option(0.3, "--kpt-thr", help="Keypoints under this score are not drawn."),
    bbox_thr: float = typer.Option(0.0, "--bbox-thr", help="Ignore detection boxes under this score "
                                   "(--detector: 0 means 0.3)."),
    device: DeviceOption = None,
    detector: Optional[Path] = typer.Option(None, "--detector", help="YOLO-style ONNX detector for the boxes."),
    det_class: list[int] = typer.Option([0], "--det-class", help="Detector class id to keep (repeatable; 0 = "
                                        "person in COCO-trained detectors)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also predict the images in folders' subfolders "
                                   "(outputs keep the subfolders: OUT/sub/a.json)."),
    draw_heatmap: Optional[bool] = typer.Option(None, "--draw-heatmap/--no-draw-heatmap", help="Blend the heatmaps "
                                                "into the overlays (default: only with prototype heatmaps)."),
    radius: Optional[int] = typer.Option(None, "--radius", help="Keypoint circle radius in pixels (default: sized "
                                         "to the image)."),
    thickness: Optional[int] = typer.Option(None, "--thickness", help="Limb line thickness in pixels (default: "
                                            "sized to the image)."),
    track: bool = typer.Option(True, "--track/--no-track", help="Videos: give each person a track_id kept across "
                               "frames (greedy OKS matching, box IoU when too few keypoints are confident)."),
    track_gap: int = typer.Option(5, "--track-gap", help="Videos: frames a person may go unseen and keep their "
                                  "track_id."),
    track_thr: float = typer.Option(0.3, "--track-thr", help="Videos: the lowest OKS (0-1] between a track's last "
                                    "pose and a new one that continues the track."),
    smooth: bool = typer.Option(False, "--smooth", help="Videos: One-Euro-filter each track's keypoints over time "
                                "(needs tracking)."),
    smooth_min_cutoff: float = typer.Option(1.0, "--smooth-min-cutoff", help="One-Euro cutoff at rest, in Hz; "
                                            "lower: less jitter, more lag."),
    smooth_beta: float = typer.Option(2.0, "--smooth-beta", help="One-Euro speed coefficient (per box length per "
                                      "second); higher: less lag in fast moves."),
    smooth_d_cutoff: float = typer.Option(1.0, "--smooth-d-cutoff", help="One-Euro cutoff of the speed estimate, "
                                          "in Hz."),
) -> None:
    """Predict keypoints on images, folders and videos: one JSON per input, results.json and overlays.
    `--checkpoint model.onnx` runs a file of `posebh export` with ONNX Runtime."""
    from posebh_cli.commands.predict import predict_command
    from posebh_cli.inference.smooth import OneEuroSettings
    from posebh_cli.inference.track import TrackSettings

    tracking = TrackSettings(oks_thr=track_thr, max_gap=track_gap) if track else None
    smoothing = OneEuroSettings(smooth_min_cutoff, smooth_beta, smooth_d_cutoff) if smooth else None

    summary = predict_command(inputs, checkpoint, out, skeleton=skeleton, dataset=dataset, boxes=boxes,
                          whole_image=whole_image, batch_size=batch_size, flip=flip, prototypes=prototypes,
                          kpt_thr=kpt_thr, bbox_thr=bbox_thr, device=device, detector=detector,
                          detector_classes=tuple(det_class), recursive=recursive, draw_heatmap=draw_heatmap,
                          radius=radius, thickness=thickness, tracking=tracking, smoothing=smoothing,
                          warn=lambda line: err_console.print(line, style="yellow", highlight=False, soft_wrap=True,
                                                              markup=False))
    console.print(f"{summary.head}: {summary.inputs} input(s), {summary.instances} instance(s), "
                  f"{summary.skipped} skipped")
    if summary.provider:  # an exported .onnx model: the execution provider that actually ran it
        console.print(f"onnxruntime: {summary.provider}", markup=False)
    console.print(f"results: {summary.results_file}", soft_wrap=True)
    console.print(f"JSON: {', '.join(str(p) for p in summary.json_files) or '-'}", soft_wrap=True)
    console.print(f"overlays: {', '.join(str(p) for p in summary.overlays) or '-'}", soft_wrap=True)


# ---------------------------------------------------------------- convert-checkpoint, export
@app.command("convert-checkpoint")
@_user_errors
def convert_checkpoint(
    src: CheckpointOption = None,
    out: Path = typer.Option(..., "--out", help="Output folder (model.safetensors + model.json) or a .safetensors file."),
    split: Optional[str] = typer.Option(None, "--split", help="Write this dataset's plain model (expert merged)."),
) -> None:
    """Convert a checkpoint (official ViTPose/ViTPose++/PoseBH .pth, ours; a model name) to posebh's format,
    optionally splitting out one dataset's plain ViT model."""
    from posebh_cli.commands.convert import convert_command as run_convert

    with console.status(f"converting {src}"):
        model = run_convert(src, out, split=split)
    console.print(f"wrote {out}: {model.config.arch}, datasets {', '.join(model.datasets)}, "
                  f"{model.backbone.num_experts} experts, embedding {'yes' if model.with_embedding else 'no'}")


@app.command("export")
@_user_errors
def export(
    checkpoint: CheckpointOption = None,
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Export this dataset's head (and expert, merged; "
                                          "default: the first head)."),
    prototypes: Optional[str] = typer.Option(None, "--prototypes", help="Export the prototype heatmaps of this "
                                             "skeleton of the prototype bank (e.g. one fitted by fit-prototypes)."),
    fmt: str = typer.Option("onnx", "--format", help="onnx (with the metadata `posebh predict` reads: skeleton, "
                            "codec, input size, box padding) or torchscript."),
    out: Path = typer.Option(..., "--out", help="Output file."),
    device: DeviceOption = None,
) -> None:
    """Export one dataset's heatmap model (or a prototype skeleton's heatmaps) to ONNX or TorchScript and check
    parity against PyTorch; `posebh predict --checkpoint model.onnx` runs an ONNX file."""
    from posebh_cli.commands.export import export_command

    with console.status(f"exporting {prototypes or dataset or 'the first head'} to {fmt}"):
        result = export_command(checkpoint, dataset, fmt, out, device=device, prototypes=prototypes)
    kind = "prototype heatmaps of" if result.source == "prototypes" else "head"
    console.print(f"wrote {result.path} ({kind} {result.name}, {result.num_keypoints} keypoints); "
                  f"max abs difference vs PyTorch: {result.max_abs_diff:.3g}", markup=False, soft_wrap=True)


# ---------------------------------------------------------------- models
@models_app.command("list")
@_user_errors
def models_list() -> None:
    """List the named models: the store's ($POSEBH_HOME) and the built-in ones, with the default marked."""
    from posebh_cli.commands.models import models_table

    console.print(models_table())


@models_app.command("add")
@_user_errors
def models_add(
    name: str = typer.Argument(..., help="Name to use with --checkpoint, e.g. vitpose-plus-base."),
    source: Path = typer.Argument(..., metavar="FILE", help="Our run folder / model.safetensors, or an official "
                                  "ViTPose / ViTPose++ / PoseBH .pth (converted once)."),
    make_default: bool = typer.Option(False, "--default", help="Also make it the default model."),
    force: bool = typer.Option(False, "--force", help="Replace a stored model of the same name."),
) -> None:
    """Register a model under a name in the store (copied, or converted once and checked)."""
    from posebh_cli.commands.models import add_command

    with console.status(f"adding {source}"):
        where, is_default = add_command(name, source, make_default=make_default, force=force)
    console.print(f"added {name}: {where}" + (" (the default model)" if is_default else ""))


@models_app.command("default")
@_user_errors
def models_default(name: str = typer.Argument(..., help="A stored or built-in model name.")) -> None:
    """Make a model the default of every command that takes --checkpoint."""
    from posebh_cli.commands.models import set_default

    set_default(name)
    console.print(f"default model: {name}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
