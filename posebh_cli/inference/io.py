"""Inputs and outputs of `posebh predict`: an image, a folder of images or a video, read as RGB arrays.

An unreadable image is reported with one warning line and skipped; it never stops a run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from posebh_cli.errors import input_error

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def list_images(path: str | Path) -> list[Path]:
    """The image files to read: the path itself, or a folder's images with common extensions, sorted by name."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if path.is_file():
        return [path]
    raise input_error(path, "no such file or folder")


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


def iter_images(paths: list[Path], warn: Callable[[str], None]) -> Iterator[InputImage]:
    """Decode each file in turn; the unreadable ones are reported through `warn` and skipped."""
    for path in paths:
        image = read_image(path)
        if image is None:
            warn(f"warning: {path}: not a readable image, skipped")
            continue
        yield InputImage(path, image)


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


__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "is_video", "list_images", "read_image", "write_image",
           "InputImage", "iter_images", "VideoInfo", "open_video", "iter_frames", "VideoOutput"]
