"""`fcnseg predict` over files: images in, palette index masks and colour overlays out.

For each image <stem>.<ext>:

    <stem>.png           the labels as an 8-bit palette PNG: pixel values are class indices (what
                         a program reads), the palette shows each class in its colour (what a
                         person sees)
    <stem>_overlay.png   the class colours blended over the image

Images are read as the model's training data was (greyscale / RGB, alpha, bit depth: see
fcnseg.data.images). An image too large for one pass (the Predictor's memory budget decides)
goes through tiles in row bands, each band written to both PNGs as soon as it is final, so the
masks of a 12000 x 12000 image never sit in memory whole (inference/streaming.py). A file that
cannot be read is named and skipped; the caller reports the failures and exits non-zero.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from rich.progress import track

from fcnseg.config import DataConfig
from fcnseg.data.folder import image_channels, read_image
from fcnseg.errors import FcnsegError
from fcnseg.inference.predictor import Predictor
from fcnseg.inference.streaming import BandSource, PngWriter
from fcnseg.palette import overlay

CHUNK_ROWS = 64  # rows normalised or coloured at a time within a band


def predict_files(
    predictor: Predictor,
    images: list[Path],
    out_dir: Path,
    show_progress: bool = True,
) -> list[str]:
    """Write the mask and overlay of every image into out_dir; return the failures. The
    predictor (fcnseg.load) says how to read the images and which colour each class has."""
    if predictor.data is None:
        raise ValueError("predict_files needs a Predictor from fcnseg.load (it knows the data)")
    failures = []
    progress = show_progress and len(images) > 1
    for path in track(images, description="predicting", disable=not progress, transient=True):
        try:
            predict_file(predictor, path, out_dir)
        except FcnsegError as error:
            failures.append(str(error))
    return failures


def predict_file(predictor: Predictor, path: Path, out_dir: Path) -> None:
    data, colours = predictor.data, predictor.palette
    width, height = check_input(path, data)
    mask_path, overlay_path = out_dir / f"{path.stem}.png", out_dir / f"{path.stem}_overlay.png"
    if predictor.use_tiles(1, height, width):
        predict_in_bands(predictor, BandSource(path, data), mask_path, overlay_path, colours)
        return
    image = read_image(
        path, data.image_mode, data.image_alpha, data.image_bit_depth, data.image_scaling
    )
    labels = predictor.predict_image(image).astype(np.uint8)
    indexed = Image.fromarray(labels, mode="P")
    indexed.putpalette(colours.flatten().tolist())
    indexed.save(mask_path)
    Image.fromarray(overlay(image, labels, colours)).save(overlay_path)


def check_input(path: Path, data: DataConfig) -> tuple[int, int]:
    """(width, height) from the header; an error if the file cannot be opened, or lacks the
    alpha channel a model trained with `image_alpha: keep` takes as its last input channel."""
    try:
        with Image.open(path) as image:
            size, mode, info = image.size, image.mode, image.info
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise FcnsegError(f"cannot read image {path}: {error}") from None
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
