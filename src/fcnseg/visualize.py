"""Pictures: a fixed colour palette, mask colouring, overlays (classes, errors), training curves,
sample grids. The evaluation report's own charts are in report_figures.py.

The palette is fixed, so a class has the same colour in every picture of every run: twelve
hand-picked, well separated colours first, then colours from the bits of the class index (as
PASCAL VOC does) for the rest. The ignore label (255) is always black.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

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


def plot_curves(history: Sequence[dict[str, Any]], path: Path) -> None:
    """Training loss and validation mIoU against epoch, side by side."""
    figure = curves_figure(history)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def curves_figure(history: Sequence[dict[str, Any]]) -> plt.Figure:
    """The figure of plot_curves, for callers that render it themselves (report.html)."""
    epochs = [entry["epoch"] for entry in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(epochs, [entry["train_loss"] for entry in history], marker="o")
    left.set(title="training loss", xlabel="epoch", ylabel="loss")
    right.plot(epochs, [entry["val_miou"] for entry in history], marker="o", color="tab:green")
    right.set(title="validation mIoU", xlabel="epoch", ylabel="mIoU", ylim=(0, 1))
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_samples(
    samples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    path: Path,
    palette: np.ndarray = PALETTE,
) -> None:
    """A grid with one row per sample: image | truth overlay | prediction overlay; a legend."""
    rows = len(samples)
    figure, axes = plt.subplots(rows, 3, figsize=(10, 2.6 * rows + 0.6), squeeze=False)
    for row, (image, truth, prediction) in enumerate(samples):
        shown = image[..., 0] if image.shape[-1] == 1 else image
        panels = (shown, overlay(image, truth, palette), overlay(image, prediction, palette))
        titles = ("image", "truth", "prediction")
        for column, (panel, title) in enumerate(zip(panels, titles, strict=True)):
            axes[row, column].imshow(panel, cmap="gray" if panel.ndim == 2 else None)
            axes[row, column].set_axis_off()
            if row == 0:
                axes[row, column].set_title(title)
    handles = [Patch(color=palette[i] / 255, label=name) for i, name in enumerate(class_names)]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    figure.tight_layout(rect=(0, 0.6 / (2.6 * rows + 0.6), 1, 1))
    figure.savefig(path, dpi=90)
    plt.close(figure)
