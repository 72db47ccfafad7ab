"""`posebh prepare-data`: read a dataset in its native layout and write a prepared dataset."""
from __future__ import annotations

from pathlib import Path

from posebh_cli.data.formats import DETECTION_FORMATS, FORMATS, ReadOptions
from posebh_cli.data.prepared import write_prepared
from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import check_writable_parent


def prepare_dataset(fmt: str, src: str | Path, out: str | Path, skip_missing: bool = False, seed: int = 0,
                    check_images: bool = True, detections: str | Path | None = None,
                    verify_images: bool = False) -> dict:
    """Convert `src` (the dataset root in its official layout) into a prepared dataset at `out`.

    Returns a summary: {format, out, skeleton, seed, splits: {split: counts}, notes}. All reading and checking
    happens before anything is written, and the write is atomic, so a failure leaves no `out` behind.
    """
    if fmt not in FORMATS:
        raise PosebhError(f"unknown format '{fmt}'; known: {', '.join(FORMATS)}")
    src, out = Path(src).resolve(), Path(out)
    if not src.is_dir():
        raise input_error(src, "dataset folder not found")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PosebhError(f"{out}: already exists and is not empty; remove it or choose another --out")
    check_writable_parent(out, "--out")
    if detections is not None:
        if fmt not in DETECTION_FORMATS:
            raise PosebhError(f"--detections applies to {', '.join(DETECTION_FORMATS)} only, not '{fmt}'")
        detections = Path(detections).resolve()
    options = ReadOptions(skip_missing=skip_missing, seed=seed, check_images=check_images or verify_images,
                          verify_images=verify_images, detections=detections)
    result = FORMATS[fmt](src, options)
    notes = list(result.notes)
    write_prepared(out, name=out.name or fmt, skeleton=result.skeleton, source_format=fmt,
                   image_root=result.image_root.resolve(), splits=result.splits, counts=result.counts,
                   detections=result.detections, notes=notes)
    return {"format": fmt, "out": str(out), "skeleton": result.skeleton.name, "seed": seed,
            "splits": result.counts, "detections": {k: len(v) for k, v in result.detections.items()},
            "notes": notes}
