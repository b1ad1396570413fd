"""The pictures of an instance report (matplotlib without pyplot, as figures.py).

judged_panels               truth and prediction of one image, each instance in its own colour
                            with its contour; missed true instances get a dashed yellow contour,
                            false predictions a red one (the hues of fcnseg.inference.
                            instance_pictures skip red and yellow, so the marks stand out)
instance_gallery_figure     a row per image: image | truth | prediction, with those marks
precision_recall_figure     precision against recall at IoU 0.5 and 0.75 (mean over classes)
instance_curves_figure      training loss, and val AP, AP50 and DSB against epoch
plot_instance_sizes         `fcnseg inspect`: how many instances of each size, per split
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from fcnseg.data.instances.doctor import LARGE_AREA, SMALL_AREA, InstanceStatistics
from fcnseg.inference.instance_pictures import (
    FALSE_COLOUR,
    MISSED_COLOUR,
    grey_rgb,
    mark_ids,
    paint_ids,
)
from fcnseg.metrics.instances import InstanceScores
from fcnseg.report.figures import _subplots, figure_png
from fcnseg.report.instance_evaluation import InstanceGalleryItem

MARKS_NOTE = (
    "each instance in its own colour; dashed yellow contour: a true instance no prediction "
    "matches (missed); red contour: a prediction that matches no true instance (false); "
    "matched at mask IoU >= 0.5, one to one, best score first, classes aside; where "
    "predictions overlap, the higher score is drawn on top (a false one may hide under it)"
)


def judged_panels(item: InstanceGalleryItem) -> tuple[np.ndarray, np.ndarray]:
    """(truth, prediction) pictures (H, W, 3) uint8 of one judged image."""
    truth_ids = np.asarray(item.truth_ids, dtype=np.int64)
    missed = np.zeros(int(truth_ids.max(initial=0)) + 1, dtype=bool)
    missed[item.match.missed_ids] = True
    truth = mark_ids(paint_ids(item.image, truth_ids), truth_ids, missed, MISSED_COLOUR, True)
    found_ids = item.found.id_map().numpy()  # instance i is ID i + 1; overlaps by score
    false = np.concatenate([[False], ~item.match.predicted_matched])  # (M + 1,)
    prediction = mark_ids(paint_ids(item.image, found_ids), found_ids, false, FALSE_COLOUR)
    return truth, prediction


def instance_gallery_figure(items: Sequence[InstanceGalleryItem]) -> bytes:
    """A row per item: image | truth | prediction, titled with counts and the DSB score."""
    rows = len(items)
    aspect = max(item.image.shape[0] / item.image.shape[1] for item in items)
    # Rows as tall as the tallest picture (height / width) needs at 10 / 3 inches wide, + caption.
    height = rows * (10 / 3 * aspect + 0.5)
    figure, axes = _subplots(rows, 3, figsize=(10, height), squeeze=False)
    titles = ("image", "truth (dashed yellow: missed)", "prediction (red: false)")
    for row, item in enumerate(items):
        truth, prediction = judged_panels(item)
        for column, panel in enumerate((grey_rgb(item.image), truth, prediction)):
            axis = axes[row, column]
            axis.imshow(panel)
            axis.set_axis_off()
            axis.set_title(titles[column] if row == 0 else "", size=9)
        match = item.match
        text = (
            f"{item.name}  DSB {100 * item.dsb:.1f}\ntruth {len(match.truth_ids)}, "
            f"missed {len(match.missed_ids)}; predicted {len(match.predicted_matched)}, "
            f"false {int((~match.predicted_matched).sum())}"
        )
        # Two short lines, no wider than the panel: a wider caption would widen the columns.
        axes[row, 0].text(0, -0.03, text, transform=axes[row, 0].transAxes, va="top", size=8)
    figure.tight_layout()
    return figure_png(figure, dpi=80)


def precision_recall_figure(scores: InstanceScores) -> Figure:
    """Precision at COCO's 101 recall points, IoU 0.5 and 0.75; gaps where none is defined."""
    figure, axis = _subplots(figsize=(5.5, 4.0))
    recall = np.asarray(scores.recall_points)
    for values, label, ap in (
        (scores.precision_at_50, "IoU 0.50", scores.ap50),
        (scores.precision_at_75, "IoU 0.75", scores.ap75),
    ):
        precision = np.asarray(values, dtype=np.float64)
        name = label if math.isnan(ap) else f"{label} (AP {100 * ap:.1f})"
        axis.plot(recall, precision, label=name)
    axis.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    axis.set_title("precision-recall, mean over classes", size=10)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left")
    figure.tight_layout()
    return figure


def instance_curves_figure(history: Sequence[dict[str, Any]]) -> Figure:
    """Training loss, and the validation figures of an instance run, against epoch."""
    epochs = [entry["epoch"] for entry in history]
    figure, (left, right) = _subplots(1, 2, figsize=(10, 3.6))
    left.plot(epochs, [entry["train_loss"] for entry in history], marker="o")
    left.set(title="training loss", xlabel="epoch", ylabel="loss")
    for key, label in (("val_ap", "AP"), ("val_ap50", "AP50"), ("val_dsb_score", "DSB")):
        values = [entry.get(key) for entry in history]
        right.plot(epochs, [math.nan if v is None else v for v in values], marker="o", label=label)
    right.set(title="validation", xlabel="epoch", ylabel="score", ylim=(0, 1))
    right.legend(loc="best")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_instance_sizes(splits: Sequence[InstanceStatistics], path: Path) -> None:
    """One panel per split: a histogram of instance sizes (the square root of the area, the
    side of a square of that area) on a log axis, with COCO's small / medium / large limits."""
    figure, axes = _subplots(1, len(splits), figsize=(4.5 * len(splits), 3.2), squeeze=False)
    for axis, statistics in zip(axes[0], splits, strict=True):
        sides = np.sqrt(np.asarray(statistics.areas, dtype=np.float64))
        if len(sides):
            edges = np.geomspace(1.0, max(float(sides.max()), 2.0) * 1.05, 30)
            axis.hist(sides, bins=edges, color="#4c72b0", edgecolor="black", linewidth=0.4)
            axis.set_xscale("log")
        for limit in (SMALL_AREA, LARGE_AREA):
            axis.axvline(math.sqrt(limit), color="grey", linestyle="--", linewidth=0.8)
        axis.set(
            title=f"{statistics.split} ({len(sides)} instances, {statistics.images} images)",
            xlabel="instance size: sqrt(area) in pixels",
            ylabel="instances",
        )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
