"""AP-10K split 1: `ap10k-{train,val,test}-split1.json` (COCO style, species categories), images in SRC/data/."""
from __future__ import annotations

from pathlib import Path

from posebh_cli.data.formats.coco import read_coco_style, split_files
from posebh_cli.data.formats.common import ReadOptions, ReadResult
from posebh_cli.skeletons import load_skeleton


def read_ap10k(src: Path, options: ReadOptions) -> ReadResult:
    skeleton = load_skeleton("ap10k")
    files = split_files(src, "annotations/ap10k-{split}-split1.json", ("train", "val", "test"))
    result = ReadResult(skeleton=skeleton, image_root=src / "data", splits={}, counts={})
    for split, path in files.items():
        result.splits[split], result.counts[split] = read_coco_style(path, split, skeleton, src / "data", options)
    return result
