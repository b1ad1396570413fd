"""Reading a split for the label doctor: every mask once, every image's header, in two passes.

    1. `scan_split`, per mask: its size against its image's, the pixels its encoding cannot
       decode (colours in no table, anti-aliased edges), and the pixel count of each raw label
    2. `count_classes`, per split: the label map turns those raw counts into class counts,
       numbers rather than pixels, so no mask is read twice

Problems are collected per file (see PROBLEMS) rather than raised, so that one run names them all.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fcnseg.config import DataConfig
from fcnseg.data.images import (
    describe_image,
    open_image,
    read_image,
    read_stored_image,
    stored_bits,
)
from fcnseg.data.layouts import Layout, find_pairs, unpaired_masks
from fcnseg.data.masks.encodings import read_stored_mask
from fcnseg.data.masks.labels import (
    LabelMap,
    MaskFormat,
    detect_format,
    undecodable_message,
    unknown_labels_message,
)
from fcnseg.errors import FcnsegError

PROBLEMS = {  # kind of per-file problem -> how a finding names it
    "unusable": "files cannot be read or decoded",
    "size": "masks differ in size from their images",
    "undecodable": "masks have pixels their encoding cannot decode",
    "labels": "masks have labels in no class",
    "depth": "images have values outside their bit depth",
}


@dataclass
class MaskCounts:
    path: Path
    values: np.ndarray  # the raw labels present
    counts: np.ndarray  # pixels of each


@dataclass
class SplitScan:
    """What one split holds, from its files; class statistics are filled in by `count_classes`."""

    name: str
    format: MaskFormat
    pairs: int = 0
    image_sizes: Counter = field(default_factory=Counter)  # (width, height) -> images
    image_kinds: Counter = field(default_factory=Counter)  # "RGB 8-bit" -> images
    mask_kinds: Counter = field(default_factory=Counter)  # "L 8-bit" -> masks
    widest_value: float = 0.0  # the largest stored value of the split's 16-bit images
    masks: list[MaskCounts] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    unpaired: list[Path] = field(default_factory=list)
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(0))
    presence_pixels: np.ndarray = field(default_factory=lambda: np.zeros(0))  # see weights
    ignored_pixels: int = 0
    one_class: list[tuple[Path, int]] = field(default_factory=list)


def scan_split(
    root: Path, layout: Layout, split: str, config: DataConfig, infer_classes: bool
) -> SplitScan:
    pairs = find_pairs(root, split, layout)
    masks = [mask for _, mask in pairs]
    num_classes = None if infer_classes else config.num_classes
    scan = SplitScan(split, detect_format(config, root, layout.name, masks, num_classes))
    scan.pairs = len(pairs)
    for image_path, mask_path in pairs:
        try:
            _scan_pair(scan, image_path, mask_path, config)
        except FcnsegError as error:
            scan.problems["unusable"].append(str(error))
    scan.unpaired = unpaired_masks(root, split, layout)
    return scan


def _scan_pair(scan: SplitScan, image_path: Path, mask_path: Path, config: DataConfig) -> None:
    """One pair: image header, one read of the mask, its raw label counts."""
    with open_image(image_path) as image:  # the header checked before anything is decoded
        size, kind, wide = image.size, describe_image(image), stored_bits(image) > 8
    scan.image_sizes[size] += 1
    scan.image_kinds[kind] += 1
    if wide:
        _scan_wide_image(scan, image_path, config)
    stored = read_stored_mask(mask_path)
    scan.mask_kinds[stored.mode] += 1
    height, width = stored.array.shape[:2]
    if (width, height) != size:
        scan.problems["size"].append(
            f"mask {mask_path} is {width}x{height} but its image {image_path} is "
            f"{size[0]}x{size[1]} (width x height)"
        )
    raw = scan.format.codec.decode(stored, mask_path)
    undecoded = raw < 0
    if undecoded.any():
        message = undecodable_message(mask_path, scan.format.codec, stored.array, undecoded)
        scan.problems["undecodable"].append(message)
        raw = raw[~undecoded]
    # np.unique, not bincount: a 32-bit mask holding one value of 2^28 would need a 2 GB count
    values, counts = np.unique(raw.ravel(), return_counts=True)
    scan.masks.append(MaskCounts(mask_path, values, counts))


def _scan_wide_image(scan: SplitScan, path: Path, config: DataConfig) -> None:
    """16-bit images: their largest value, and whether the scaling policy accepts them."""
    array, _ = read_stored_image(path)
    scan.widest_value = max(scan.widest_value, float(array.max()))
    try:
        read_image(path, "L", "drop", config.image_bit_depth, config.image_scaling)
    except FcnsegError as error:
        scan.problems["depth"].append(str(error))


def count_classes(scan: SplitScan, label_map: LabelMap) -> None:
    """Class pixels of a split from its masks' raw counts (numbers, not pixels: fast)."""
    classes = label_map.num_classes
    scan.class_pixels = np.zeros(classes, np.int64)
    scan.presence_pixels = np.zeros(classes, np.int64)
    for mask in scan.masks:
        labels = label_map.apply(mask.values)
        unknown = labels < 0
        if unknown.any():
            scan.problems["labels"].append(
                unknown_labels_message(
                    mask.path, label_map, mask.values[unknown], mask.counts[unknown]
                )
            )
        learned = (labels >= 0) & (labels < classes)
        per_class = np.bincount(labels[learned], weights=mask.counts[learned], minlength=classes)
        scan.class_pixels += per_class.astype(np.int64)
        scan.ignored_pixels += int(mask.counts[labels == label_map.ignore_index].sum())
        present = per_class > 0
        scan.presence_pixels += present * int(per_class.sum())  # labelled pixels only
        if present.sum() == 1:
            scan.one_class.append((mask.path, int(np.flatnonzero(present)[0])))
