"""Inputs and outputs of `posebh predict`: images, folders of images and videos, read as RGB arrays.

`collect_inputs` turns the command's arguments into the files to predict, each with the name its outputs take
(`output_stems`), and reports every missing or empty argument at once, before any model is loaded. An unreadable
image is reported with one warning line and skipped; it never stops a run.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from posebh_cli.errors import PosebhError, input_error

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def list_images(path: str | Path, recursive: bool = False) -> list[Path]:
    """The image files to read: the path itself, or a folder's images with common extensions, sorted by name.

    `recursive` also takes the images of every subfolder, sorted by their path below `path`.
    """
    path = Path(path)
    if path.is_dir():
        found = path.rglob("*") if recursive else path.iterdir()
        images = (p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        return sorted(images, key=lambda p: p.relative_to(path).parts)
    if path.is_file():
        return [path]
    raise input_error(path, "no such file or folder")


@dataclass(frozen=True)
class PredictInput:
    """One file to predict: `name` is its path below the argument that named it ("a.jpg", "dir/sub/b.png")."""

    path: Path
    name: str
    video: bool


def collect_inputs(arguments: Sequence[str | Path], recursive: bool = False,
                   skip: str | Path | None = None) -> list[PredictInput]:
    """The files to predict, in argument order: a file as itself, a folder as its images (sorted).

    A folder's images are named by their path below it; with several arguments the folder's own name leads
    ("dir/a.jpg"), so two folders never share names. Images under `skip` (the output folder, when it lies inside
    an input folder read with `recursive`) are left out, so a second run does not predict the first one's
    overlays. Every argument that is missing or holds no image is reported in one error, before anything runs.
    """
    inputs: list[PredictInput] = []
    problems: list[str] = []
    several = len(arguments) > 1
    for argument in map(Path, arguments):
        if argument.is_file():
            inputs.append(PredictInput(argument, argument.name, is_video(argument)))
        elif argument.is_dir():
            images = list_images(argument, recursive)
            below = _below(skip, argument) if recursive and skip is not None else None
            if below:
                images = [p for p in images if p.relative_to(argument).parts[:len(below)] != below]
            if not images:
                hint = "; it has subfolders: add --recursive" if not recursive and _has_subfolder(argument) else ""
                if any(is_video(p) for p in argument.iterdir()):
                    hint += "; videos are read when named one by one"
                problems.append(f"{argument}: no image to predict (looked for "
                                f"{', '.join(sorted(IMAGE_EXTENSIONS))}{hint})")
            prefix = PurePosixPath(argument.resolve().name) if several else PurePosixPath()
            inputs += [PredictInput(p, str(prefix.joinpath(*p.relative_to(argument).parts)), False) for p in images]
        else:
            problems.append(f"{argument}: no such file or folder")
    if problems:
        raise PosebhError("; ".join(problems))
    return inputs


def _below(inner: str | Path, folder: Path) -> tuple[str, ...] | None:
    """The parts of `inner`'s path below `folder` (both resolved); None when it is not strictly inside."""
    try:
        parts = Path(inner).resolve().relative_to(folder.resolve()).parts
    except ValueError:
        return None
    return parts or None


def _has_subfolder(folder: Path) -> bool:
    return any(p.is_dir() for p in folder.iterdir())


def output_stems(names: Sequence[str], reserved: Sequence[str] = ()) -> list[str]:
    """Unique output stems ("sub/a" -> sub/a.json, sub/a.overlay.jpg) for input names, compared ignoring case.

    A name keeps its stem unless another input shares it: then inputs that differ in extension keep their full
    name (a.jpg.json, a.png.json) and inputs with the very same name get -2, -3 in input order (a.json, a-2.json).
    A stem in `reserved` (results -> results.json) also keeps its full name.
    """
    stems = [str(PurePosixPath(n).with_suffix("")) for n in names]
    by_stem = Counter(s.casefold() for s in stems)
    by_name = Counter(n.casefold() for n in names)
    reserved = {r.casefold() for r in reserved}

    def differ_in_extension(name: str, stem: str) -> bool:
        return by_name[name.casefold()] < by_stem[stem.casefold()]

    stems = [n if s.casefold() in reserved or differ_in_extension(n, s) else s for n, s in zip(names, stems)]
    taken = {s.casefold() for s in stems}  # a suffixed name never takes another input's stem
    seen: set[str] = set()
    unique = []
    for stem in stems:
        if stem.casefold() in seen:
            number = 2
            while f"{stem}-{number}".casefold() in taken:
                number += 1
            stem = f"{stem}-{number}"
            taken.add(stem.casefold())
        seen.add(stem.casefold())
        unique.append(stem)
    return unique


def read_image(path: str | Path) -> np.ndarray | None:
    """An RGB uint8 image, or None when the file cannot be decoded."""
    data = np.fromfile(str(path), dtype=np.uint8)  # fromfile + imdecode also reads non-ASCII paths
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        return None
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an RGB image; the format follows the extension."""
    ok, data = cv2.imencode(Path(path).suffix or ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise input_error(path, "could not encode the image")
    data.tofile(str(path))


@dataclass
class InputImage:
    path: Path
    image: np.ndarray
    index: int = 0  # position in the list given to `iter_images`


def iter_images(paths: list[Path], warn: Callable[[str], None]) -> Iterator[InputImage]:
    """Decode each file in turn; the unreadable ones are reported through `warn` and skipped."""
    for index, path in enumerate(paths):
        image = read_image(path)
        if image is None:
            warn(f"warning: {path}: not a readable image, skipped")
            continue
        yield InputImage(path, image, index)


@dataclass
class VideoInfo:
    fps: float
    width: int
    height: int
    frames: int  # as the container reports it; may be 0 or approximate


def open_video(path: str | Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise input_error(path, "cannot open the video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    info = VideoInfo(fps=fps if fps > 0 else 25.0, width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                     height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                     frames=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))))
    return capture, info


def iter_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """RGB frames one by one until the stream ends; the capture is released at the end."""
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


class VideoOutput:
    """A video writer that takes RGB frames and writes into a temp sibling, renamed on `close()`."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp{self.path.suffix}")
        fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() in (".mp4", ".m4v", ".mov") else "MJPG"))
        self.writer = cv2.VideoWriter(str(self.tmp), fourcc, fps, (width, height))
        if not self.writer.isOpened():
            raise input_error(self.path, "cannot open a video writer for this container")

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self.writer.release()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.writer.release()
        self.tmp.unlink(missing_ok=True)


__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "is_video", "list_images", "PredictInput", "collect_inputs",
           "output_stems", "read_image", "write_image",
           "InputImage", "iter_images", "VideoInfo", "open_video", "iter_frames", "VideoOutput"]
