"""The label doctor for instance data: what a split holds, as numbers and names, no prose.

Nothing here stops at a bad item: an item that cannot be read is listed in `problems` with the
message training would have stopped with, so that one scan names every problem of a split.
Sizes follow COCO's AP_small/medium/large: area < 32^2, < 96^2, and the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fcnseg.config import DataConfig
from fcnseg.data.images import IMAGE_SUFFIXES
from fcnseg.data.instances.coco import CocoInstances
from fcnseg.data.instances.coco_masks import paint_target
from fcnseg.data.instances.dataset import InstanceSource, open_instance_split
from fcnseg.data.instances.folder import InstanceFolder
from fcnseg.data.instances.maps import touching_pairs
from fcnseg.errors import FcnsegError

SMALL_AREA, LARGE_AREA = 32**2, 96**2  # COCO's size limits, in pixels


@dataclass
class InstanceStatistics:
    """One split's instances; names are the items' names (file names without suffix)."""

    split: str
    images: int = 0
    instances: list[int] = field(default_factory=list)  # per readable image
    areas: list[int] = field(default_factory=list)  # pixels of every instance, as learned
    class_counts: dict[int, int] = field(default_factory=dict)  # class -> instances
    touching: list[tuple[str, int, int]] = field(default_factory=list)  # 4-adjacent pairs
    overlaps: list[tuple[str, int, int, int]] = field(default_factory=list)  # COCO: a, b, pixels
    skipped_ids: list[tuple[str, list[int]]] = field(default_factory=list)  # IDs absent below max
    empty_images: list[str] = field(default_factory=list)  # no instance at all
    one_pixel: list[tuple[str, int]] = field(default_factory=list)  # (image, ID)
    without_map: list[str] = field(default_factory=list)  # images with no instance map
    problems: list[tuple[str, str]] = field(default_factory=list)  # (item or "", error message)

    @property
    def per_image(self) -> tuple[int, float, int] | None:
        """(min, median, max) instances per image; None without a readable image."""
        if not self.instances:
            return None
        counts = np.asarray(self.instances)
        return int(counts.min()), float(np.median(counts)), int(counts.max())

    @property
    def size_counts(self) -> dict[str, int]:
        areas = np.asarray(self.areas, dtype=np.int64)
        small, large = int((areas < SMALL_AREA).sum()), int((areas >= LARGE_AREA).sum())
        return {"small": small, "medium": len(areas) - small - large, "large": large}

    def to_dict(self) -> dict[str, Any]:
        """What `fcnseg inspect` writes into inspect.json: counts, and the items behind each."""
        areas = np.asarray(self.areas, dtype=np.int64)
        spread = self.per_image
        quantiles = np.percentile(areas, [0, 5, 50, 95, 100]).tolist() if len(areas) else None
        return {
            "split": self.split,
            "images": self.images,
            "instances": int(sum(self.instances)),
            "instances_per_image": None
            if spread is None
            else dict(zip(("min", "median", "max"), spread, strict=True)),
            "area_pixels": None
            if quantiles is None
            else dict(zip(("min", "p5", "median", "p95", "max"), quantiles, strict=True)),
            "sizes": self.size_counts,
            "class_counts": {str(key): value for key, value in sorted(self.class_counts.items())},
            "touching_pairs": [list(pair) for pair in self.touching],
            "overlaps": [list(overlap) for overlap in self.overlaps],
            "skipped_ids": [[name, ids] for name, ids in self.skipped_ids],
            "empty_images": self.empty_images,
            "one_pixel": [list(item) for item in self.one_pixel],
            "without_map": self.without_map,
            "problems": [{"item": item, "message": message} for item, message in self.problems],
        }


def inspect_instances(config: DataConfig, split: str) -> InstanceStatistics:
    """Scan every item of one split of data.kind (folder, coco or synthetic)."""
    statistics = InstanceStatistics(split)
    try:
        source = _open(config, split, statistics)
    except FcnsegError as error:  # the split cannot be opened at all: say why, scan nothing
        statistics.problems.append(("", str(error)))
        return statistics
    statistics.images = len(source) + len(statistics.without_map)
    for index, name in enumerate(source.names):
        try:
            _scan_item(source, index, name, statistics)
        except FcnsegError as error:
            statistics.problems.append((name, str(error)))
    return statistics


def _open(config: DataConfig, split: str, statistics: InstanceStatistics) -> InstanceSource:
    """The split's data; for folders, only the images that have a map (the rest are noted)."""
    if config.kind != "folder" or config.root is None:
        return open_instance_split(config, split)
    images_folder = Path(config.root) / split / "images"
    maps_folder = Path(config.root) / split / "masks"
    images, maps = _listing(images_folder), _listing(maps_folder)
    if not images:
        raise FcnsegError(
            f"{images_folder} holds no images; suffixes: {', '.join(IMAGE_SUFFIXES)}."
        )
    statistics.without_map = sorted(name for name in images if name not in maps)
    pairs = [(images[name], maps[name]) for name in sorted(images) if name in maps]
    return InstanceFolder(config, split, pairs)


def _listing(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def _scan_item(
    source: InstanceSource, index: int, name: str, statistics: InstanceStatistics
) -> None:
    """Count one item; IDs are checked as written (a folder's void may hide one on purpose)."""
    if isinstance(source, CocoInstances):  # decoded once: for the target and for the overlaps
        annotations = source.annotations(index)
        target = paint_target(annotations, source.config.ignore_index)  # (2, H, W)
        statistics.overlaps += [(name, *pair) for pair in overlapping(annotations.masks)]
        numbered = len(annotations.masks)  # an ID per single annotation
    else:
        target = source.load_target(index)  # (2, H, W)
    present = _count_instances(target, name, statistics)
    if isinstance(source, InstanceFolder):
        written = np.unique(source.read_ids(index))
        present, numbered = written[written > 0].tolist(), int(written.max(initial=0))
    elif not isinstance(source, CocoInstances):
        numbered = max(present, default=0)
    skipped = sorted(set(range(1, numbered + 1)) - set(present))
    if skipped:
        statistics.skipped_ids.append((name, skipped))


def _count_instances(target: np.ndarray, name: str, statistics: InstanceStatistics) -> list[int]:
    """Add one item's instances to the statistics; its IDs present."""
    ids, first = np.unique(target[0].ravel(), return_index=True)
    present = ids[ids > 0]
    areas = np.bincount(target[0].ravel())[present]
    statistics.instances.append(len(present))
    statistics.areas += areas.tolist()
    statistics.one_pixel += [
        (name, int(i)) for i, area in zip(present, areas, strict=True) if area == 1
    ]
    if not len(present):
        statistics.empty_images.append(name)
    for value in target[1].ravel()[first[ids > 0]].tolist():  # one pixel of each ID: its class
        statistics.class_counts[value] = statistics.class_counts.get(value, 0) + 1
    statistics.touching += [(name, a, b) for a, b in touching_pairs(target[0])]
    return present.tolist()


def overlapping(masks: list[np.ndarray]) -> list[tuple[int, int, int]]:
    """(ID a, ID b, shared pixels), a < b, of overlapping annotation masks (ID = position + 1)."""
    if len(masks) < 2:
        return []
    stacked = np.stack([mask.ravel() for mask in masks])  # (n, H * W)
    shared = stacked.sum(axis=0) >= 2
    if not shared.any():
        return []
    where = stacked[:, shared].astype(np.int64)  # (n, P): only the pixels of two or more
    counts = where @ where.T  # (n, n) pixels each pair shares
    first, second = np.nonzero(np.triu(counts, k=1))
    return [(int(a) + 1, int(b) + 1, int(counts[a, b])) for a, b in zip(first, second, strict=True)]
