"""COCO segmentations as masks, and one image's annotations painted into the (2, H, W) target.

Overlaps: the smaller annotation keeps the shared pixels (equal areas: the later one), since a
small object drawn over a large one is usually in front of it. Crowd annotations (iscrowd: 1, one
outline around many objects) are void where no single annotation lies: single annotations inside
a crowd outline are real objects and are learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fcnseg.data.instances.rle import counts_from_string, decode_counts, polygon_mask
from fcnseg.errors import FcnsegError

if TYPE_CHECKING:
    from fcnseg.data.instances.coco import CocoFile, CocoImage


def segmentation_mask(annotation: dict[str, Any], image: CocoImage, source: Path) -> np.ndarray:
    """(H, W) bool mask of one annotation: polygons (their union) or RLE."""
    segmentation = annotation.get("segmentation")
    where = f"COCO file {source}: annotation {annotation.get('id')} (image {image.file_name})"
    if isinstance(segmentation, list):
        if segmentation and not all(isinstance(part, list) for part in segmentation):
            raise FcnsegError(
                f"{where} has a flat list as segmentation; COCO polygons are a list of lists, "
                "[[x1, y1, x2, y2, ...], ...], one list per part of the object."
            )
        mask = np.zeros((image.height, image.width), dtype=bool)
        for part in segmentation:
            if len(part) % 2 or not all(isinstance(v, int | float) for v in part):
                raise FcnsegError(
                    f"{where} has a polygon that is not x, y number pairs: {part[:6]}"
                )
            mask |= polygon_mask(part, image.height, image.width)
        return mask
    if isinstance(segmentation, dict) and "counts" in segmentation:
        if list(segmentation.get("size", [])) != [image.height, image.width]:
            raise FcnsegError(
                f"{where} has an RLE of size {segmentation.get('size')} (height, width) but the "
                f"image is [{image.height}, {image.width}]; they must match."
            )
        counts = segmentation["counts"]
        try:
            runs = counts if isinstance(counts, list) else counts_from_string(counts)
            return decode_counts(runs, image.height, image.width)
        except (ValueError, TypeError) as error:
            raise FcnsegError(f"{where} has an RLE that cannot be decoded: {error}.") from None
    raise FcnsegError(
        f"{where} has no mask: segmentation is {str(segmentation)[:60]}; the instance task needs "
        "polygons [[x1, y1, ...]] or RLE {counts, size} for every annotation."
    )


@dataclass
class ImageAnnotations:
    """One image's annotations as masks: the instances (ID = position + 1) and crowd outlines."""

    masks: list[np.ndarray]  # (H, W) bool each, non-crowd annotations in file order
    classes: list[int]  # class 1..C of each
    crowd: np.ndarray  # (H, W) bool, the union of the crowd annotations


def image_annotations(coco: CocoFile, index: int) -> ImageAnnotations:
    image = coco.images[index]
    masks, classes = [], []
    crowd = np.zeros((image.height, image.width), dtype=bool)
    for annotation in coco.annotations[image.id]:
        mask = segmentation_mask(annotation, image, coco.path)
        if annotation.get("iscrowd", 0):
            crowd |= mask
        else:
            masks.append(mask)
            classes.append(coco.class_of_category[annotation["category_id"]])
    return ImageAnnotations(masks, classes, crowd)


def paint_target(annotations: ImageAnnotations, ignore_index: int) -> np.ndarray:
    """(2, H, W) int64: larger annotations painted first, so smaller ones keep shared pixels."""
    height, width = annotations.crowd.shape
    target = np.zeros((2, height, width), dtype=np.int64)
    areas = [-int(mask.sum()) for mask in annotations.masks]
    for index in np.argsort(areas, kind="stable"):  # largest first; equal areas in file order
        target[0][annotations.masks[index]] = index + 1
        target[1][annotations.masks[index]] = annotations.classes[index]
    void = annotations.crowd & (target[0] == 0)  # single annotations win over crowd outlines
    target[1][void] = ignore_index
    return target
