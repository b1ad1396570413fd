"""CVAT's "Segmentation mask 1.1" export, as a zip or the folder it unpacks to:

    labelmap.txt                          "# label:color_rgb:parts:actions", then one
                                          name:r,g,b:parts:actions line per label
    ImageSets/Segmentation/<subset>.txt   each subset's image names, without suffix
    SegmentationClass/<name>.png          class colours, those of labelmap.txt
    SegmentationObject/<name>.png         one colour per object, black between them
    JPEGImages/<name>.jpg                 the images, when exported with "Save images";
                                          otherwise --images names their folder

Without labelmap.txt the labels are PASCAL VOC's, in VOC's colours (as CVAT writes them).
Classes: the label named background (else the one coloured black, else an added "background"
for black pixels) is class 0, the other labels are 1..K in labelmap order. A colour in no line
of labelmap.txt is an error naming the file, the colour and its pixels: reading CVAT's masks
through the VOC palette instead is what misnames their classes.
Instances: every colour of SegmentationObject but black is one object, numbered in the order the
colours first occur, row by row (VOC's void colour 224,224,192, or index 255 of a palette mask,
is void); its class is the class most of its pixels have in SegmentationClass, with a note when
they disagree.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image

from fcnseg.data.convert.archive import ExportFiles, ImageIndex
from fcnseg.data.convert.common import IGNORE_COLOUR, output_names
from fcnseg.data.convert.items import Colour, Entry, Export, Item
from fcnseg.data.decoding import DECODE_ERRORS, check_pixels
from fcnseg.data.masks.classes import VOC_TABLE
from fcnseg.errors import FcnsegError

TOOL = "CVAT Segmentation mask 1.1"
MASK = re.compile(r"^(?P<base>(?:[^/]+/)?)SegmentationClass/(?P<name>.+)\.png$", re.IGNORECASE)


def read_labelmap(text: str, where: str) -> list[tuple[str, Colour]]:
    """(name, colour) per line of labelmap.txt, in order; '#' lines are comments."""
    labels = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pieces = line.split(":")
        name, colour = (":".join(pieces[:-3]), pieces[-3]) if len(pieces) >= 4 else pieces[:2]
        values = colour.split(",") if len(pieces) >= 2 else []
        if len(values) != 3 or not all(v.strip().isdigit() and int(v) < 256 for v in values):
            raise FcnsegError(
                f"{where} line {number} is {line.strip()!r}; labelmap lines are "
                "name:r,g,b:parts:actions with r, g, b in 0-255, e.g. car:250,50,83::"
            )
        labels.append((name.strip(), (int(values[0]), int(values[1]), int(values[2]))))
    if not labels:
        raise FcnsegError(f"{where} lists no labels; export the task again from CVAT.")
    return labels


def class_rows(labels: list[tuple[str, Colour]]) -> tuple[list[str], list[Colour], list[int]]:
    """Class names and colours (0 = background) and the class of each labelmap row."""
    names = [name.lower().strip("_") for name, _ in labels]
    colours = [colour for _, colour in labels]
    shared = sorted({colour for colour in colours if colours.count(colour) > 1})
    if shared:
        raise FcnsegError(
            f"labelmap.txt gives the colour {shared[0]} to two labels, so a mask cannot say which "
            "is meant; give each label its own colour in CVAT and export again."
        )
    background: int | None = None
    if "background" in names:
        background = names.index("background")
    elif (0, 0, 0) in colours:
        background = colours.index((0, 0, 0))
    rows = [row for row in range(len(labels)) if row != background]
    first = [labels[background]] if background is not None else [("background", (0, 0, 0))]
    ordered = first + [labels[row] for row in rows]
    row_class = [0] * len(labels)
    for index, row in enumerate(rows, start=1):
        row_class[row] = index
    return [name for name, _ in ordered], [colour for _, colour in ordered], row_class


def open_export(source: Path, images: Path | None, task: str, classes: list[str] | None) -> Export:
    if classes is not None:
        raise FcnsegError("--classes is for Label Studio exports; CVAT's labelmap.txt names them.")
    files = ExportFiles(source)
    try:
        return _open(files, source, images, task)
    except FcnsegError:
        files.close()
        raise


def _open(files: ExportFiles, source: Path, images: Path | None, task: str) -> Export:
    masks = {m["name"]: m["base"] for m in map(MASK.match, files.names()) if m}
    bases = sorted(set(masks.values()))
    if len(bases) != 1:
        found = "no SegmentationClass/*.png" if not bases else f"{len(bases)} export folders"
        raise FcnsegError(
            f"{source} holds {found}; a CVAT 'Segmentation mask 1.1' export has labelmap.txt "
            "and SegmentationClass/ at its top: export the task in that format."
        )
    base = bases[0]
    labels = _labels(files, base)
    names, colours, row_class = class_rows(labels)
    if task == "instance" and not any(
        n.startswith(base + "SegmentationObject/") for n in files.names()
    ):
        raise FcnsegError(
            f"{source} has no SegmentationObject/ folder, so objects cannot be told apart; "
            "export 'Segmentation mask 1.1' again, or convert with --task semantic."
        )
    entries = _entries(files, base, masks)
    extra = [ExportFiles(images)] if images is not None else []
    index = ImageIndex([(files, base + "JPEGImages/"), *((f, "") for f in extra)])
    found = {entry.name: index.find(entry.key) for entry in entries}
    _check_found(found, entries, files, base, images)
    lookup = ColourLookup(labels, row_class, files)

    def read(entry: Entry) -> Item:
        image = found[entry.name]
        assert image is not None  # _check_found refused the export otherwise
        classes = lookup.classes(base + f"SegmentationClass/{entry.key}.png")
        if task == "semantic":
            return Item(image, semantic=classes)
        objects = base + f"SegmentationObject/{entry.key}.png"
        return _instances(Item(image), classes, files, objects, names)

    return Export(TOOL, source, names, colours, entries, read, files=[files, *extra])


def _labels(files: ExportFiles, base: str) -> list[tuple[str, Colour]]:
    labelmap = base + "labelmap.txt"
    if files.exists(labelmap):
        return read_labelmap(files.read(labelmap).decode("utf-8"), files.describe(labelmap))
    # CVAT leaves labelmap.txt out when the labels are VOC's own, in VOC's colours
    return [(entry.name, entry.colour or (0, 0, 0)) for entry in VOC_TABLE.entries]


def _entries(files: ExportFiles, base: str, masks: dict[str, str]) -> list[Entry]:
    """Each listed image once, with its subset; without lists, every class mask."""
    lists = sorted(
        n
        for n in files.names()
        if re.fullmatch(re.escape(base) + r"ImageSets/Segmentation/[^/]+\.txt", n)
    )
    listed: dict[str, str | None] = {}
    for name in lists:
        subset = Path(name).stem
        for line in files.read(name).decode("utf-8").splitlines():
            if line.strip():
                listed.setdefault(line.strip(), subset)
    if not listed:
        listed = dict.fromkeys(sorted(masks))
    missing = [name for name in listed if name not in masks]
    if missing:
        raise FcnsegError(
            f"{files.describe(base + 'ImageSets/Segmentation')} lists '{missing[0]}' but there is "
            f"no {files.describe(base + 'SegmentationClass/' + missing[0] + '.png')} "
            f"({len(missing)} such names); export the task again."
        )
    names = output_names([f"{key}.png" for key in listed])  # CVAT's names have no suffix
    return [
        Entry(name, subset, key) for name, (key, subset) in zip(names, listed.items(), strict=True)
    ]


def _check_found(
    found: dict[str, object],
    entries: list[Entry],
    files: ExportFiles,
    base: str,
    images: Path | None,
) -> None:
    missing = [entry.key for entry in entries if found[entry.name] is None]
    if not missing:
        return
    shown = ", ".join(f"'{name}'" for name in missing[:3]) + (", ..." if len(missing) > 3 else "")
    looked = files.describe(base + "JPEGImages") + (f" and {images}" if images else "")
    advice = (
        "put them there"
        if images
        else "export with 'Save images' ticked, or give --images DIR, the folder of the images"
    )
    raise FcnsegError(
        f"{len(missing)} of the {len(entries)} images of the export are missing ({shown}); "
        f"looked in {looked}: {advice}."
    )


def _open_mask(files: ExportFiles, name: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(files.read(name)))
        check_pixels(*image.size, Path(name), "mask")  # from the header, before decoding
        image.load()
    except DECODE_ERRORS as error:
        raise FcnsegError(f"cannot read mask {files.describe(name)}: {error}") from None
    return image


def _keys(colours: np.ndarray) -> np.ndarray:
    colours = colours.astype(np.int64)
    return (colours[..., 0] << 16) | (colours[..., 1] << 8) | colours[..., 2]


class ColourLookup:
    """SegmentationClass colours (or, in one-channel masks, labelmap rows) -> classes."""

    def __init__(self, labels: list[tuple[str, Colour]], row_class: list[int], files: ExportFiles):
        self.files, self.row_class = files, np.asarray(row_class, np.uint8)
        keys = [int(_keys(np.array(colour))) for _, colour in labels]
        values = list(row_class)
        if 0 not in keys:  # no label is black: black pixels are the unlabelled background
            keys, values = [*keys, 0], [*values, 0]
        order = np.argsort(keys)
        self.keys = np.asarray(keys, np.int64)[order]
        self.values = np.asarray(values, np.uint8)[order]

    def classes(self, name: str) -> np.ndarray:
        """(H, W) uint8 classes of one class mask, or an error naming colours in no label."""
        image = _open_mask(self.files, name)
        if image.mode in ("L", "I", "I;16"):  # one channel: the labelmap row
            rows = np.asarray(image).astype(np.int64)
            unknown = rows >= len(self.row_class)
            if unknown.any():
                raise self._unknown(name, rows[unknown][:, None].repeat(3, axis=1))
            return self.row_class[rows]
        colours = np.asarray(image.convert("RGB"))
        keys = _keys(colours)
        position = np.searchsorted(self.keys, keys).clip(max=len(self.keys) - 1)
        known = self.keys[position] == keys
        if not known.all():
            raise self._unknown(name, colours[~known])
        return self.values[position]

    def _unknown(self, name: str, colours: np.ndarray) -> FcnsegError:
        values, counts = np.unique(colours.reshape(-1, 3), axis=0, return_counts=True)
        order = np.argsort(-counts)[:4]
        shown = ", ".join(f"{tuple(int(c) for c in values[i])} ({counts[i]} px)" for i in order)
        return FcnsegError(
            f"mask {self.files.describe(name)} has {int(counts.sum())} pixels whose colour no "
            f"label of labelmap.txt has: {shown}; add those labels to labelmap.txt (or export "
            "the task again, with its labelmap)."
        )


def _instances(
    item: Item, classes: np.ndarray, files: ExportFiles, name: str, names: list[str]
) -> Item:
    """Object colours -> IDs 1..n in order of first occurrence; each object's majority class."""
    if not files.exists(name):
        raise FcnsegError(f"the export has no object mask {files.describe(name)}; export again.")
    image = _open_mask(files, name)
    if image.mode == "P":
        keys = np.asarray(image).astype(np.int64)
        void = keys == 255
    else:
        keys = _keys(np.asarray(image.convert("RGB")))
        void = keys == int(_keys(np.array(IGNORE_COLOUR)))
    if keys.shape != classes.shape:
        raise FcnsegError(
            f"object mask {files.describe(name)} is not the size of its class mask; export again."
        )
    values, first, inverse = np.unique(keys.ravel(), return_index=True, return_inverse=True)
    objects = [v for v in np.argsort(first) if values[v] != 0 and not void.ravel()[first[v]]]
    number = np.zeros(len(values), np.uint16)  # colour -> object ID, 0 for black and void
    number[objects] = np.arange(1, len(objects) + 1)
    item.ids, item.void = number[inverse].reshape(keys.shape), void if void.any() else None
    _assign_classes(item, classes, files.describe(name), names)
    return item


def _assign_classes(item: Item, classes: np.ndarray, where: str, names: list[str]) -> None:
    """Each object's class: the one most of its pixels have (background does not count)."""
    assert item.ids is not None
    ids = item.ids.astype(np.int64)
    total = len(names)
    counts = np.bincount(ids.ravel() * total + classes.ravel(), minlength=(ids.max() + 1) * total)
    counts = counts.reshape(-1, total)[:, 1:]  # (objects + 1, K): pixels per class, no background
    for instance in range(1, ids.max() + 1):
        if counts[instance].sum() == 0:
            item.notes.append(f"{where}: object {instance} lies on background only; dropped")
            item.ids[item.ids == instance] = 0
            continue
        label = int(np.argmax(counts[instance])) + 1
        item.id_classes[instance] = label
        if (counts[instance] > 0).sum() > 1:
            item.notes.append(
                f"{where}: object {instance} covers several classes; given the class of most of "
                f"its pixels, {names[label]}"
            )
