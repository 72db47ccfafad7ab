"""What `posebh evaluate` does: score a results file, or run a checkpoint on a prepared split; write metrics.

The CLI parses options and prints; the choice of mode, file reading and the atomic metrics write live here.
"""
from __future__ import annotations

import math
from pathlib import Path

from rich.table import Table

from posebh_cli.errors import PosebhError
from posebh_cli.files import read_json as load_json
from posebh_cli.files import check_writable_parent, write_json
from posebh_cli.evaluation import evaluate_predictions, protocol_for
from posebh_cli.skeletons import load_skeleton


def evaluate_results_file(results: str | Path, annotations: str | Path, skeleton: str,
                          protocol: str | None = None) -> dict[str, float]:
    """Score a COCO results file against a COCO keypoint annotation file (no model involved)."""
    sk = load_skeleton(skeleton)
    gt = load_json(annotations)
    predictions = load_json(results)
    return evaluate_predictions(gt, predictions, sk, protocol or protocol_for(sk.name), gt_name=str(annotations),
                                results_name=str(results))


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
                 split: str = "val", boxes: Path | None = None, flip: bool = True, dataset: str | None = None,
                 batch_size: int = 32, device: str | None = None, output: Path | None = None) -> dict[str, float]:
    """`posebh evaluate` in either mode; writes `output` when given and returns the metrics."""
    if output is not None:  # checked before any work
        if Path(output).is_dir():
            raise PosebhError(f"{output}: --output is an existing folder; give a file name")
        check_writable_parent(output, "--output")
    if results is not None and checkpoint is not None:
        raise PosebhError("give either --results (score a file) or --checkpoint (run a model), not both")
    if results is not None:
        if annotations is None or skeleton is None:
            raise PosebhError("--results needs --annotations GT.json and --skeleton NAME")
        metrics = evaluate_results_file(results, annotations, skeleton, protocol)
    elif checkpoint is not None:
        if data is None:
            raise PosebhError("--checkpoint needs --data PREPARED (a prepared dataset folder)")
        if protocol is not None:
            raise PosebhError("--protocol applies to --results; a checkpoint run uses its dataset's protocol")
        from posebh_cli.inference.evaluate import evaluate_checkpoint

        metrics = evaluate_checkpoint(checkpoint, data, split, boxes=boxes, flip=flip, dataset=dataset,
                                      batch_size=batch_size, device=device)
    else:
        raise PosebhError("give --results with --annotations and --skeleton, or --checkpoint with --data")
    if output is not None:
        write_metrics(metrics, output)
    return metrics
