"""`posebh predict`: images, folders and videos in (several at once); one JSON per input and overlays out.

Boxes come from a COCO detection file (a list of {image_id, bbox, score} or a COCO dict with images and
annotations), matched to an input by file name or by image id (a numeric file stem, or the frame index in a
video), or from an optional ONNX detector (`detector.py`); without either every image or frame is one
whole-image box. With detected boxes the instances are rescored and filtered by OKS-NMS, as in the COCO test
protocol. Everything is written into a temp sibling of the output folder and moved into place at the end.
Besides one JSON per input, `results.json` holds every instance of the run as one COCO keypoint results list
(each entry also names its `file_name`, so `posebh evaluate --results` matches images without numeric names).
Outputs are named after each file's path below the argument that named it (`io.collect_inputs`, `io.output_stems`).
In videos every instance gets a `track_id`, kept across frames (`track.PoseTracker`), and with smoothing its
keypoints are One-Euro-filtered per track (`smooth.PoseSmoother`).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from posebh_cli.errors import PosebhError, input_error
from posebh_cli.files import check_writable_parent, is_main_process, publish_mode, read_json
from posebh_cli.inference import draw, io
from posebh_cli.inference.nms import nms_instances
from posebh_cli.inference.onnx_model import OnnxHeatmaps, is_onnx
from posebh_cli.inference.predictor import Predictor, load_checkpoint, resolve_target
from posebh_cli.inference.smooth import OneEuroSettings, PoseSmoother
from posebh_cli.inference.track import PoseTracker, TrackSettings, follow_frame
from posebh_cli.skeletons import load_skeleton

NMS_THRESHOLD = 0.9
RESULTS_NAME = "results.json"  # every instance of a run, one COCO keypoint results list


@dataclass
class BoxIndex:
    """Detection boxes keyed by file name and by image id."""

    by_name: dict[str, list[tuple[list[float], float]]] = field(default_factory=dict)
    by_id: dict[int, list[tuple[list[float], float]]] = field(default_factory=dict)

    def lookup(self, file_name: str | None, image_id: int | None) -> tuple[list, list]:
        """(boxes, scores) for an input; empty lists when the file has none for it."""
        entries = self.by_name.get(file_name, []) if file_name else []
        if not entries and image_id is not None:
            entries = self.by_id.get(image_id, [])
        return [b for b, _ in entries], [s for _, s in entries]


def load_boxes(path: str | Path, score_thr: float = 0.0) -> BoxIndex:
    """Read a COCO detection list or a COCO dict; boxes under `score_thr` are dropped."""
    path = Path(path)
    data = read_json(path, "box file")
    names: dict[int, str] = {}
    if isinstance(data, dict):
        names = {img.get("id"): Path(str(img.get("file_name", ""))).name for img in data.get("images", [])}
        data = data.get("annotations")
    if not isinstance(data, list):
        raise input_error(path, "expected a list of detections or a COCO dict with 'annotations'")
    index = BoxIndex()
    for n, det in enumerate(data):
        record = f"#{n}"
        if not isinstance(det, dict):
            raise input_error(path, "expected an object", record=record)
        box = det.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            raise input_error(path, f"expected [x, y, w, h], got {box!r}", record=record, field="bbox")
        score = det.get("score", 1.0)
        if not isinstance(score, (int, float)):
            raise input_error(path, f"expected a number, got {score!r}", record=record, field="score")
        if score < score_thr or box[2] <= 0 or box[3] <= 0:
            continue
        entry = ([float(v) for v in box], float(score))
        file_name = det.get("file_name") or names.get(det.get("image_id"))
        if file_name:
            index.by_name.setdefault(Path(str(file_name)).name, []).append(entry)
        if isinstance(det.get("image_id"), int):
            index.by_id.setdefault(det["image_id"], []).append(entry)
    return index


def _numeric_id(path: Path) -> int | None:
    return int(path.stem) if path.stem.isdigit() else None


def coco_entries(instances: list[dict], image_id: int | None) -> list[dict]:
    """Instances as COCO results entries (flat keypoints, score, category 1) plus the box and its score."""
    out = []
    for inst in instances:
        out.append({"image_id": image_id, "category_id": 1,
                    "keypoints": [round(float(v), 3) for v in np.asarray(inst["keypoints"]).reshape(-1)],
                    "score": round(float(inst["score"]), 5), "bbox": [round(float(v), 2) for v in inst["bbox"]],
                    "box_score": round(float(inst["box_score"]), 5)})
        if "track_id" in inst:  # videos
            out[-1]["track_id"] = int(inst["track_id"])
    return out


# (image, file name or None, image id or frame index) -> (boxes xywh, scores); (None, None) = the whole image.
BoxSource = Callable[[np.ndarray, "str | None", "int | None"], tuple]


def _whole_image(image: np.ndarray, file_name: str | None, image_id: int | None) -> tuple[None, None]:
    return None, None


@dataclass
class PredictSummary:
    out_dir: Path
    inputs: int = 0
    skipped: int = 0
    instances: int = 0
    json_files: list[Path] = field(default_factory=list)
    overlays: list[Path] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)  # COCO results entries of every input (results.json)
    results_file: Path | None = None
    head: str = ""                                      # which head (or prototype skeleton) predicted
    provider: str | None = None                         # the ONNX Runtime execution provider (an .onnx model)


class _Writer:
    """Turns one image's instances into its JSON record and overlay."""

    def __init__(self, predictor: Predictor, tmp_dir: Path, use_nms: bool, kpt_thr: float, heat: bool,
                 radius: int | None = None, thickness: int | None = None):
        self.predictor, self.tmp_dir, self.use_nms, self.kpt_thr, self.heat = predictor, tmp_dir, use_nms, kpt_thr, heat
        self.radius, self.thickness = radius, thickness  # None: sized to the image (draw.line_sizes)
        self.names = list(predictor.skeleton.keypoints)

    def finish(self, image: np.ndarray, instances: list[dict], image_id: int | None,
               follow: Callable[[list[dict]], list[dict]] | None = None) -> tuple[np.ndarray, list[dict]]:
        """(overlay, COCO entries) for one image; `follow` (videos) adds track ids to the kept instances."""
        if self.use_nms:
            keep = nms_instances(instances, self.predictor.skeleton.sigmas, NMS_THRESHOLD)
            instances = [instances[k] for k in keep]
        if follow is not None:
            instances = follow(instances)
        canvas = image
        if self.heat and instances:
            pasted = [draw.heatmap_to_image(draw.max_heatmap(i["heatmaps"]), i["matrix"], self.predictor.input_size,
                                            image.shape) for i in instances]
            canvas = draw.blend_heatmap(image, np.max(pasted, axis=0))
        canvas = draw.draw_instances(canvas, instances, self.predictor.skeleton, self.kpt_thr, radius=self.radius,
                                     thickness=self.thickness)
        return canvas, coco_entries(instances, image_id)

    def header(self, file_name: str) -> dict:
        return {"file_name": file_name, "skeleton": self.predictor.skeleton.name, "keypoint_names": self.names,
                "source": self.predictor.source, "head": self.predictor.target.name}


def _write_json(path: Path, record: dict | list, indent: int | None = 1) -> None:
    path.write_text(json.dumps(record, indent=indent))


def _predict_images(inputs: list[io.PredictInput], stems: list[str], predictor: Predictor, writer: _Writer,
                    find_boxes: BoxSource, summary: PredictSummary, progress: Progress,
                    warn: Callable[[str], None]) -> None:
    """Images in batches that span inputs; `stems[i]` names input i's outputs (`io.output_stems`)."""
    task = progress.add_task("predict", total=len(inputs))
    pending: list[io.InputImage] = []

    def flush() -> None:
        per_image = [find_boxes(item.image, item.path.name, _numeric_id(item.path)) for item in pending]
        results = predictor.predict([item.image for item in pending], [b for b, _ in per_image],
                                    [s for _, s in per_image], return_heatmaps=writer.heat)
        for item, instances in zip(pending, results):
            name, stem = inputs[item.index].name, stems[item.index]
            overlay, entries = writer.finish(item.image, instances, _numeric_id(item.path))
            record = writer.header(name) | {"width": item.image.shape[1], "height": item.image.shape[0],
                                            "predictions": entries}
            json_path = writer.tmp_dir / f"{stem}.json"
            overlay_path = writer.tmp_dir / f"{stem}.overlay.jpg"
            json_path.parent.mkdir(parents=True, exist_ok=True)  # --recursive keeps the subfolders
            _write_json(json_path, record)
            io.write_image(overlay_path, overlay)
            summary.json_files.append(json_path.relative_to(writer.tmp_dir))
            summary.overlays.append(overlay_path.relative_to(writer.tmp_dir))
            summary.results.extend({**entry, "file_name": name} for entry in entries)
            summary.inputs += 1
            summary.instances += len(entries)
            progress.advance(task)
        pending.clear()

    def skip(message: str) -> None:
        warn(message)
        summary.skipped += 1
        progress.advance(task)

    for item in io.iter_images([entry.path for entry in inputs], skip):
        pending.append(item)
        if len(pending) >= predictor.batch_size:
            flush()
    if pending:
        flush()


def _predict_video(path: Path, predictor: Predictor, writer: _Writer, find_boxes: BoxSource,
                   summary: PredictSummary, progress: Progress, stem: str | None = None,
                   tracking: TrackSettings | None = None, smoothing: OneEuroSettings | None = None) -> None:
    """`stem` names the outputs (default the file's stem; `io.output_stems` when inputs share one).

    With `tracking` every instance gets a `track_id` (`track.PoseTracker`, one per video); `smoothing` then
    One-Euro-filters each track's keypoints (`smooth.PoseSmoother`, time = frame / fps).
    """
    stem = stem or path.stem
    capture, info = io.open_video(path)
    tracker = PoseTracker(predictor.skeleton.sigmas, tracking) if tracking is not None else None
    smoother = PoseSmoother(smoothing) if smoothing is not None else None
    task = progress.add_task(f"predict {path.name}", total=info.frames or None)
    # MP4 inputs get an MP4 overlay; every other container gets MJPEG in AVI, which OpenCV always writes.
    suffix = ".mp4" if path.suffix.lower() in (".mp4", ".m4v", ".mov") else ".avi"
    overlay_path = writer.tmp_dir / f"{stem}.overlay{suffix}"
    video = io.VideoOutput(overlay_path, info.fps, info.width, info.height)
    frames_out: list[dict] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        first = len(frames_out)
        per_frame = [find_boxes(frame, None, first + n) for n, frame in enumerate(pending)]
        results = predictor.predict(pending, [b for b, _ in per_frame], [s for _, s in per_frame],
                                    return_heatmaps=writer.heat)
        for n, (frame, instances) in enumerate(zip(pending, results)):
            follow = None
            if tracker is not None:
                follow = partial(follow_frame, tracker=tracker, smoother=smoother, t=(first + n) / info.fps)
            overlay, entries = writer.finish(frame, instances, first + n, follow)
            video.write(overlay)
            frames_out.append({"frame": first + n, "predictions": entries})
            summary.results.extend({**entry, "file_name": path.name, "frame": first + n} for entry in entries)
            summary.instances += len(entries)
            progress.advance(task)
        pending.clear()

    try:
        for frame in io.iter_frames(capture):
            pending.append(frame)
            if len(pending) >= predictor.batch_size:
                flush()
        if pending:
            flush()
    except BaseException:
        video.abort()
        raise
    video.close()
    json_path = writer.tmp_dir / f"{stem}.json"
    _write_json(json_path, writer.header(path.name) | {"width": info.width, "height": info.height, "fps": info.fps,
                                                        "tracking": tracking and asdict(tracking),
                                                        "smoothing": smoothing and asdict(smoothing),
                                                        "frames": frames_out})
    summary.inputs += 1
    summary.json_files.append(json_path.name)
    summary.overlays.append(overlay_path.name)


def _move_into(tmp_dir: Path, out_dir: Path) -> None:
    """Publish the finished outputs: rename the temp folder, or move its files into an existing folder.

    Into an existing folder the files move one by one, so subfolders (--recursive) merge with what is there.
    """
    if not out_dir.exists():
        publish_mode(tmp_dir)  # mkdtemp made it 0700
        os.replace(tmp_dir, out_dir)
        return
    for item in sorted(tmp_dir.rglob("*")):
        if item.is_file():
            target = out_dir / item.relative_to(tmp_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(item, target)
    shutil.rmtree(tmp_dir)


def _box_source(boxes: str | Path | None, whole_image: bool, detector: str | Path | None,
                detector_classes: tuple[int, ...], bbox_thr: float, device: str | None,
                warn: Callable[[str], None] | None = None) -> BoxSource:
    """Where each image's boxes come from: a detection file, an ONNX detector, or the whole image."""
    if sum(x for x in (boxes is not None, whole_image, detector is not None)) > 1:
        raise PosebhError("give only one of --boxes, --detector and --whole-image")
    if boxes is not None:
        index = load_boxes(boxes, bbox_thr)
        return lambda image, file_name, image_id: index.lookup(file_name, image_id)
    if detector is not None:
        from posebh_cli.inference.detector import OnnxDetector

        run_detector = OnnxDetector(detector, class_ids=detector_classes, score_thr=bbox_thr or 0.3, device=device,
                                    warn=warn)
        return lambda image, file_name, image_id: run_detector(image)
    return _whole_image


def run_predict(inputs: str | Path | Sequence[str | Path], checkpoint: str | Path, out_dir: str | Path,
                skeleton: str | None = None, dataset: str | None = None, boxes: str | Path | None = None,
                whole_image: bool = False, batch_size: int = 32, flip: bool | None = None,
                prototypes: str | None = None,
                kpt_thr: float = 0.3, bbox_thr: float = 0.0, device: str | None = None,
                detector: str | Path | None = None, detector_classes: tuple[int, ...] = (0,),
                recursive: bool = False, draw_heatmap: bool | None = None, radius: int | None = None,
                thickness: int | None = None, tracking: TrackSettings | None = TrackSettings(),
                smoothing: OneEuroSettings | None = None, warn: Callable[[str], None] = print) -> PredictSummary:
    """Predict every image / frame of `inputs` (image files, folders, videos; one path or several) and write
    `<stem>.json` + `<stem>.overlay.{jpg,mp4,avi}` per file.

    Images come first, in batches that span inputs, then each video. `recursive` also reads subfolders' images
    (their outputs keep the subfolders). A file's outputs are named after its path below the argument that named
    it, a folder's own name leading when there are several arguments (`io.collect_inputs`); clashing names keep
    their extension or get -2, -3 (`io.output_stems`). With an ONNX `detector`, `bbox_thr` is its score threshold
    (0.3 when 0). `draw_heatmap` blends the heatmaps into the overlays (None: for prototype heatmaps only);
    `radius` / `thickness` fix the keypoint circles and limb lines in pixels (None: sized to the image).
    In videos, `tracking` (None: off) gives every instance a `track_id` and `smoothing` (None: off; needs
    tracking) One-Euro-filters each track's keypoints.
    """
    arguments = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    out_dir = Path(out_dir)
    if not arguments:
        raise PosebhError("give at least one image, folder or video to predict")
    if prototypes is not None and (skeleton is not None or dataset is not None):
        raise PosebhError("--prototypes names the skeleton itself; drop --skeleton/--dataset")
    for option, value in (("--radius", radius), ("--thickness", thickness)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise PosebhError(f"{option}: expected a positive whole number of pixels, got {value!r}")
    if smoothing is not None and tracking is None:
        raise PosebhError("--smooth filters each track's keypoints and needs tracking; drop --no-track")
    files = io.collect_inputs(arguments, recursive, skip=out_dir)  # every missing or empty input in one error
    if out_dir.exists() and not out_dir.is_dir():  # checked before any inference
        raise PosebhError(f"{out_dir}: --out is an existing file; give a folder")
    check_writable_parent(out_dir, "--out")
    stems = io.output_stems([f.name for f in files], reserved=[Path(RESULTS_NAME).stem])
    images = [i for i, f in enumerate(files) if not f.video]
    videos = [i for i, f in enumerate(files) if f.video]
    find_boxes = _box_source(boxes, whole_image, detector, detector_classes, bbox_thr, device, warn)

    predictor = load_predictor(checkpoint, skeleton, dataset, prototypes, device, batch_size, flip, warn)
    source = predictor.source

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    summary = PredictSummary(out_dir=out_dir)
    kind = "prototype heatmaps of" if source == "prototypes" else "head"
    summary.head = f"{kind} {predictor.target.name} (skeleton {predictor.skeleton.name})"
    summary.provider = predictor.provider
    heat = source == "prototypes" if draw_heatmap is None else draw_heatmap
    writer = _Writer(predictor, tmp_dir, use_nms=find_boxes is not _whole_image, kpt_thr=kpt_thr, heat=heat,
                     radius=radius, thickness=thickness)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, transient=True, disable=not is_main_process()) as progress:
            if images:
                _predict_images([files[i] for i in images], [stems[i] for i in images], predictor, writer,
                                find_boxes, summary, progress, warn)
            for i in videos:
                _predict_video(files[i].path, predictor, writer, find_boxes, summary, progress, stem=stems[i],
                               tracking=tracking, smoothing=smoothing)
        if summary.inputs == 0:
            raise input_error(", ".join(map(str, arguments)),
                              f"none of the {summary.skipped} input(s) could be read; nothing written")
        _write_json(tmp_dir / RESULTS_NAME, summary.results, indent=None)  # one list of every instance
        _move_into(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    summary.json_files = [out_dir / name for name in summary.json_files]
    summary.overlays = [out_dir / name for name in summary.overlays]
    summary.results_file = out_dir / RESULTS_NAME
    return summary


def load_predictor(checkpoint: str | Path, skeleton: str | None = None, dataset: str | None = None,
                   prototypes: str | None = None, device: str | None = None, batch_size: int = 32,
                   flip: bool | None = None, warn: Callable[[str], None] | None = None) -> Predictor:
    """The Predictor of `checkpoint` for the requested skeleton.

    An exported `.onnx` file runs under ONNX Runtime (`onnx_model.OnnxHeatmaps`; `warn` gets the one line of a GPU
    asked for that cannot run) and predicts the one target its metadata names: `skeleton` / `dataset` /
    `prototypes` must agree with it. Any other checkpoint loads as a PyTorch model whose head or prototype skeleton
    `choose_source` picks.
    """
    if is_onnx(checkpoint):
        runner = OnnxHeatmaps(checkpoint, device, warn)
        return Predictor(runner, dataset=prototypes or dataset, skeleton=skeleton, batch_size=batch_size, flip=flip,
                         source="prototypes" if prototypes is not None else None)
    model, recipe = load_checkpoint(checkpoint)
    source, name = choose_source(model, skeleton, dataset, prototypes)
    if source == "prototypes":
        return Predictor(model, dataset=name, device=device, batch_size=batch_size, flip=flip, source="prototypes",
                         recipe=recipe)
    return Predictor(model, dataset=dataset, skeleton=skeleton, device=device, batch_size=batch_size, flip=flip,
                     recipe=recipe)


def choose_source(model, skeleton: str | None, dataset: str | None, prototypes: str | None) -> tuple[str, str | None]:
    """("head" | "prototypes", prototype entry name): which heatmaps predict the requested skeleton.

    `--skeleton` looks across the heads first, then across the prototype bank's skeletons (a fitted new
    skeleton has no head); `--skeleton` and `--dataset` together must name the same skeleton.
    """
    if prototypes is not None:
        return "prototypes", prototypes
    if skeleton is not None and dataset is not None:
        wanted = load_skeleton(skeleton)
        target = resolve_target(model, dataset=dataset)
        if target.skeleton.name != wanted.name:
            raise PosebhError(f"--dataset {dataset} predicts skeleton '{target.skeleton.name}' but --skeleton is "
                              f"'{wanted.name}'; give one of them")
        return "head", None
    if skeleton is None:
        return "head", None
    try:
        resolve_target(model, skeleton=skeleton)
        return "head", None
    except PosebhError as head_error:
        if getattr(model, "prototypes", None) is None:
            raise
        wanted = load_skeleton(skeleton)
        try:
            target = resolve_target(model, skeleton=wanted, source="prototypes")
        except PosebhError:
            heads = ", ".join(f"{d} ({sk.name})" for d, sk in zip(model.datasets, model.skeletons))
            entries = ", ".join(sk.name for _, sk in model.prototype_only) or "none"
            raise PosebhError(f"the model has no head nor prototype skeleton '{wanted.name}'; heads: {heads}; "
                              f"prototype skeletons: {entries}") from head_error
        return "prototypes", target.name


__all__ = ["run_predict", "load_predictor", "choose_source", "load_boxes", "BoxIndex", "coco_entries", "PredictSummary", "RESULTS_NAME"]
