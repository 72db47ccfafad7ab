"""What `posebh evaluate` does: score a results file, or run a checkpoint on a prepared split; write metrics.

The CLI parses options and prints; the choice of mode, file reading and the atomic metrics write live here.
A results file is a COCO keypoint results list, e.g. `posebh predict`'s `results.json` as it is: an entry that
names a `file_name` is matched to the annotated image of that name. `--save-predictions` writes a checkpoint
run's predictions in the same format.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from rich.table import Table

from posebh_cli.commands.devices import resolve_device
from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import read_json as load_json
from posebh_cli.files import check_writable_parent, write_json
from posebh_cli.evaluation import evaluate_predictions, protocol_for
from posebh_cli.skeletons import load_skeleton


def evaluate_results_file(results: str | Path, annotations: str | Path, skeleton: str,
                          protocol: str | None = None) -> dict[str, float]:
    """Score a COCO results file against a COCO keypoint annotation file (no model involved)."""
    sk = load_skeleton(skeleton)
    gt = load_json(annotations)
    predictions = match_file_names(load_json(results), gt, results)
    return evaluate_predictions(gt, predictions, sk, protocol or protocol_for(sk.name), gt_name=str(annotations),
                                results_name=str(results))


def match_file_names(predictions, gt: dict, results: str | Path):
    """Give entries that name a `file_name` the id of the annotated image of that name (by base name: predict
    writes the input's name, annotations may hold a relative path); entries without one keep their `image_id`."""
    if not isinstance(predictions, list) or not isinstance(gt, dict):
        return predictions  # the scorer names the problem
    ids = {Path(str(im.get("file_name", ""))).name: im.get("id") for im in gt.get("images") or []
           if isinstance(im, dict)}
    matched = []
    for n, entry in enumerate(predictions):
        if isinstance(entry, dict) and entry.get("file_name") is not None:
            name = Path(str(entry["file_name"])).name
            if name in ids:
                entry = {**entry, "image_id": ids[name]}
            elif not isinstance(entry.get("image_id"), int):
                raise input_error(results, f"no annotated image named {name!r}", record=f"#{n}", field="file_name")
        matched.append(entry)
    return matched


def write_metrics(metrics: dict[str, float], path: str | Path) -> None:
    """Write metrics as one flat JSON object (NaN as null) through a temporary sibling, then rename."""
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    write_json(path, clean)


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_table(metrics: dict[str, float], title: str = "metrics") -> Table:
    """A rich table of the metrics. Keys `<group>/<stat>` sharing one stat list (whole-body parts) form a grid
    with one row per group; everything else is a two-column list (a grid's other keys go in the caption)."""
    groups: dict[str, dict[str, float]] = {}
    for name, value in metrics.items():
        group, sep, stat = name.rpartition("/")
        if sep:
            groups.setdefault(group, {})[stat] = value
    stat_lists = {tuple(stats) for stats in groups.values()}
    table = Table(title=title)
    if len(groups) >= 2 and len(stat_lists) == 1:
        stat_names = next(iter(stat_lists))
        table.add_column("part")
        for stat in stat_names:
            table.add_column(stat, justify="right")
        for group, stats in groups.items():
            table.add_row(group, *(_fmt(stats[stat]) for stat in stat_names))
        rest = [f"{name} {_fmt(value)}" for name, value in metrics.items() if "/" not in name]
        table.caption = ", ".join(rest) or None
        return table
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, _fmt(value))
    return table


def run_evaluate(results: Path | None = None, annotations: Path | None = None, skeleton: str | None = None,
                 protocol: str | None = None, checkpoint: Path | None = None, data: Path | None = None,
                 split: str = "val", boxes: Path | None = None, flip: bool | None = None, dataset: str | None = None,
                 batch_size: int = 32, device: str | None = None, output: Path | None = None,
                 prototypes: str | None = None, save_predictions: Path | None = None,
                 warn: Callable[[str], None] = print) -> dict[str, float]:
    """`posebh evaluate` in either mode; writes `output` (metrics) and `save_predictions` (a checkpoint run's COCO
    results) when given and returns the metrics. The checkpoint is a model name or a path (an exported `.onnx`
    file runs under ONNX Runtime; `warn` gets its one line when a GPU was asked for and cannot be used)."""
    for path, option in ((output, "--output"), (save_predictions, "--save-predictions")):
        if path is not None:  # checked before any work
            if Path(path).is_dir():
                raise PosebhError(f"{path}: {option} is an existing folder; give a file name")
            check_writable_parent(path, option)
    if (prototypes is not None or save_predictions is not None) and results is not None:
        raise PosebhError("--prototypes and --save-predictions apply to --checkpoint, not to --results")
    if prototypes is not None and dataset is not None:
        raise PosebhError("--prototypes names the skeleton itself; drop --dataset")
    if results is not None and checkpoint is not None:
        raise PosebhError("give either --results (score a file) or --checkpoint (run a model), not both")
    if results is not None:
        if annotations is None or skeleton is None:
            raise PosebhError("--results needs --annotations GT.json and --skeleton NAME")
        metrics = evaluate_results_file(results, annotations, skeleton, protocol)
    elif checkpoint is not None or data is not None:  # no --checkpoint: the default model
        if data is None:
            raise PosebhError("--checkpoint needs --data PREPARED (a prepared dataset folder)")
        if protocol is not None:
            raise PosebhError("--protocol applies to --results; a checkpoint run uses its dataset's protocol")
        from posebh_cli.inference.evaluate import evaluate_checkpoint
        from posebh_cli.models.store import resolve_checkpoint

        kept: list[dict] = []
        metrics = evaluate_checkpoint(resolve_checkpoint(checkpoint), data, split, boxes=boxes, flip=flip,
                                      dataset=prototypes or dataset, batch_size=batch_size,
                                      device=resolve_device(device),
                                      source="head" if prototypes is None else "prototypes", keep_results=kept,
                                      warn=warn)
        if save_predictions is not None:
            write_json(save_predictions, kept, indent=None)
    else:
        raise PosebhError("give --results with --annotations and --skeleton, or --checkpoint with --data")
    if output is not None:
        write_metrics(metrics, output)
    return metrics
