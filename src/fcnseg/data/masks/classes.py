"""Class tables: the names, colours and void rows of a dataset's classes.

A table lists, for each *raw label* (the number a mask stores, or the row a colour stands for),
a name and optionally a colour. It comes from, in this order:

    data.classes          a file (relative to data.root, or as given)
    data.colors           inline colours, one per class (names from data.class_names)
    <root>/classes.txt    "index name r,g,b" per line, as the SegNet tutorial's CamVid has
    <root>/classes.yaml   a list of {name, color, index?, ignore?}
    <root>/class_dict.csv "name,r,g,b" with a header line (the Kaggle CamVid layout)
                          (for the voc layout, also in the VOC folder data.root leads to)
    built in              the PASCAL VOC names and palette for the voc layout (data.class_names,
                          when given, name VOC's palette indices 0, 1, ... instead), and
                          SegNet's CamVid classes for the camvid layout

A row whose name contains the word "void" or "ignore" (CamVid's "Unlabelled(void,ignore)") is a
label to ignore unless data.ignore_labels says otherwise; labels.py turns that into training labels.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from fcnseg.config import DataConfig
from fcnseg.data.layouts import find_voc_folder
from fcnseg.errors import FcnsegError
from fcnseg.text_files import load_yaml, read_text

Colour = tuple[int, int, int]
MAX_CLASS_VALUE = 65535  # the largest value a (16-bit) mask can hold
TABLE_FILES = ("classes.txt", "classes.yaml", "classes.yml", "class_dict.csv")
VOID_WORDS = re.compile(r"\b(void|ignored?)\b", re.IGNORECASE)


@dataclass(frozen=True)
class ClassEntry:
    value: int  # the raw label in the masks
    name: str
    colour: Colour | None = None
    ignore: bool = False  # a void row: its pixels are ignored in loss and metrics


@dataclass(frozen=True)
class ClassTable:
    entries: tuple[ClassEntry, ...]
    source: str  # where the table came from, for messages ("classes.txt", "built-in VOC")

    @property
    def has_colours(self) -> bool:
        return all(entry.colour is not None for entry in self.entries)

    def void_values(self) -> list[int]:
        return [entry.value for entry in self.entries if entry.ignore]


def _voc_colour(index: int) -> Colour:
    """PASCAL VOC's palette: the bits of the index spread over the high bits of R, G and B."""
    channels = [0, 0, 0]
    for shift in range(7, -1, -1):
        for channel in range(3):
            channels[channel] |= ((index >> channel) & 1) << shift
        index >>= 3
    return channels[0], channels[1], channels[2]


VOC_NAMES = (
    *("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat"),
    *("chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant"),
    *("sheep", "sofa", "train", "tvmonitor"),
)
VOC_TABLE = ClassTable(
    tuple(ClassEntry(i, name, _voc_colour(i)) for i, name in enumerate(VOC_NAMES)), "built-in VOC"
)
_CAMVID_ROWS = (
    ("Sky", (128, 128, 128)),
    ("Building", (128, 0, 0)),
    ("Pole", (192, 192, 128)),
    ("Road", (128, 64, 128)),
    ("Pavement", (60, 40, 222)),
    ("Tree", (128, 128, 0)),
    ("SignSymbol", (192, 128, 128)),
    ("Fence", (64, 64, 128)),
    ("Car", (64, 0, 128)),
    ("Pedestrian", (64, 64, 0)),
    ("Bicyclist", (0, 128, 192)),
    ("void", (0, 0, 0)),
)
CAMVID_TABLE = ClassTable(
    tuple(ClassEntry(i, n, c, n == "void") for i, (n, c) in enumerate(_CAMVID_ROWS)),
    "built-in SegNet CamVid",
)
BUILT_IN = {"voc": VOC_TABLE, "camvid": CAMVID_TABLE}


def _entry(value: int, name: str, colour: Colour | None, ignore: bool | None = None) -> ClassEntry:
    """A table row; without an explicit `ignore`, a name saying void or ignore makes it void."""
    void = bool(VOID_WORDS.search(name)) if ignore is None else bool(ignore)
    return ClassEntry(value, name, colour, void)


def _parse_colour(text: str | list, where: str) -> Colour:
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        colour = tuple(int(part) for part in parts)
    except (TypeError, ValueError):
        colour = ()
    if len(colour) != 3 or not all(0 <= c <= 255 for c in colour):
        raise FcnsegError(f"{where}: colour {text!r} is not three numbers 0-255 (r,g,b); fix it.")
    return colour  # type: ignore[return-value]


def read_classes_txt(path: Path) -> ClassTable:
    """Lines "index name r,g,b" (colour optional), or just "name" (index = row); # comments."""
    entries = []
    lines = [line.split("#")[0].split() for line in read_text(path, "class table").splitlines()]
    for number, words in enumerate(lines, start=1):
        if not words:
            continue
        where = f"{path} line {number}"
        colour = None
        if len(words) > 1 and re.fullmatch(r"\d+,\d+,\d+", words[-1]):
            colour = _parse_colour(words.pop(), where)
        numbered = len(words) > 1 and re.fullmatch(r"[-+]?\d+", words[0]) is not None
        value = int(words.pop(0)) if numbered else len(entries)
        entries.append(_entry(value, " ".join(words), colour))
    return _checked(entries, path)


def read_classes_yaml(path: Path) -> ClassTable:
    """A list (or {classes: list}) of {name, color: [r, g, b], index?, ignore?} mappings."""
    data = load_yaml(read_text(path, "class table"), f"class table {path}")
    rows = data.get("classes") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "name" in r for r in rows):
        raise FcnsegError(
            f"class table {path} must be a list of mappings such as "
            "{name: road, color: [128, 64, 128]} (optionally under a 'classes:' key)."
        )
    entries = []
    for row, item in enumerate(rows):
        colour = item.get("color", item.get("colour"))
        colour = None if colour is None else _parse_colour(colour, f"{path} class {item['name']}")
        value = item.get("index", row)
        if not isinstance(value, int) or isinstance(value, bool):
            raise FcnsegError(
                f"class table {path}: class {item['name']!r} has index {value!r}; an index is a "
                "whole number (the class's value in the masks)."
            )
        entries.append(_entry(value, str(item["name"]), colour, item.get("ignore")))
    return _checked(entries, path)


def read_class_dict_csv(path: Path) -> ClassTable:
    """A header "name,r,g,b" and one row per class, the row number being the raw label."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    entries = [
        _entry(row_number, row[0].strip(), _parse_colour(row[1:4], f"{path} row {row_number + 2}"))
        for row_number, row in enumerate(row for row in rows[1:] if row)
    ]
    return _checked(entries, path)


def _checked(entries: list[ClassEntry], path: Path) -> ClassTable:
    if not entries:
        raise FcnsegError(f"class table {path} lists no classes; write one class per line.")
    values = [entry.value for entry in entries]
    outside = [value for value in values if not 0 <= value <= MAX_CLASS_VALUE]
    if outside:
        raise FcnsegError(
            f"class table {path} gives a class the index {outside[0]}; a mask value is a whole "
            f"number from 0 to {MAX_CLASS_VALUE} (16-bit masks). Number the classes 0, 1, 2, ..."
        )
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise FcnsegError(
            f"class table {path} lists index {repeated[0]} twice; give each class its own index."
        )
    colours = [entry.colour for entry in entries if entry.colour is not None]
    shared = sorted({c for c in colours if colours.count(c) > 1})
    if shared:
        raise FcnsegError(
            f"class table {path} gives colour {shared[0]} to two classes, so masks cannot say "
            "which is meant; give each class its own colour."
        )
    return ClassTable(tuple(sorted(entries, key=lambda entry: entry.value)), path.name)


def read_class_table(path: Path) -> ClassTable:
    if path.suffix in (".yaml", ".yml"):
        return read_classes_yaml(path)
    if path.suffix == ".csv":
        return read_class_dict_csv(path)
    return read_classes_txt(path)


def find_class_table(config: DataConfig, root: Path, layout: str) -> ClassTable | None:
    """The dataset's class table, from the first source that has one (see the module doc)."""
    if config.classes is not None:
        for candidate in (root / config.classes, Path(config.classes)):
            if candidate.is_file():
                return read_class_table(candidate)
        raise FcnsegError(
            f"data.classes is {config.classes} but neither {root / config.classes} nor "
            f"{Path(config.classes).resolve()} exists; give the class table's path."
        )
    if config.colors is not None:
        names = config.class_names or [f"class {i}" for i in range(len(config.colors))]
        if len(names) != len(config.colors):
            raise FcnsegError(
                f"data.colors has {len(config.colors)} colours but data.class_names has "
                f"{len(names)} names; give one colour per class."
            )
        rows = zip(names, config.colors, strict=True)
        entries = tuple(ClassEntry(i, name, tuple(c)) for i, (name, c) in enumerate(rows))
        return ClassTable(entries, "data.colors")
    voc = find_voc_folder(root) if layout == "voc" and root.is_dir() else None
    for folder in dict.fromkeys([root, *([voc] if voc else [])]):  # VOC's own folder too
        for name in TABLE_FILES:
            if (folder / name).is_file():
                return read_class_table(folder / name)
    if layout == "voc" and config.class_names:  # the user's names for VOC's palette indices
        rows = enumerate(config.class_names)
        entries = tuple(_entry(value, name, _voc_colour(value)) for value, name in rows)
        return ClassTable(entries, "data.class_names, in VOC's palette")
    return BUILT_IN.get(layout)
