"""Tiny exports of each annotation tool, written by the tests, with the masks they must give.

Three 8 x 10 images a, b, c; classes 1 (cat) and 2 (dog) drawn as rectangles, so the expected
masks are written out by hand below.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 8, 10
CAT, DOG = 1, 2
CVAT_COLOURS = {0: (0, 0, 0), CAT: (250, 50, 83), DOG: (51, 221, 255)}
OBJECT_COLOURS = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]


def rectangle(top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """(8, 10) bool, rows top..bottom-1 and columns left..right-1."""
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[top:bottom, left:right] = True
    return mask


# Per image: its objects as (rectangle, class), in the order they first occur row by row.
OBJECTS = {
    "a": [(rectangle(1, 4, 1, 5), CAT), (rectangle(5, 8, 6, 10), DOG)],
    "b": [(rectangle(0, 4, 0, 3), CAT), (rectangle(4, 8, 0, 3), CAT)],
    "c": [(rectangle(2, 6, 3, 7), DOG)],
}


def class_mask(name: str) -> np.ndarray:
    """The hand-made (8, 10) class mask of an image."""
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    for region, label in OBJECTS[name]:
        mask[region] = label
    return mask


def id_map(name: str) -> np.ndarray:
    ids = np.zeros((HEIGHT, WIDTH), np.uint16)
    for number, (region, _) in enumerate(OBJECTS[name], start=1):
        ids[region] = number
    return ids


def picture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def cvat_files(with_images: bool = True) -> dict[str, bytes]:
    """The files of a CVAT 'Segmentation mask 1.1' export, by their path in it."""
    files = {
        "labelmap.txt": b"# label:color_rgb:parts:actions\nbackground:0,0,0::\n"
        b"cat:250,50,83::\ndog:51,221,255::\n",
        "ImageSets/Segmentation/default.txt": b"a\nb\nc\n",
    }
    for index, name in enumerate(OBJECTS):
        classes = class_mask(name)
        colours = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        for label, colour in CVAT_COLOURS.items():
            colours[classes == label] = colour
        objects = np.array(OBJECT_COLOURS, np.uint8)[id_map(name)]
        files[f"SegmentationClass/{name}.png"] = png_bytes(colours)
        files[f"SegmentationObject/{name}.png"] = png_bytes(objects)
        if with_images:
            files[f"JPEGImages/{name}.png"] = png_bytes(picture(index))
    return files


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def write_images(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        (folder / name).write_bytes(png_bytes(picture(index)))
    return folder


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)
