"""report.html: one self-contained file (pictures embedded as base64 PNG, styles inline), so it
can be mailed, attached to an issue or opened from a zip without its folder.

    summary            what was evaluated, on what
    scores             mIoU with its 95% bootstrap interval, Dice, accuracies, FW-IoU, boundary F1
    per class          a table (absent classes say so) and the IoU bar chart
    confusion matrix   row-normalised heatmap with class names
    training curves    when the run has a history
    attention gates    models with gates: each gate's coefficients on a few images
    best / worst       gallery of images by their share of wrong pixels: image, truth, prediction,
                       errors
"""

from __future__ import annotations

import base64
import html
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from fcnseg.report.figures import (
    class_iou_chart,
    confusion_heatmap,
    curves_figure,
    figure_png,
    gallery_figure,
)
from fcnseg.report.figures_attention import attention_figure

if TYPE_CHECKING:
    from pathlib import Path

    from fcnseg.report.evaluation import Evaluation

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.absent { color: #999; font-style: italic; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.4em;
          border: 1px solid #666; vertical-align: middle; }
img { max-width: 100%; }
.note { color: #666; font-size: 0.9em; }
"""

OVERALL = (
    ("miou", "mIoU"),
    ("dice", "mean Dice"),
    ("pixel_accuracy", "pixel accuracy"),
    ("mean_class_accuracy", "mean class accuracy"),
    ("frequency_weighted_iou", "frequency-weighted IoU"),
    ("boundary_f1", "boundary F1"),
)
ATTENTION_NOTE = (
    "Each gate's coefficients alpha on the first images: the skip connection's features are "
    "multiplied by alpha (0 suppresses them, 1 passes them unchanged). Each map is coloured "
    "from its own minimum (dark) to its maximum (bright), the range in its title."
)
PER_CLASS = (
    ("per_class_iou", "IoU"),
    ("per_class_dice", "Dice"),
    ("per_class_precision", "precision"),
    ("per_class_recall", "recall"),
    ("per_class_boundary_f1", "boundary F1"),
)


def _cell(value: float | None, missing: str = "absent") -> str:
    """A percentage; `missing` where the score does not exist ("absent": class in neither truth
    nor prediction; "n/a": e.g. precision of a class never predicted)."""
    if value is None or math.isnan(value):
        return f'<td class="absent">{missing}</td>'
    return f"<td>{100 * value:.2f}</td>"


def embedded_picture(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def _scores_table(metrics: dict[str, Any]) -> str:
    rows = []
    for key, label in OVERALL:
        extra = ""
        if key == "miou" and metrics.get("miou_95ci"):
            low, high = metrics["miou_95ci"]
            extra = f" <span class='note'>(95% CI {100 * low:.2f}-{100 * high:.2f})</span>"
        if key == "boundary_f1" and metrics.get("boundary_tolerance_pixels") is not None:
            extra = f" <span class='note'>(within {metrics['boundary_tolerance_pixels']} px)</span>"
        rows.append(f"<tr><td>{label}{extra}</td>{_cell(metrics.get(key))}</tr>")
    return "<table><tr><th>score (%)</th><th>value</th></tr>" + "".join(rows) + "</table>"


def _class_table(metrics: dict[str, Any], class_names: list[str], palette: np.ndarray) -> str:
    head = "".join(f"<th>{label}</th>" for _, label in PER_CLASS)
    rows = []
    for index, name in enumerate(class_names):
        red, green, blue = (int(c) for c in palette[index])
        swatch = f'<span class="swatch" style="background: rgb({red},{green},{blue})"></span>'
        missing = "absent" if metrics["per_class_iou"][index] is None else "n/a"
        cells = "".join(
            _cell(metrics[key][index] if metrics.get(key) else None, missing)
            for key, _ in PER_CLASS
        )
        pixels = metrics["per_class_pixels"][index] if metrics.get("per_class_pixels") else ""
        rows.append(f"<tr><td>{swatch}{html.escape(name)}</td>{cells}<td>{pixels}</td></tr>")
    return f"<table><tr><th>class</th>{head}<th>true pixels</th></tr>" + "".join(rows) + "</table>"


def _gallery_sections(
    evaluation: Evaluation, palette: np.ndarray, class_names: list[str]
) -> list[str]:
    parts = []
    for heading, items in (("Best images", evaluation.best), ("Worst images", evaluation.worst)):
        if items:
            figure = gallery_figure(items, palette, evaluation.ignore_index, class_names)
            title = f"{heading} (by their share of wrong pixels)"
            parts += [f"<h2>{title}</h2>", embedded_picture(figure, heading)]
    return parts


def render_html(
    title: str,
    summary: dict[str, Any],
    metrics: dict[str, Any],
    evaluation: Evaluation,
    class_names: list[str],
    history: list[dict[str, Any]] | None,
    palette: np.ndarray,
) -> str:
    parts = [f"<h1>{html.escape(title)}</h1>", "<ul>"]
    parts += [
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in summary.items()
    ]
    images = metrics.get("num_images")
    parts += ["</ul>", "<h2>Scores</h2>", _scores_table(metrics)]
    parts.append(
        f"<p class='note'>{metrics['num_pixels']} labelled pixels in {images} images. Classes "
        "absent from both truth and prediction are left out of every mean; n/a marks a score with "
        "nothing to divide by (precision of a class never predicted). The interval "
        "resamples images with replacement (1000 draws).</p>"
    )
    parts += ["<h2>Per class</h2>", _class_table(metrics, class_names, palette)]
    parts.append(
        embedded_picture(class_iou_chart(metrics["per_class_iou"], class_names, palette), "IoU")
    )
    parts += ["<h2>Confusion matrix</h2>"]
    parts.append("<p class='note'>Each row is a true class, split by what it was predicted as.</p>")
    parts.append(
        embedded_picture(confusion_heatmap(evaluation.matrix, class_names), "confusion matrix")
    )
    if history:
        parts += [
            "<h2>Training curves</h2>",
            embedded_picture(figure_png(curves_figure(history)), "curves"),
        ]
    if evaluation.attention:
        parts += ["<h2>Attention gates</h2>", f"<p class='note'>{ATTENTION_NOTE}</p>"]
        parts.append(embedded_picture(attention_figure(evaluation.attention), "attention"))
    parts += _gallery_sections(evaluation, palette, class_names)
    body = "\n".join(parts)
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        f"{body}\n</body></html>\n"
    )


def write_html_report(
    path: Path,
    title: str,
    summary: dict[str, Any],
    metrics: dict[str, Any],
    evaluation: Evaluation,
    class_names: list[str],
    history: list[dict[str, Any]] | None,
    palette: np.ndarray,
) -> Path:
    path.write_text(
        render_html(title, summary, metrics, evaluation, class_names, history, palette),
        encoding="utf-8",
    )
    return path
