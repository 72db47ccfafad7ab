"""Native dataset readers: one function per format, `reader(src, options) -> ReadResult`."""
from __future__ import annotations

from posebh_cli.data.formats.aic import read_aic
from posebh_cli.data.formats.ap10k import read_ap10k
from posebh_cli.data.formats.apt36k import read_apt36k
from posebh_cli.data.formats.coco import read_coco
from posebh_cli.data.formats.coco_wholebody import read_coco_wholebody
from posebh_cli.data.formats.common import ReadOptions, ReadResult
from posebh_cli.data.formats.interhand import read_interhand
from posebh_cli.data.formats.mpii import read_mpii
from posebh_cli.data.formats.pw3d import read_pw3d

FORMATS = {
    "coco": read_coco,
    "aic": read_aic,
    "mpii": read_mpii,
    "ap10k": read_ap10k,
    "apt36k": read_apt36k,
    "coco_wholebody": read_coco_wholebody,
    "interhand": read_interhand,
    "3dpw": read_pw3d,
}

# Formats whose val split is scored with detected person boxes (the official COCO val detections).
DETECTION_FORMATS = ("coco", "coco_wholebody")

__all__ = ["FORMATS", "DETECTION_FORMATS", "ReadOptions", "ReadResult"]
