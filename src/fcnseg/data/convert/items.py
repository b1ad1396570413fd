"""The one form every converter produces, and the writer (common.py) consumes.

An `Export` is what a converter learns before decoding a single mask: the tool, the classes (0 is
always background) and one `Entry` per image. `Export.read(entry)` decodes that image's labels
into an `Item`, one image at a time, so that a large export is never held in memory whole.

Regions that overlap (COCO and Label Studio draw each object on its own, CVAT has already merged
them): they are painted largest first, so the smaller region keeps the shared pixels (equal
areas: the later one). It is the rule of the instance task's own COCO reader
(fcnseg.data.instances.coco_masks), since a small object drawn over a large one is usually in
front of it. Every overlap that changes a label is reported, with both regions and the pixels
they share: regions of different classes for semantic masks, any two regions for instances.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcnseg.data.convert.archive import ExportFiles, ImageRef
from fcnseg.data.instances.coco_masks import ImageAnnotations, paint_target
from fcnseg.data.instances.doctor import overlapping
from fcnseg.errors import FcnsegError

Colour = tuple[int, int, int]
IGNORE = 255  # the ignore label of semantic masks (fcnseg's default data.ignore_index)
OVERLAP_RULE = (
    "where regions overlap, the smaller one keeps the shared pixels (equal areas: the later one)"
)


@dataclass(frozen=True)
class Entry:
    """One image of the export, before its labels are decoded."""

    name: str  # the file name (without suffix) it gets in the output
    subset: str | None  # the tool's own subset (CVAT's ImageSets/Segmentation/<subset>.txt)
    key: Any  # whatever the converter needs to decode this image's labels


@dataclass
class Item:
    """One image and its labels, decoded: a semantic mask, or instances."""

    image: ImageRef
    semantic: np.ndarray | None = None  # (H, W) class per pixel: 0 background, 255 ignored
    ids: np.ndarray | None = None  # (H, W) instance IDs, 0 = background
    id_classes: dict[int, int] = field(default_factory=dict)  # instance ID -> class 1..K
    void: np.ndarray | None = None  # (H, W) bool: neither learned nor scored
    notes: list[str] = field(default_factory=list)  # overlaps and other things worth a look

    @property
    def shape(self) -> tuple[int, int]:
        labels = self.semantic if self.semantic is not None else self.ids
        assert labels is not None, "a converter fills semantic or ids"
        return labels.shape[0], labels.shape[1]


@dataclass
class Export:
    """An opened export: its classes, its images, and how to decode each image's labels."""

    tool: str  # in words, e.g. "CVAT Segmentation mask 1.1"
    source: Path
    class_names: list[str]  # class 0 first ("background")
    colours: list[Colour] | None  # the tool's colour of each class; None: fcnseg's palette
    entries: list[Entry]
    read: Callable[[Entry], Item]
    notes: list[str] = field(default_factory=list)
    files: list[ExportFiles] = field(default_factory=list)  # closed with the export

    def close(self) -> None:
        for files in self.files:
            files.close()


@dataclass
class Region:
    """One annotated shape (a polygon, an RLE, a brush stroke) as a mask."""

    mask: np.ndarray  # (H, W) bool
    label: int  # class 1..K; 0 (a region labelled background) erases, and is no object
    what: str  # how messages name it, e.g. "annotation 7"
    crowd: bool = False  # COCO iscrowd: one outline around many objects


def item_from_regions(
    image: ImageRef, regions: list[Region], shape: tuple[int, int], task: str, names: list[str]
) -> Item:
    """Paint an image's regions into a semantic mask or instance maps (see the module doc)."""
    if task == "semantic":  # a crowd of people is people: its class, like any region
        masks, classes = [r.mask for r in regions], [r.label for r in regions]
        target = paint_target(ImageAnnotations(masks, classes, np.zeros(shape, bool)), IGNORE)
        notes = _overlap_notes(image, regions, names, different_classes=True)
        return Item(image, semantic=target[1].astype(np.uint8), notes=notes)
    single = [region for region in regions if not region.crowd and region.label > 0]
    if len(single) >= 2**16:
        raise FcnsegError(
            f"{image.describe()} has {len(single)} objects, more than the 65535 a 16-bit "
            "instance map holds."
        )
    crowd = np.zeros(shape, bool)
    for region in regions:
        if region.crowd:
            crowd |= region.mask
    annotations = ImageAnnotations([r.mask for r in single], [r.label for r in single], crowd)
    target = paint_target(annotations, IGNORE)  # (2, H, W): IDs, classes
    present = np.unique(target[0][target[0] > 0]).tolist()
    void = target[1] == IGNORE
    notes = _overlap_notes(image, single, names, different_classes=False)
    return Item(
        image,
        ids=target[0].astype(np.uint16),
        id_classes={instance: single[instance - 1].label for instance in present},
        void=void if void.any() else None,
        notes=notes,
    )


def _overlap_notes(
    image: ImageRef, regions: list[Region], names: list[str], different_classes: bool
) -> list[str]:
    """One sentence per pair of overlapping regions whose overlap changes a label."""
    notes = []
    for first, second, pixels in overlapping([region.mask for region in regions]):
        a, b = regions[first - 1], regions[second - 1]
        if different_classes and a.label == b.label:
            continue
        keeper = a if a.mask.sum() < b.mask.sum() else b
        notes.append(
            f"{image.describe()}: {a.what} ({names[a.label]}) and {b.what} ({names[b.label]}) "
            f"overlap on {pixels} pixels, given to {keeper.what}"
        )
    return notes
