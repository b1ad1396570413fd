"""Writing a converted export in a layout fcnseg reads (fcnseg.data.layouts), into a folder the
command has made through fcnseg.storage (new, or an fcnseg-made one with --overwrite):

semantic: the lists layout (data.layout: lists)
    DIR/images/<name>.<suffix>   the images, copied byte for byte (the export is never changed)
    DIR/masks/<name>.png         palette PNGs: the pixel's index is its class (0 background, 255
                                 ignored), the palette holds the class colours for viewers
    DIR/classes.txt              "index name r,g,b" per class (fcnseg.data.masks.classes)
    DIR/train.txt, DIR/val.txt   the names of each split, one per line
instance: the folder layout of the instance task (fcnseg.data.instances.folder)
    DIR/<split>/images/<name>.<suffix>
    DIR/<split>/masks/<name>.png     16-bit instance IDs, 0 background
    DIR/<split>/classes/<name>.json  {"<id>": class}
    DIR/<split>/void/<name>.png      where the export marks crowds: neither learned nor scored
    DIR/classes.txt                  the class names, for data.class_names
and in both, DIR/convert.json: what was converted from where, the overlap rule, every note.

Splits: the tool's own subsets when they include a train and a val subset (CVAT's ImageSets);
otherwise every fifth image by name goes to val (at least one when there are two or more), the
rest to train.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from fcnseg.data.convert.items import IGNORE, OVERLAP_RULE, Entry, Export, Item
from fcnseg.data.decoding import DECODE_ERRORS
from fcnseg.data.images import IMAGE_SUFFIXES
from fcnseg.errors import FcnsegError
from fcnseg.palette import PALETTE

VAL_EVERY = 5  # without the tool's own subsets, every fifth image validates
IGNORE_COLOUR = (224, 224, 192)  # PASCAL VOC's colour for its ignored borders


@dataclass
class Summary:
    """What was written: where, in which layout, the classes and each split's names."""

    out_dir: Path
    task: str
    layout: str  # the data.layout that reads it
    class_names: list[str]
    splits: dict[str, list[str]]
    notes: list[str]


def assign_splits(entries: list[Entry]) -> dict[str, list[str]]:
    """Split name -> image names (see the module doc)."""
    subsets = {entry.subset or "" for entry in entries}
    if "" not in subsets and {"train", "val"} <= subsets:
        return {s: [e.name for e in entries if e.subset == s] for s in sorted(subsets)}
    names = sorted(entry.name for entry in entries)
    count = max(1, round(len(names) / VAL_EVERY)) if len(names) >= 2 else 0
    chosen = {int((index + 0.5) * len(names) / count) for index in range(count)}
    split = {name: "val" if index in chosen else "train" for index, name in enumerate(names)}
    return {key: [name for name in names if split[name] == key] for key in ("train", "val")}


def output_names(paths: list[str]) -> list[str]:
    """The output name of each image path: its stem, or where two stems agree, the whole path
    without suffix, '/' written as '__' (a/x.jpg -> a__x)."""
    stems = [PurePosixPath(path).stem for path in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [
        str(PurePosixPath(path).with_suffix("")).lstrip("/").replace("/", "__") for path in paths
    ]


def check_names(entries: list[Entry], tool: str) -> None:
    """Output names must be plain file names, one per image."""
    seen: dict[str, int] = {}
    for entry in entries:
        if not re.fullmatch(r"[^/\\]+", entry.name) or entry.name in (".", ".."):
            raise FcnsegError(f"the {tool} export names an image {entry.name!r}, not a file name.")
        seen[entry.name] = seen.get(entry.name, 0) + 1
    repeated = sorted(name for name, count in seen.items() if count > 1)
    if repeated:
        raise FcnsegError(
            f"the {tool} export has {seen[repeated[0]]} images named '{repeated[0]}' (apart from "
            "their suffix); masks are matched to images by name, so rename one of them."
        )


def class_colours(export: Export) -> list[tuple[int, int, int]]:
    if export.colours is not None:
        return list(export.colours)
    return [(int(r), int(g), int(b)) for r, g, b in PALETTE[: len(export.class_names)]]


def write_classes_txt(path: Path, names: list[str], colours: list[tuple[int, int, int]]) -> None:
    """classes.txt as fcnseg's class tables read it; '#' starts a comment there, so it goes."""
    lines = ["# index name r,g,b (written by fcnseg convert)"]
    for index, (name, colour) in enumerate(zip(names, colours, strict=True)):
        clean = " ".join(name.replace("#", "_").split()) or f"class {index}"
        lines.append(f"{index} {clean} {','.join(str(c) for c in colour)}")
    path.write_text("\n".join(lines) + "\n")


def write_export(export: Export, out_dir: Path, task: str) -> Summary:
    """Decode every image of `export` and write it into `out_dir` (made by the caller)."""
    check_names(export.entries, export.tool)
    if len(export.class_names) > IGNORE:
        raise FcnsegError(
            f"the {export.tool} export has {len(export.class_names) - 1} classes; an 8-bit mask "
            f"holds at most {IGNORE - 1} besides background and the ignore label 255."
        )
    splits = assign_splits(export.entries)
    split_of = {name: split for split, names in splits.items() for name in names}
    colours = class_colours(export)
    write_classes_txt(out_dir / "classes.txt", export.class_names, colours)
    notes = list(export.notes)
    for entry in export.entries:
        item = export.read(entry)
        notes += item.notes
        if task == "semantic":
            _write_semantic(item, out_dir, entry.name, colours)
        else:
            _write_instances(item, out_dir / split_of[entry.name], entry.name)
    if task == "semantic":
        for split, names in splits.items():
            (out_dir / f"{split}.txt").write_text("".join(f"{name}\n" for name in names))
    summary = Summary(
        out_dir,
        task,
        "lists" if task == "semantic" else "folder",
        export.class_names,
        splits,
        notes,
    )
    _write_record(export, summary)
    return summary


def _write_record(export: Export, summary: Summary) -> None:
    record = {
        "tool": export.tool,
        "source": str(export.source),
        "task": summary.task,
        "layout": summary.layout,
        "class_names": summary.class_names,
        "splits": {split: len(names) for split, names in summary.splits.items()},
        "overlap_rule": OVERLAP_RULE,
        "notes": summary.notes,
    }
    (summary.out_dir / "convert.json").write_text(json.dumps(record, indent=1) + "\n")


def _copy_image(item: Item, folder: Path, name: str) -> None:
    """The image's own bytes, after checking that it opens at the size of its labels."""
    ref = item.image
    if ref.suffix not in IMAGE_SUFFIXES:
        raise FcnsegError(
            f"{ref.describe()} is a {ref.suffix or 'suffix-less'} file; fcnseg reads images with "
            f"the suffixes {', '.join(IMAGE_SUFFIXES)}: convert it to PNG first."
        )
    data = ref.read()
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except DECODE_ERRORS as error:
        raise FcnsegError(f"cannot read image {ref.describe()}: {error}") from None
    label_height, label_width = item.shape
    if (width, height) != (label_width, label_height):
        raise FcnsegError(
            f"image {ref.describe()} is {width}x{height} (width x height) but its labels are "
            f"{label_width}x{label_height}; they were drawn on an image of another size: give "
            "the images that were annotated."
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}{ref.suffix}").write_bytes(data)


def _write_semantic(
    item: Item, out_dir: Path, name: str, colours: list[tuple[int, int, int]]
) -> None:
    assert item.semantic is not None, "a semantic converter fills item.semantic"
    _copy_image(item, out_dir / "images", name)
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(colours)] = colours
    palette[IGNORE] = IGNORE_COLOUR
    mask = Image.fromarray(item.semantic.astype(np.uint8))
    mask.putpalette(palette.ravel().tolist())  # "L" becomes "P": the index is the class
    (out_dir / "masks").mkdir(exist_ok=True)
    mask.save(out_dir / "masks" / f"{name}.png")


def _write_instances(item: Item, split_dir: Path, name: str) -> None:
    assert item.ids is not None, "an instance converter fills item.ids"
    _copy_image(item, split_dir / "images", name)
    for folder in ("masks", "classes"):
        (split_dir / folder).mkdir(exist_ok=True)
    Image.fromarray(item.ids.astype(np.uint16)).save(split_dir / "masks" / f"{name}.png")
    table = {str(instance): label for instance, label in sorted(item.id_classes.items())}
    (split_dir / "classes" / f"{name}.json").write_text(json.dumps(table) + "\n")
    if item.void is not None:
        (split_dir / "void").mkdir(exist_ok=True)
        void = item.void.astype(np.uint8) * 255
        Image.fromarray(void).save(split_dir / "void" / f"{name}.png")
