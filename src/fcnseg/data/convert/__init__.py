"""`fcnseg convert FORMAT SRC --out DIR`: an annotation tool's export into a layout fcnseg reads.

    archive.py       an export as it came (a folder, or a zip read safely), and finding its images
    items.py         the one form every converter produces: classes, images, labels per image
    cvat.py          CVAT "Segmentation mask 1.1": labelmap.txt and colour masks
    coco.py          COCO JSON (polygons, RLE), through the instance task's own COCO reader
    label_studio.py  Label Studio JSON: brush labels (brush.py: its RLE) and polygon labels
    common.py        writing the lists layout (semantic) or the instance folder layout
    detect.py        an export given to `inspect` or `train` unconverted, named with its command

FORMATS is the registry: name -> converter, `open_export(source, images, task, classes)`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fcnseg.data.convert import coco, cvat, label_studio
from fcnseg.data.convert.common import Summary, write_export
from fcnseg.data.convert.items import Export
from fcnseg.registry import lookup

Converter = Callable[[Path, Path | None, str, list[str] | None], Export]

FORMATS: dict[str, Converter] = {
    "cvat": cvat.open_export,
    "coco": coco.open_export,
    "label-studio": label_studio.open_export,
}


def converter(name: str) -> Converter:
    """FORMATS[name], or an error naming the formats and the nearest one."""
    return lookup(FORMATS, name, "annotation format")


__all__ = ["FORMATS", "Export", "Summary", "converter", "write_export"]
