"""Class colours: a fixed palette, mask colouring and overlays (classes, errors), in numpy only.

Data readers, inference and the training log colour masks with these, without loading
matplotlib; the report's charts are in fcnseg.report.figures.

The palette is fixed, so a class has the same colour in every picture of every run: twelve
hand-picked, well separated colours first, then colours from the bits of the class index (as
PASCAL VOC does) for the rest. The ignore label (255) is always black.
"""

from __future__ import annotations

import numpy as np

_FIRST_COLOURS = [
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
]


def _bit_colour(index: int) -> tuple[int, int, int]:
    """Spread the bits of `index` over the high bits of R, G and B (PASCAL VOC's scheme)."""
    red = green = blue = 0
    for shift in range(7, -1, -1):
        red |= ((index >> 0) & 1) << shift
        green |= ((index >> 1) & 1) << shift
        blue |= ((index >> 2) & 1) << shift
        index >>= 3
    return red, green, blue


def make_palette() -> np.ndarray:
    """(256, 3) uint8: colour of each label; 255 (ignore) is black."""
    palette = np.array([_bit_colour(i) for i in range(256)], dtype=np.uint8)
    palette[: len(_FIRST_COLOURS)] = _FIRST_COLOURS
    palette[255] = (0, 0, 0)
    return palette


PALETTE = make_palette()


def full_palette(colours: np.ndarray | list, ignore_index: int = 255) -> np.ndarray:
    """(256, 3) uint8 from the (K, 3) colours of K classes (a checkpoint's): fcnseg's fixed
    colours for labels past K, black for the ignore label."""
    colours = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)[:256]
    palette = PALETTE.copy()
    palette[: len(colours)] = colours
    palette[ignore_index % 256] = (0, 0, 0)
    return palette


def colorize(mask: np.ndarray, palette: np.ndarray = PALETTE) -> np.ndarray:
    """(H, W) labels -> (H, W, 3) uint8 colours."""
    return palette[np.clip(mask, 0, 255).astype(np.uint8)]


def overlay(
    image: np.ndarray, mask: np.ndarray, palette: np.ndarray = PALETTE, alpha: float = 0.5
) -> np.ndarray:
    """Blend the coloured mask over an (H, W, 3) or (H, W, 1) uint8 image."""
    if image.ndim == 2 or image.shape[-1] == 1:
        image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
    blended = (1 - alpha) * image[..., :3].astype(np.float32) + alpha * colorize(mask, palette)
    return blended.astype(np.uint8)


def error_overlay(
    image: np.ndarray, truth: np.ndarray, prediction: np.ndarray, ignore_index: int = 255
) -> np.ndarray:
    """Where the model errs: right pixels as the image in dim grey, wrong ones red, unlabelled
    ones (not judged) blue. Grey keeps the scene readable without competing with the marks."""
    grey = image[..., :3].astype(np.float32).mean(axis=-1, keepdims=True)  # (H, W, 1)
    picture = np.repeat(0.4 * grey, 3, axis=-1)
    picture[(truth != prediction) & (truth != ignore_index)] = (230, 25, 25)
    picture[truth == ignore_index] = (60, 120, 230)
    return picture.astype(np.uint8)


# Colours a class may take instead of one that vanishes into its image: bright and dark ones,
# saturated, far from each other.
CONTRAST_CANDIDATES = np.array(
    [
        (255, 255, 255),
        (255, 225, 25),
        (70, 240, 240),
        (240, 50, 230),
        (255, 140, 0),
        (60, 220, 75),
        (30, 30, 30),
        (0, 60, 200),
    ],
    dtype=np.uint8,
)
MIN_CONTRAST = 0.4  # luminance difference, 0..1, between a class colour and its image


def luminance(colours: np.ndarray) -> np.ndarray:
    """(..., 3) RGB on 0..255 -> (...) luminance on 0..1 (Rec. 709 weights)."""
    return np.asarray(colours, dtype=np.float64)[..., :3] @ np.array([0.2126, 0.7152, 0.0722]) / 255


def readable_palette(
    pictures: list[tuple[np.ndarray, np.ndarray]], palette: np.ndarray, num_classes: int
) -> np.ndarray:
    """A copy of `palette` in which every class stands out from the image under it.

    For each class, the mean luminance of the image pixels labelled with it (over all the
    (image (H, W, C) uint8, labels (H, W)) pairs) is compared with its colour's; where they
    differ by less than MIN_CONTRAST (black membranes drawn on dark membranes), the class takes
    the unused candidate colour that differs most. Classes absent from the pictures keep theirs.
    """
    result = np.array(palette, dtype=np.uint8, copy=True)
    sums, counts = np.zeros(num_classes), np.zeros(num_classes)
    for image, labels in pictures:
        grey = luminance(np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image)
        inside = (labels >= 0) & (labels < num_classes)
        sums += np.bincount(labels[inside].ravel(), grey[inside].ravel(), num_classes)
        counts += np.bincount(labels[inside].ravel(), minlength=num_classes)
    used = {tuple(colour) for colour in result[:num_classes].tolist()}
    for label in np.flatnonzero(counts):
        background = sums[label] / counts[label]
        if abs(luminance(result[label]) - background) >= MIN_CONTRAST:
            continue
        free = [c for c in CONTRAST_CANDIDATES if tuple(c.tolist()) not in used]
        if free:
            best = max(free, key=lambda colour: abs(luminance(colour) - background))
            result[label] = best
            used.add(tuple(best.tolist()))
    return result
