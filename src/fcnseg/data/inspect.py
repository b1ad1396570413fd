"""The label doctor: everything worth knowing about a dataset's labels before training on it.

`inspect_data` reads every mask once (one decode and one `np.bincount` each) and every image's
header, in two passes over the numbers rather than the pixels:

    1. per mask: its size against its image's, pixels its encoding cannot decode (colours in no
       table, anti-aliased edges), and the count of each raw label
    2. per split: the label map turns raw counts into class counts; labels in no class, classes
       absent from a split, masks that are all one class, and suspicious encodings are found

Findings are errors (training would fail, or learn nothing) or warnings (worth a look).
`fcnseg inspect` prints them with the statistics (inspect_report.py) and exits non-zero on an
error; `fcnseg train` runs `check_before_training`, which refuses to start on one.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fcnseg.config import DataConfig
from fcnseg.data.encodings import read_stored_mask
from fcnseg.data.images import describe_image, read_image, read_stored_image, stored_bits
from fcnseg.data.labels import (
    LabelMap,
    LabelReader,
    MaskFormat,
    build_label_map,
    detect_format,
    infer_num_classes,
    undecodable_message,
    unknown_labels_message,
)
from fcnseg.data.layouts import Layout, find_pairs, resolve_layout, unpaired_masks
from fcnseg.errors import FcnsegError

PROBLEMS = {  # kind of per-file problem -> how a finding names it
    "unreadable": "files cannot be read",
    "size": "masks differ in size from their images",
    "undecodable": "masks have pixels their encoding cannot decode",
    "labels": "masks have labels in no class",
    "depth": "images have values outside their bit depth",
}


@dataclass(frozen=True)
class Finding:
    severity: str  # "error": training would fail or learn nothing; "warning": worth a look
    message: str


@dataclass
class MaskCounts:
    path: Path
    values: np.ndarray  # the raw labels present
    counts: np.ndarray  # pixels of each
    pixels: int  # all pixels of the mask


@dataclass
class SplitScan:
    """What one split holds, from its files; class statistics are filled in by `_count`."""

    name: str
    format: MaskFormat
    pairs: int = 0
    image_sizes: Counter = field(default_factory=Counter)  # (width, height) -> images
    image_kinds: Counter = field(default_factory=Counter)  # "RGB 8-bit" -> images
    widest_value: float = 0.0  # the largest stored value of the split's 16-bit images
    masks: list[MaskCounts] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    unpaired: list[Path] = field(default_factory=list)
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(0))
    presence_pixels: np.ndarray = field(default_factory=lambda: np.zeros(0))  # see weights
    ignored_pixels: int = 0
    one_class: list[tuple[Path, int]] = field(default_factory=list)


@dataclass
class Inspection:
    root: Path
    layout: Layout
    num_classes: int
    reader: LabelReader
    splits: list[SplitScan]
    findings: list[Finding]
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "error"]


def inspect_data(
    config: DataConfig, infer_classes: bool = False, splits: list[str] | None = None
) -> Inspection:
    """Scan `splits` (default: every split the layout finds) of the dataset at data.root.

    infer_classes: take the number of classes from the class table or the masks rather than
    from data.num_classes (for `fcnseg inspect DATA_DIR` without a config).
    """
    started = time.perf_counter()
    if config.root is None:
        raise FcnsegError("data.root is not set; give the dataset's folder.")
    root = Path(config.root)
    layout = resolve_layout(root, config.layout)
    names = splits or layout.splits(root)
    findings, scans = [], []
    for split in names:
        try:
            scans.append(_scan_split(root, layout, split, config, infer_classes))
        except FcnsegError as error:
            findings.append(Finding("error", f"split '{split}': {error}"))
    if not scans:
        raise FcnsegError(findings[0].message if findings else f"{root} holds no split to read.")
    mask_format = scans[0].format
    seen = np.unique(np.concatenate([mask.values for scan in scans for mask in scan.masks]))
    num_classes = (
        infer_num_classes(mask_format, seen, config.ignore_index)
        if infer_classes
        else config.num_classes
    )
    label_map = build_label_map(mask_format, num_classes, config.ignore_index)
    reader = LabelReader(mask_format, label_map, config.class_names)
    for scan in scans:
        _count(scan, label_map)
    findings += _findings(scans, config, reader, seen, names)
    return Inspection(
        root, layout, num_classes, reader, scans, findings, time.perf_counter() - started
    )


def _scan_split(
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
            scan.problems["unreadable"].append(str(error))
    scan.unpaired = unpaired_masks(root, split, layout)
    return scan


def _scan_pair(scan: SplitScan, image_path: Path, mask_path: Path, config: DataConfig) -> None:
    """One pair: image header, one read of the mask, its raw label counts."""
    try:
        with Image.open(image_path) as image:
            size, kind, wide = image.size, describe_image(image), stored_bits(image) > 8
    except (OSError, UnidentifiedImageError) as error:
        raise FcnsegError(f"cannot read image {image_path}: {error}") from None
    scan.image_sizes[size] += 1
    scan.image_kinds[kind] += 1
    if wide:
        _scan_wide_image(scan, image_path, config)
    stored = read_stored_mask(mask_path)
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
    counts = np.bincount(raw.ravel())
    values = np.flatnonzero(counts)
    scan.masks.append(MaskCounts(mask_path, values, counts[values], width * height))


def _scan_wide_image(scan: SplitScan, path: Path, config: DataConfig) -> None:
    """16-bit images: their largest value, and whether the scaling policy accepts them."""
    array, _ = read_stored_image(path)
    scan.widest_value = max(scan.widest_value, float(array.max()))
    try:
        read_image(path, "L", "drop", config.image_bit_depth, config.image_scaling)
    except FcnsegError as error:
        scan.problems["depth"].append(str(error))


def _count(scan: SplitScan, label_map: LabelMap) -> None:
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
        scan.presence_pixels += present * mask.pixels
        if present.sum() == 1:
            scan.one_class.append((mask.path, int(np.flatnonzero(present)[0])))


def _findings(
    scans: list[SplitScan],
    config: DataConfig,
    reader: LabelReader,
    seen: np.ndarray,
    names: list[str],
) -> list[Finding]:
    findings = [
        Finding(
            "error",
            f"{scan.name}: {len(sentences)} {PROBLEMS[kind]}; the first: {sentences[0]}"
            if len(sentences) > 1
            else f"{scan.name}: {sentences[0]}",
        )
        for scan in scans
        for kind, sentences in scan.problems.items()
        if sentences
    ]
    findings += _split_findings(scans, config, names)
    findings += _encoding_findings(scans, config, reader, seen)
    for scan in scans:
        findings += _class_findings(scan, config, reader.class_names)
    return findings


def _split_findings(scans: list[SplitScan], config: DataConfig, names: list[str]) -> list[Finding]:
    """Training reads data.train_split and data.val_split, in batches of one image size."""
    findings = [
        Finding(
            "error",
            f"there is no split '{split}' (found: {', '.join(names) or 'none'}); training reads "
            f"it, so set data.{key} to one of the splits.",
        )
        for key, split in (("train_split", config.train_split), ("val_split", config.val_split))
        if split not in names
    ]
    for scan in scans:
        sizes = scan.image_sizes
        resized = scan.name == config.train_split and config.train_resize is not None
        cropped = scan.name == config.train_split and config.crop_size is not None
        if len(sizes) > 1 and config.batch_size > 1 and not (resized or cropped):
            shown = ", ".join(f"{w}x{h}" for (w, h), _ in sizes.most_common(3))
            findings.append(
                Finding(
                    "error",
                    f"{scan.name}: images come in {len(sizes)} sizes ({shown}, ...) but a batch "
                    f"of {config.batch_size} needs one size; set data.crop_size (training) or "
                    "data.batch_size: 1.",
                )
            )
        if scan.unpaired:
            findings.append(
                Finding(
                    "warning",
                    f"{scan.name}: {len(scan.unpaired)} masks have no image and are unused, "
                    f"e.g. {scan.unpaired[0]}.",
                )
            )
    return findings


def _encoding_findings(
    scans: list[SplitScan], config: DataConfig, reader: LabelReader, seen: np.ndarray
) -> list[Finding]:
    """Encodings that read without error but would teach the wrong thing."""
    findings = []
    descriptions = {scan.format.codec.description for scan in scans}
    if len(descriptions) > 1:
        findings.append(
            Finding("warning", f"splits differ in mask encoding: {'; '.join(descriptions)}.")
        )
    codec = reader.format.codec
    if codec.name == "index" and set(seen.tolist()) == {0, 255} and config.ignore_index == 255:
        findings.append(
            Finding(
                "error",
                "the masks hold only 0 and 255, read as class numbers with 255 = ignore, so "
                "every 255 pixel would be ignored; if 255 marks the foreground, set "
                "data.mask_encoding: binary (0 -> 0, 255 -> 1) and data.num_classes: 2.",
            )
        )
    widest = max(scan.widest_value for scan in scans)
    scaled_by_depth = config.image_bit_depth is None and config.image_scaling == "bit_depth"
    if scaled_by_depth and 0 < widest < 2**12:
        findings.append(
            Finding(
                "warning",
                f"16-bit images use values up to {widest:g} only, so scaled by 65535 they look "
                "almost black; set data.image_bit_depth (12 for 0..4095) or image_scaling: "
                "per_image.",
            )
        )
    return findings


def _class_findings(scan: SplitScan, config: DataConfig, names: list[str]) -> list[Finding]:
    findings = []
    learned = np.flatnonzero(scan.class_pixels > 0)
    training = scan.name == config.train_split
    if training and len(learned) < 2:
        only = f"only {names[learned[0]]}" if len(learned) else "no class at all"
        findings.append(
            Finding(
                "error",
                f"{scan.name}: the labelled pixels are {only}, so a model can learn nothing "
                "from them; check data.num_classes, data.ignore_labels and the mask encoding.",
            )
        )
    absent = [names[c] for c in np.flatnonzero(scan.class_pixels == 0)]
    if absent and len(learned):
        effect = "the model never sees it" if training else "its IoU cannot be measured there"
        findings.append(
            Finding(
                "warning",
                f"{scan.name}: {len(absent)} classes never occur ({', '.join(absent[:8])}): "
                f"{effect}.",
            )
        )
    if scan.one_class:
        path, label = scan.one_class[0]
        findings.append(
            Finding(
                "warning",
                f"{scan.name}: {len(scan.one_class)} masks hold a single class, e.g. {path} "
                f"is all {names[label]}.",
            )
        )
    return findings


def check_before_training(config: DataConfig) -> None:
    """The doctor's blocking checks on the training and validation splits; warnings are logged."""
    inspection = inspect_data(config, splits=[config.train_split, config.val_split])
    for finding in inspection.findings:
        if finding.severity == "warning":
            logging.getLogger(__name__).warning(finding.message)
    errors = inspection.errors
    if errors:
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise FcnsegError(
            f"the labels would spoil training: {errors[0].message.rstrip('.')}{more}; "
            f"`fcnseg inspect {config.root}` gives the full account."
        )
