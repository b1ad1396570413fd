"""The pictures of an evaluation report, as PNG bytes ready to embed in HTML.

class_iou_chart     per-class IoU as horizontal bars in the class colours; absent classes
                    named as such instead of drawn as a zero
confusion_heatmap   the confusion matrix with each row (a true class) divided by its total,
                    so a row reads "where did this class's pixels go"; rows of classes absent
                    from the truth stay blank
gallery_figure      one row per image: image | truth | prediction | errors | the worst region
                    (the window with the most wrong pixels, enlarged), titled with the
                    image's name and mIoU
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from fcnseg.palette import PALETTE, error_overlay, overlay

if TYPE_CHECKING:
    from fcnseg.data.doctor.inspect import Inspection


GALLERY_DPI = 80


def _subplots(*grid: int, **options: Any) -> tuple[Figure, Any]:
    """A figure and its axes, made without pyplot: no global backend is chosen or needed (a
    Figure renders itself with Agg when saved) and nothing has to be closed."""
    figure = Figure(figsize=options.pop("figsize", None))
    return figure, figure.subplots(*grid, **options)


@dataclass(frozen=True)
class GalleryItem:
    """One image of the best / worst gallery, with what the model made of it."""

    name: str
    miou: float
    image: np.ndarray  # (H, W, C) uint8
    truth: np.ndarray  # (H, W) labels, ignore_index where unlabelled
    prediction: np.ndarray  # (H, W) labels
    error_share: float = math.nan  # wrong pixels / labelled pixels, what the gallery ranks by


def figure_png(figure: Figure, dpi: int = 90) -> bytes:
    """Render and close a figure; the PNG's bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def class_iou_chart(
    per_class_iou: Sequence[float | None], class_names: Sequence[str], palette: np.ndarray
) -> bytes:
    """Horizontal bars, one per class (top to bottom in class order), values written beside."""
    count = len(class_names)
    figure, axis = _subplots(figsize=(7, 0.32 * count + 1.0))
    values = [math.nan if v is None else 100 * v for v in per_class_iou]  # percent
    positions = np.arange(count)
    colours = [palette[index] / 255 for index in range(count)]
    axis.barh(positions, np.nan_to_num(values), color=colours, edgecolor="0.3", linewidth=0.5)
    for position, value in zip(positions, values, strict=True):
        text = "absent" if math.isnan(value) else f"{value:.1f}"
        axis.text(1 if math.isnan(value) else value + 1, position, text, va="center")
    axis.set(yticks=positions, yticklabels=class_names, xlim=(0, 110), xlabel="IoU (%)")
    axis.invert_yaxis()
    axis.grid(axis="x", alpha=0.3)
    return figure_png(figure)


def confusion_heatmap(matrix: np.ndarray, class_names: Sequence[str]) -> bytes:
    """Row-normalised (K, K) confusion matrix, truth down, prediction across, in percent."""
    counts = np.asarray(matrix, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.full_like(counts, np.nan), where=totals > 0)
    count = len(class_names)
    side = max(4.0, 0.45 * count + 2.0)
    figure, axis = _subplots(figsize=(side + 1.0, side))
    shown = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if count <= 25:  # beyond that the numbers would not fit their cells
        for row in range(count):
            for column in range(count):
                value = shares[row, column]
                if not math.isnan(value) and value >= 0.005:
                    colour = "white" if value > 0.6 else "black"
                    label = f"{100 * value:.0f}"
                    axis.text(column, row, label, ha="center", va="center", color=colour, size=8)
    axis.set(xticks=range(count), yticks=range(count), xlabel="predicted", ylabel="true")
    axis.set_xticklabels(class_names, rotation=45, ha="right")
    axis.set_yticklabels(class_names)
    figure.colorbar(shown, ax=axis, fraction=0.046, label="share of the true class's pixels")
    return figure_png(figure)


def gallery_figure(
    items: Sequence[GalleryItem],
    palette: np.ndarray,
    ignore_index: int = 255,
    class_names: Sequence[str] = (),
) -> bytes:
    """A row per item: the image, truth and prediction overlays, and where they disagree; a
    legend of the class colours. Each panel is drawn at up to 512 pixels wide (the images' own
    width when smaller), so that single wrong pixels can be seen."""
    rows = len(items)
    height, width = items[0].image.shape[:2]
    panel_width = min(max(width, 240), 512) / GALLERY_DPI  # inches
    panel_height = panel_width * height / width
    size = (5 * panel_width + 0.4, rows * (panel_height + 0.5) + 0.6)
    figure, axes = _subplots(rows, 5, figsize=size, squeeze=False)
    titles = (
        "image",
        "truth",
        "prediction",
        "errors (red), unlabelled (blue)",
        "the worst region, enlarged: prediction",
    )
    for row, item in enumerate(items):
        shown = item.image[..., 0] if item.image.shape[-1] == 1 else item.image[..., :3]
        predicted = overlay(item.image, item.prediction, palette)
        top, left, side = worst_window(item.truth, item.prediction, ignore_index)
        panels = (
            shown,
            overlay(item.image, item.truth, palette),
            predicted,
            error_overlay(item.image, item.truth, item.prediction, ignore_index),
            predicted[top : top + side, left : left + side],
        )
        for column, panel in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(panel, cmap="gray" if panel.ndim == 2 else None, interpolation="nearest")
            axis.set_axis_off()
            axis.set_title(titles[column] if row == 0 else "", size=9)
        box = Rectangle((left - 0.5, top - 0.5), side, side, fill=False, color="yellow", lw=1.5)
        axes[row, 3].add_patch(box)  # where the enlarged region is
        axes[row, 0].text(
            0,
            -0.04,
            f"{item.name}  wrong pixels {100 * item.error_share:.1f}%  mIoU {100 * item.miou:.1f}",
            transform=axes[row, 0].transAxes,
            va="top",
            size=9,
        )
    if class_names:
        handles = [Patch(color=palette[i] / 255, label=n) for i, n in enumerate(class_names)]
        figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8))
        figure.tight_layout(rect=(0, 0.6 / figure.get_figheight(), 1, 1))
    else:
        figure.tight_layout()
    return figure_png(figure, dpi=GALLERY_DPI)


def worst_window(
    truth: np.ndarray, prediction: np.ndarray, ignore_index: int = 255, share: float = 0.25
) -> tuple[int, int, int]:
    """(top, left, side) of the square window, `share` of the image's shorter side (at least
    32 pixels), that holds the most wrong labelled pixels; the top-left one on a tie.

    Sums over every window at once from the integral image of the error map, (H+1, W+1).
    """
    height, width = truth.shape
    side = min(max(32, round(share * min(height, width))), height, width)
    wrong = ((truth != prediction) & (truth != ignore_index)).astype(np.int64)
    integral = np.pad(wrong.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (
        integral[side:, side:]
        - integral[:-side, side:]
        - integral[side:, :-side]
        + integral[:-side, :-side]
    )  # (H - side + 1, W - side + 1): the wrong pixels of the window at each top-left corner
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left), side


def plot_curves(history: Sequence[dict[str, Any]], path: Path) -> None:
    """Training and validation loss, validation mIoU and the learning rate against epoch."""
    figure = curves_figure(history)
    figure.savefig(path, dpi=100)


def curves_figure(history: Sequence[dict[str, Any]]) -> Figure:
    """The figure of plot_curves, for callers that render it themselves (report.html)."""
    epochs = [entry["epoch"] for entry in history]
    figure, (left, middle, right) = _subplots(1, 3, figsize=(14, 3.6))
    left.plot(epochs, [entry["train_loss"] for entry in history], marker="o", label="training")
    if any("val_loss" in entry for entry in history):  # runs from before it have none
        values = [entry.get("val_loss", math.nan) for entry in history]
        left.plot(epochs, values, marker="o", color="tab:orange", label="validation")
        left.legend()
    left.set(title="loss", xlabel="epoch", ylabel="loss")
    middle.plot(epochs, [entry["val_miou"] for entry in history], marker="o", color="tab:green")
    middle.set(title="validation mIoU", xlabel="epoch", ylabel="mIoU", ylim=(0, 1))
    # The learning rate at each epoch's end: where a plateau or a jump in the loss came from.
    right.plot(epochs, [entry.get("lr", math.nan) for entry in history], color="tab:purple")
    right.set(title="learning rate", xlabel="epoch", ylabel="lr", ylim=(0, None))
    for axis in (left, middle, right):
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
    figure, axes = _subplots(rows, 3, figsize=(10, 2.6 * rows + 0.6), squeeze=False)
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


def plot_class_pixels(inspection: Inspection, path: Path) -> None:
    """One panel per split: each class's share of labelled pixels, in the class's colour."""
    names = inspection.reader.class_names
    colours = inspection.reader.palette[: len(names)] / 255
    panels = len(inspection.splits)
    height = 1.2 + 0.28 * len(names)
    figure, axes = _subplots(1, panels, figsize=(4.5 * panels + 1.5, height), squeeze=False)
    for axis, scan in zip(axes[0], inspection.splits, strict=True):
        shares = 100 * scan.class_pixels / max(scan.class_pixels.sum(), 1)
        rows = np.arange(len(names))
        axis.barh(rows, shares, color=colours, edgecolor="black", linewidth=0.6)
        for row, share in zip(rows, shares, strict=True):
            axis.text(share, row, f" {share:.1f}%", va="center", fontsize=8)
        axis.set_yticks(rows, names if axis is axes[0][0] else [""] * len(names))
        axis.invert_yaxis()
        axis.set(title=f"{scan.name} ({scan.pairs} images)", xlabel="% of labelled pixels")
        axis.set_xlim(0, max(shares.max(), 1) * 1.25)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
