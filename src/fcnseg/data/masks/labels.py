"""From mask files to training labels: encoding, class table and label map together.

A codec (encodings.py) turns a mask file into *raw labels*; the label map turns those into the
training labels of the data contract, [0, K) or the ignore index:

    raw labels in data.ignore_labels (default: the class table's void rows)  -> ignore index
    the ignore index itself (PASCAL VOC's 255 borders)                        -> ignore index
    the other raw labels, in increasing order: the table's rows when there
    is a table, else 0, 1, 2, ... skipping ignored values                     -> 0, 1, ..., K-1
    anything else                                                             -> reported

So CamVid's masks (0..10 classes, 11 void) need no configuration beyond its classes.txt, whose
row 11 is named "Unlabelled(void,ignore)", and `ignore_labels: [0]` turns masks whose void is 0
into classes 0..K-1 from raw 1..K. K counts scored classes (fcnseg.config.scored_classes): a
single-output binary model (data.num_classes: 1) learns two, 0 background and 1 foreground.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcnseg.config import DataConfig, scored_classes
from fcnseg.data.layouts import resolve_layout
from fcnseg.data.masks.classes import ClassTable, find_class_table
from fcnseg.data.masks.encodings import (
    ColourCodec,
    IndexCodec,
    detect_codec,
    read_stored_mask,
    unique_rows,
)
from fcnseg.errors import FcnsegError
from fcnseg.palette import PALETTE

MAX_INFERRED_LABEL = 65535  # the largest 16-bit value: a class count is never inferred past it
BINARY_NAMES = ["background", "foreground"]  # a single-output model's classes, without a table


class LabelMap:
    """Raw labels -> training labels through one lookup array; -1 marks a value in no class.

    `binary`: the labels of a single-output model (0 background, 1 foreground).
    """

    def __init__(
        self, kept: list[int], ignored: list[int], ignore_index: int, binary: bool = False
    ) -> None:
        self.kept, self.ignored, self.ignore_index = kept, ignored, ignore_index
        self.binary = binary
        self.lookup = np.full(max([*kept, *ignored, ignore_index]) + 1, -1, np.int64)
        self.lookup[[*ignored, ignore_index]] = ignore_index
        self.lookup[kept] = np.arange(len(kept))

    @property
    def num_classes(self) -> int:
        return len(self.kept)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        if raw.size == 0 or (raw.min() >= 0 and raw.max() < len(self.lookup)):
            return self.lookup[raw]  # the usual case: one gather, no temporary masks
        inside = (raw >= 0) & (raw < len(self.lookup))
        return np.where(inside, self.lookup[np.where(inside, raw, 0)], -1)

    def accepted(self) -> str:
        """The raw values that are fine, in words: "0-10 (classes) and 11, 255 (ignored)"."""
        ignored = sorted({*self.ignored, self.ignore_index})
        return f"{_ranges(self.kept)} (classes) and {_ranges(ignored)} (ignored)"


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2, 5"."""
    parts, start = [], None
    for index, value in enumerate(values):
        start = value if start is None else start
        if index + 1 == len(values) or values[index + 1] != value + 1:
            parts.append(f"{start}-{value}" if value > start else f"{value}")
            start = None
    return ", ".join(parts)


@dataclass(frozen=True)
class MaskFormat:
    """How a dataset's masks are stored: the codec, the class table and the ignored raw labels."""

    codec: IndexCodec | ColourCodec
    table: ClassTable | None
    ignored: list[int]
    ignored_by: str  # "data.ignore_labels", "classes.txt void rows" or "" (none)


def detect_format(
    config: DataConfig, root: Path, layout: str, masks: list[Path], num_classes: int | None
) -> MaskFormat:
    """Read a few masks (first, middle, last) and the class table; say how labels are stored."""
    table = find_class_table(config, root, layout)
    if config.ignore_labels is not None:
        ignored, ignored_by = list(config.ignore_labels), "data.ignore_labels"
    else:
        ignored = table.void_values() if table else []
        ignored_by = f"{table.source} void rows" if ignored else ""
    picks = sorted({0, len(masks) // 2, len(masks) - 1})
    samples = [read_stored_mask(masks[i]) for i in picks]
    passed = [*ignored, config.ignore_index]  # binary masks keep these, to be ignored
    codec = detect_codec(config.mask_encoding, samples, table, num_classes, passed)
    return MaskFormat(codec, table, ignored, ignored_by)


def build_label_map(mask_format: MaskFormat, num_classes: int, ignore_index: int) -> LabelMap:
    """The label map for `num_classes` model outputs, which learn `scored_classes` of them;
    with a table, its rows must leave exactly that many classes."""
    ignored = set(mask_format.ignored) | {ignore_index}
    classes, binary = scored_classes(num_classes), num_classes == 1
    table = mask_format.table
    if table is None:
        kept = [value for value in range(classes + len(ignored)) if value not in ignored]
        return LabelMap(kept[:classes], mask_format.ignored, ignore_index, binary)
    kept = _kept(table, ignored)
    if len(kept) != classes:
        dropped = len(table.entries) - len(kept)
        learns = " (a single-output model learns 2: background and foreground)" if binary else ""
        count = f"data.num_classes: {len(kept)}, or " if len(kept) > 1 else ""
        raise FcnsegError(
            f"{table.source} lists {len(table.entries)} classes of which {dropped} are ignored, "
            f"leaving {len(kept)} to learn, but data.num_classes is {num_classes}{learns}; set "
            f"{count}data.ignore_labels to the values to ignore."
        )
    return LabelMap(kept, mask_format.ignored, ignore_index, binary)


def infer_num_classes(mask_format: MaskFormat, seen: np.ndarray, ignore_index: int) -> int:
    """K when no config says it: the table's kept rows, 2 for binary, else the labels seen."""
    ignored = set(mask_format.ignored) | {ignore_index}
    if mask_format.table is not None:
        return sum(entry.value not in ignored for entry in mask_format.table.entries)
    if mask_format.codec.name == "binary":
        return 2
    values = np.asarray(seen, np.int64)
    top = int(values[(values >= 0) & ~np.isin(values, sorted(ignored))].max(initial=0))
    if top > MAX_INFERRED_LABEL:  # a 32-bit mask, or a damaged one: no label map that large
        raise FcnsegError(
            f"the masks hold the value {top:,}: read as class indices, that is {top + 1:,} "
            f"classes; accepted: class values 0..{MAX_INFERRED_LABEL} (8- or 16-bit masks). "
            "Set data.num_classes and list stray values in data.ignore_labels, or fix the masks."
        )
    return top + 1 - sum(0 <= value <= top for value in ignored)


class LabelReader:
    """Masks -> training labels (H, W) int64, with class names and colours for pictures."""

    def __init__(self, mask_format: MaskFormat, label_map: LabelMap, names: list[str] | None):
        self.format, self.label_map = mask_format, label_map
        table = mask_format.table
        rows = {entry.value: entry for entry in table.entries} if table else {}
        unnamed = BINARY_NAMES if label_map.binary else [f"class {v}" for v in label_map.kept]
        self.class_names = names or [
            rows[value].name if value in rows else unnamed[label]
            for label, value in enumerate(label_map.kept)
        ]
        self.palette = class_palette(
            table, label_map.kept, label_map.ignore_index, mask_format.codec.colours
        )

    def read(self, path: Path) -> np.ndarray:
        """Training labels of one mask, or an error naming the file, the values and the count."""
        stored = read_stored_mask(path)
        raw = self.format.codec.decode(stored, path)
        undecoded = raw < 0
        if undecoded.any():
            raise FcnsegError(undecodable_message(path, self.format.codec, stored.array, undecoded))
        labels = self.label_map.apply(raw)
        if (labels < 0).any():
            values, counts = np.unique(raw[labels < 0], return_counts=True)
            raise FcnsegError(unknown_labels_message(path, self.label_map, values, counts))
        return labels


def _listed(values: np.ndarray, counts: np.ndarray) -> str:
    """The five most frequent values with their pixel counts: "12 (200 px), 13 (30 px)"."""
    order = np.argsort(-counts, kind="stable")[:5]
    shown = ", ".join(f"{_value(values[i])} ({int(counts[i])} px)" for i in order)
    more = f" and {len(counts) - len(order)} more values" if len(counts) > len(order) else ""
    return shown + more


def _value(value: np.ndarray) -> str:
    value = np.asarray(value)
    return f"({', '.join(str(int(v)) for v in value)})" if value.size > 1 else f"{value.item():g}"


def undecodable_message(
    path: Path, codec: IndexCodec | ColourCodec, array: np.ndarray, undecoded: np.ndarray
) -> str:
    """One sentence on pixels the encoding cannot decode: how many, which values, why, the fix."""
    values = array[undecoded]
    shown, counts = unique_rows(values.reshape(len(values), -1))
    return (
        f"mask {path} has {int(undecoded.sum())} pixels the {codec.name} encoding cannot decode: "
        f"{_listed(shown, counts)}.{codec.explain(values)}"
    )


def unknown_labels_message(
    path: Path, label_map: LabelMap, values: np.ndarray, counts: np.ndarray
) -> str:
    """One sentence on raw labels that are no class and not ignored."""
    return (
        f"mask {path} has {int(counts.sum())} pixels with labels in no class: "
        f"{_listed(values, counts)}; accepted: {label_map.accepted()}. Set data.num_classes, or "
        "list the values in data.ignore_labels to ignore them."
    )


def class_palette(
    table: ClassTable | None,
    kept: list[int],
    ignore_index: int,
    mask_colours: np.ndarray | None = None,
) -> np.ndarray:
    """(256, 3) colours by training label: the table's, else the masks' own palette, else
    fcnseg's fixed palette; the ignore label is black."""
    colours = {e.value: e.colour for e in table.entries if e.colour} if table else {}
    if not colours and mask_colours is not None:
        colours = {value: mask_colours[value] for value in kept if value < len(mask_colours)}
    palette = PALETTE.copy()
    for label, value in enumerate(kept[:255]):
        if value in colours:
            palette[label] = colours[value]
    palette[ignore_index % 256] = (0, 0, 0)
    return palette


def palette_for(config: DataConfig) -> np.ndarray:
    """Class colours from the config's class table alone, reading no mask: for `predict`, whose
    dataset may be long gone. fcnseg's fixed palette when there is no table."""
    root = Path(config.root) if config.kind == "folder" and config.root else None
    try:
        layout = resolve_layout(root, config.layout).name if root and root.is_dir() else ""
        table = find_class_table(config, root or Path("."), layout)
    except FcnsegError:
        return PALETTE
    if table is None:
        return PALETTE
    ignored = config.ignore_labels if config.ignore_labels is not None else table.void_values()
    return class_palette(table, _kept(table, {*ignored, config.ignore_index}), config.ignore_index)


def _kept(table: ClassTable, ignored: set[int]) -> list[int]:
    """The table's raw labels that are classes to learn, in order."""
    return [entry.value for entry in table.entries if entry.value not in ignored]
