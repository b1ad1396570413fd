"""`fcnseg predict` over files: images in, palette index masks and colour overlays out.

For each image <stem>.<ext>:

    <stem>.png           the labels as an 8-bit palette PNG: pixel values are class indices (what
                         a program reads), the palette shows each class in its colour (what a
                         person sees)
    <stem>_overlay.png   the class colours blended over the image

Where two inputs would share an output name (a.png and a.jpg; b.png and b_overlay.png), those
inputs keep their extension in it: a.png.png, a.jpg.png, a.jpg_overlay.png. Each file is
written under a hidden name and renamed when whole (fcnseg.storage.atomic), so a killed run
leaves no partial file, and `unfinished` can tell the inputs whose outputs are all complete
from the others (`fcnseg predict --skip-existing`).

Images are read as the model's training data was (greyscale / RGB, alpha, bit depth: see
fcnseg.data.images). An image too large for one pass (the Predictor's memory budget decides)
goes through tiles in row bands, each band written to both PNGs as soon as it is final, so the
masks of a 12000 x 12000 image never sit in memory whole (inference/streaming.py). A file that
cannot be read or predicted, for whatever reason, is named and skipped; the caller reports the
failures at the end and exits non-zero.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.progress import track

from fcnseg.config import DataConfig
from fcnseg.data.images import IMAGE_SUFFIXES, image_channels, open_image, read_image
from fcnseg.errors import FcnsegError
from fcnseg.inference.instances import InstancePredictor
from fcnseg.inference.predictor import Predictor
from fcnseg.inference.streaming import BandSource, PngWriter
from fcnseg.palette import overlay
from fcnseg.storage.atomic import atomic_path

CHUNK_ROWS = 64  # rows normalised or coloured at a time within a band
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the last chunk of every PNG: empty, its CRC


def mask_outputs(name: str) -> list[str]:
    """The files `predict_file` writes for an input of output name `name`."""
    return [f"{name}.png", f"{name}_overlay.png"]


def unfinished(
    images: list[Path],
    names: dict[Path, str],
    out_dir: Path,
    outputs: Callable[[str], list[str]] = mask_outputs,
) -> list[Path]:
    """The images, in their order, of which some output in out_dir is missing or incomplete."""
    return [
        image
        for image in images
        if not all(is_complete(out_dir / output) for output in outputs(names[image]))
    ]


def is_complete(path: Path) -> bool:
    """Whether `path` is a whole output: a PNG that ends in its IEND chunk, a JSON file that
    parses. Outputs are renamed into place whole; this also catches a file a machine crash cut
    short before it reached the disk, or a stranger's file of the same name."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
            return True
        with path.open("rb") as file:
            if file.seek(0, os.SEEK_END) < len(PNG_END):
                return False
            file.seek(-len(PNG_END), os.SEEK_END)
            return file.read() == PNG_END
    except (OSError, ValueError):  # missing, unreadable, not JSON
        return False


def input_images(path: Path) -> list[Path]:
    """The image file `path`, or the images in the folder `path` (resolved, sorted)."""
    if path.is_file():
        return [path.resolve()]
    if path.is_dir():
        images = sorted(p.resolve() for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            return images
        raise FcnsegError(
            f"{path} holds no images; accepted suffixes: {', '.join(IMAGE_SUFFIXES)}."
        )
    raise FcnsegError(f"{path} does not exist; give an image file or a folder of images.")


def output_names(images: list[Path]) -> dict[Path, str]:
    """Each input's output name (mask <name>.png, overlay <name>_overlay.png): its stem, or
    where outputs would clash, its whole file name. Letter case counts as the same, as on the
    file systems of macOS and Windows."""
    names = {image: image.stem for image in images}
    while clashing := _clashing(names):
        renamed = {image: image.name for image in clashing if names[image] != image.name}
        if not renamed:  # whole names that clash: A.png and a.png
            raise FcnsegError(
                "these inputs would write files of the same name: "
                f"{', '.join(sorted(image.name for image in clashing))}; rename them apart."
            )
        names.update(renamed)  # each input at most once, so this ends
    return names


def _clashing(names: dict[Path, str]) -> set[Path]:
    writers: dict[str, set[Path]] = defaultdict(set)
    for image, name in names.items():
        for output in (f"{name}.png", f"{name}_overlay.png"):
            writers[output.casefold()].add(image)
    return {image for group in writers.values() if len(group) > 1 for image in group}


def predict_files(
    predictor: Predictor | InstancePredictor,
    images: list[Path],
    out_dir: Path,
    show_progress: bool = True,
    names: dict[Path, str] | None = None,
    write: Callable[[Any, Path, Path, str], None] | None = None,
) -> list[str]:
    """Write the mask and overlay of every image into out_dir (named by `names`, default
    `output_names`); return the failures. The predictor (fcnseg.load) says how to read the
    images and which colour each class has. `write(predictor, path, out_dir, name)` writes one
    image's files: `predict_file`, or an instance model's (fcnseg.inference.instance_files)."""
    if predictor.data is None:
        raise ValueError("predict_files needs a Predictor from fcnseg.load (it knows the data)")
    names = output_names(images) if names is None else names
    write = predict_file if write is None else write
    failures = []
    progress = show_progress and len(images) > 1
    for path in track(images, description="predicting", disable=not progress, transient=True):
        try:
            write(predictor, path, out_dir, names[path])
        except FcnsegError as error:
            failures.append(str(error))
        except Exception as error:  # any one file's problem must not stop the others
            failures.append(f"cannot predict {path}: {type(error).__name__}: {error}")
    return failures


def predict_file(predictor: Predictor, path: Path, out_dir: Path, name: str | None = None) -> None:
    data, colours = predictor.data, predictor.palette
    width, height = check_input(path, data)
    name = path.stem if name is None else name
    mask_path, overlay_path = out_dir / f"{name}.png", out_dir / f"{name}_overlay.png"
    if predictor.use_tiles(1, height, width):
        with atomic_path(mask_path) as mask_partial, atomic_path(overlay_path) as overlay_partial:
            source = BandSource(path, data)
            predict_in_bands(predictor, source, mask_partial, overlay_partial, colours)
        return
    image = read_image(
        path, data.image_mode, data.image_alpha, data.image_bit_depth, data.image_scaling
    )
    labels = predictor.predict_image(image).astype(np.uint8)
    indexed = Image.fromarray(labels, mode="P")
    indexed.putpalette(colours.flatten().tolist())
    with atomic_path(mask_path) as mask_partial:
        indexed.save(mask_partial, format="PNG")
    with atomic_path(overlay_path) as overlay_partial:
        Image.fromarray(overlay(image, labels, colours)).save(overlay_partial, format="PNG")


def check_input(path: Path, data: DataConfig) -> tuple[int, int]:
    """(width, height) from the header; an error if the file cannot be opened, or lacks the
    alpha channel a model trained with `image_alpha: keep` takes as its last input channel."""
    with open_image(path) as image:  # the header checked against the pixel limit
        size, mode, info = image.size, image.mode, image.info
    has_alpha = "A" in mode or "transparency" in info
    if data.image_alpha == "keep" and not has_alpha:
        channels = image_channels(data.image_mode, data.image_alpha)
        raise FcnsegError(
            f"image {path} has no alpha channel ({mode}), but the model was trained on "
            f"{channels}-channel {data.image_mode} + alpha images; give it RGBA images, or "
            "retrain with data.image_alpha: drop."
        )
    return size


def predict_in_bands(
    predictor: Predictor,
    source: BandSource,
    mask_path: Path,
    overlay_path: Path,
    colours: np.ndarray,
) -> None:
    """Tiled prediction of an image read in bands, both PNGs written band by band.

    Work on a band is done CHUNK_ROWS rows at a time wherever the rows are independent
    (normalising, colouring), so that no band-sized temporaries pile up: memory stays at about
    (K + 1) x 4 bytes of blended logits per pixel of one row of tiles, plus the tiles in flight.
    """

    def read_rows(top: int, bottom: int) -> torch.Tensor:
        strip = torch.empty(predictor.in_channels() or 3, bottom - top, source.width)
        for start in range(top, bottom, CHUNK_ROWS):
            end = min(start + CHUNK_ROWS, bottom)
            strip[:, start - top : end - top] = predictor.normalise(source.rows(start, end))
        return strip  # (C, rows, W)

    with (
        PngWriter(mask_path, source.width, source.height, palette=colours) as mask_png,
        PngWriter(overlay_path, source.width, source.height, channels=3) as overlay_png,
    ):
        for top, labels in predictor.label_bands(read_rows, source.height, source.width):
            band = labels.to(torch.uint8).numpy()  # (rows, W)
            mask_png.write(band)
            for start in range(0, len(band), CHUNK_ROWS):
                rows = band[start : start + CHUNK_ROWS]
                image = source.rows(top + start, top + start + len(rows))
                overlay_png.write(overlay(image, rows, colours))
