"""Label Studio's JSON export (Export -> JSON): a list of tasks, each with its image's address in
`data` and its `annotations`, each a list of `result` regions:

    brushlabels    value.rle: the brush mask in Label Studio's own RLE (brush.py)
    polygonlabels  value.points: [[x, y], ...] in per cent of original_width, original_height
    and value.brushlabels / value.polygonlabels: the region's label

Other region types (rectangles, key points, choices) are left out with a note. Of a task's
annotations the first not cancelled is converted (a note counts the tasks that have more); a task
without one is left out, with a note.
Classes: --classes, in that order, and then a label outside them is an error; by default every
label the export uses, sorted by name. Background is 0. Overlaps: see items.py.
Images: the export holds only their addresses (/data/upload/3/1a2b3c4d-photo.jpg,
/data/local-files/?d=dir/photo.jpg, http://host/photo.jpg); each is looked for in --images
(default: the JSON's folder) by its path, its name, and its name without the upload prefix.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from PIL import Image

from fcnseg.data.convert.archive import ExportFiles, ImageIndex, ImageRef
from fcnseg.data.convert.brush import decode_brush
from fcnseg.data.convert.common import output_names
from fcnseg.data.convert.items import Entry, Export, Item, Region, item_from_regions
from fcnseg.data.decoding import DECODE_ERRORS
from fcnseg.data.instances.rle import polygon_mask
from fcnseg.errors import FcnsegError
from fcnseg.registry import suggest

TOOL = "Label Studio"
REGION_TYPES = ("brushlabels", "polygonlabels")


def read_tasks(path: Path) -> list[dict[str, Any]]:
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FcnsegError(f"cannot read the Label Studio export {path}: {error}") from None
    if isinstance(tasks, dict) and "categories" in tasks:
        raise FcnsegError(f"{path} is a COCO file; convert it with: fcnseg convert coco {path}")
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and "data" in t for t in tasks):
        raise FcnsegError(
            f"{path} is not a Label Studio JSON export, a list of tasks each with 'data' and "
            "'annotations'; export the project as JSON (not JSON-MIN or CSV)."
        )
    return tasks


def image_address(task: dict[str, Any]) -> str:
    """The path part of a task's image address (upload, local file or URL)."""
    data = task["data"]
    values = {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
    key = next((k for k in ("image", "img") if k in values), None)
    if key is None and len(values) != 1:
        raise FcnsegError(
            f"task {task.get('id')} names no single image: its data holds {sorted(values)}; "
            "fcnseg reads the image from data.image (or a task's only text value)."
        )
    address = values[key or next(iter(values))]
    if "?d=" in address:  # local storage: /data/local-files/?d=<path>
        return unquote(address.split("?d=", 1)[1])
    return unquote(urlparse(address).path)


def chosen_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    kept = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    return kept[0] if kept else None


def region_label(result: dict[str, Any], task_id: Any, notes: list[str]) -> str:
    labels = (result.get("value") or {}).get(result["type"]) or []
    if not labels or not all(isinstance(label, str) for label in labels):
        raise FcnsegError(
            f"task {task_id}: region {result.get('id')} ({result['type']}) has no label; give "
            "it one in Label Studio, or delete it, and export again."
        )
    if len(labels) > 1:
        notes.append(
            f"task {task_id}: region {result.get('id')} has labels {labels}; kept {labels[0]}"
        )
    return labels[0]


def class_names(
    tasks: list[dict[str, Any]], classes: list[str] | None, notes: list[str]
) -> list[str]:
    """['background', *classes], checking that every label used is one of them. A region
    labelled background (class 0) erases what lies under it, and is no object."""
    used: dict[str, Any] = {}
    for task in tasks:
        annotation = chosen_annotation(task) or {}
        for result in annotation.get("result") or []:
            if result.get("type") in REGION_TYPES:
                used.setdefault(region_label(result, task.get("id"), notes), task.get("id"))
    if classes is None:
        return ["background", *sorted(set(used) - {"background"})]
    for label, task_id in used.items():
        if label not in (*classes, "background"):
            raise FcnsegError(
                f"task {task_id} has a region labelled '{label}', which is not among --classes "
                f"{', '.join(classes)}.{suggest(label, classes)} Add it to --classes or relabel it."
            )
    return ["background", *(name for name in classes if name != "background")]


def open_export(source: Path, images: Path | None, task: str, classes: list[str] | None) -> Export:
    if source.is_dir() or source.suffix.lower() != ".json":
        raise FcnsegError(
            f"{source} is not a JSON file; give the file of Label Studio's JSON export "
            "(Export -> JSON), and --images the folder of the images."
        )
    tasks = read_tasks(source)
    notes: list[str] = []
    names = class_names(tasks, classes, notes)
    kept = [t for t in tasks if chosen_annotation(t) is not None]
    notes += _annotation_notes(tasks, kept)
    files = ExportFiles(_image_folder(source, images))
    found = _find_images(kept, files, source)
    entries = [Entry(n, None, i) for i, n in enumerate(output_names([r.name for r in found]))]

    def read(entry: Entry) -> Item:
        ref = found[entry.key]
        regions, shape, skipped = task_regions(kept[entry.key], names)
        if shape is None:  # nothing drawn: all background, at the image's own size
            shape = image_shape(ref)
        item = item_from_regions(ref, regions, shape, task, names)
        item.notes += skipped
        return item

    return Export(TOOL, source, names, None, entries, read, notes, [files])


def _annotation_notes(tasks: list[dict[str, Any]], kept: list[dict[str, Any]]) -> list[str]:
    notes = []
    if len(kept) < len(tasks):
        left = len(tasks) - len(kept)
        notes.append(f"{left} tasks have no annotation (or only cancelled ones): left out")
    several = sum(
        len([a for a in t.get("annotations") or [] if not a.get("was_cancelled")]) > 1 for t in kept
    )
    if several:
        notes.append(f"{several} tasks have several annotations: the first of each was converted")
    return notes


def _image_folder(source: Path, images: Path | None) -> Path:
    folder = images if images is not None else source.parent
    if not folder.is_dir():
        raise FcnsegError(f"--images {folder} is not a folder; give the folder of the images.")
    return folder


def _find_images(kept: list[dict[str, Any]], files: ExportFiles, source: Path) -> list[ImageRef]:
    """The image file of each task, or an error listing the addresses with none."""
    index = ImageIndex([(files, "")])
    addresses = [image_address(t) for t in kept]
    found = [index.find(address) for address in addresses]
    missing = [address for address, ref in zip(addresses, found, strict=True) if ref is None]
    if missing:
        files.close()
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise FcnsegError(
            f"{len(missing)} of the {len(kept)} annotated images of {source} are not in "
            f"{files.path} ({shown}); looked for each by its path, its name and its name without "
            "Label Studio's upload prefix: give --images DIR, the folder that holds them."
        )
    return [ref for ref in found if ref is not None]


def image_shape(ref: ImageRef) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(ref.read())) as opened:
            return opened.height, opened.width
    except DECODE_ERRORS as error:
        raise FcnsegError(f"cannot read image {ref.describe()}: {error}") from None


def task_regions(
    task: dict[str, Any], names: list[str]
) -> tuple[list[Region], tuple[int, int] | None, list[str]]:
    """A task's brush and polygon regions as masks, the image size they were drawn on (None when
    there are none), and a note on the regions of other types."""
    annotation = chosen_annotation(task) or {}
    regions, shape, skipped = [], None, Counter()
    for result in annotation.get("result") or []:
        kind = result.get("type")
        if kind not in REGION_TYPES:
            skipped[str(kind)] += 1
            continue
        what = f"task {task.get('id')} region {result.get('id')}"
        size = _region_shape(result, what)
        if shape is not None and size != shape:
            raise FcnsegError(
                f"{what} was drawn on a {size[1]}x{size[0]} image, other regions of the task on "
                f"{shape[1]}x{shape[0]}; export the task again."
            )
        shape = size
        label = names.index(region_label(result, task.get("id"), []))
        mask = _brush(result, size, what) if kind == "brushlabels" else _polygon(result, size, what)
        regions.append(Region(mask, label, what))
    notes = [
        f"task {task.get('id')}: {count} {kind} regions left out (fcnseg converts brush and "
        "polygon labels)"
        for kind, count in sorted(skipped.items())
    ]
    return regions, shape, notes


def _region_shape(result: dict[str, Any], what: str) -> tuple[int, int]:
    height, width = result.get("original_height"), result.get("original_width")
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
        raise FcnsegError(
            f"{what} has no original_width and original_height; export the project again as JSON."
        )
    if result.get("image_rotation"):
        raise FcnsegError(
            f"{what} was drawn on the image rotated by {result['image_rotation']} degrees, which "
            "fcnseg does not convert; rotate the image file itself and annotate it unrotated."
        )
    return height, width


def _brush(result: dict[str, Any], shape: tuple[int, int], what: str) -> np.ndarray:
    value = result.get("value") or {}
    rle = value.get("rle", result.get("rle"))
    if not isinstance(rle, list):
        raise FcnsegError(f"{what} is a brush region without an rle list; export again as JSON.")
    try:
        return decode_brush(rle, *shape)
    except ValueError as error:
        raise FcnsegError(f"{what} has a brush RLE that cannot be decoded: {error}.") from None


def _polygon(result: dict[str, Any], shape: tuple[int, int], what: str) -> np.ndarray:
    """Per-cent points -> pixel coordinates of the image's corners, rasterised as COCO does."""
    points = (result.get("value") or {}).get("points")
    valid = isinstance(points, list) and all(
        isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(v, int | float) for v in p)
        for p in points
    )
    if not valid or len(points) < 3:
        raise FcnsegError(
            f"{what} is a polygon without three or more [x, y] points in per cent; export again."
        )
    height, width = shape
    flat = [coordinate for x, y in points for coordinate in (x * width / 100, y * height / 100)]
    return polygon_mask(flat, height, width)
