"""What an instance run or evaluation leaves for people to read.

write_instance_report(run_dir, evaluation, ...) -> metrics.json, pr_curves.png, gallery.png,
                                                  curves.png (with a history), report.md and a
                                                  self-contained report.html

metrics.json: ap, ap50, ap75, ap_small, ap_medium, ap_large, ar, dsb_score (fractions in [0, 1],
null where nothing could be scored), per_class_ap by class name, per_image_dsb by image name,
the precision-recall points at IoU 0.5 and 0.75, max_detections and num_images, and
inference_seconds / inference_images_per_second (time in the predictor only).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from fcnseg.report.figures import figure_png
from fcnseg.report.figures_instances import (
    MARKS_NOTE,
    instance_curves_figure,
    instance_gallery_figure,
    precision_recall_figure,
)
from fcnseg.report.html import STYLE, embedded_picture
from fcnseg.report.instance_evaluation import InstanceEvaluation

FIGURES = (
    ("ap", "AP (IoU 0.50:0.95)"),
    ("ap50", "AP50"),
    ("ap75", "AP75"),
    ("ap_small", "AP small (< 32² px)"),
    ("ap_medium", "AP medium"),
    ("ap_large", "AP large (> 96² px)"),
    ("ar", "AR"),
    ("dsb_score", "DSB 2018 score"),
)
ABSENT = "n/a"  # no true instance to score (of that class, or in that size range)


def instance_metrics(evaluation: InstanceEvaluation, class_names: list[str]) -> dict[str, Any]:
    """metrics.json (see the module docstring)."""
    metrics = evaluation.scores.to_dict(class_names)
    metrics["per_image_dsb"] = dict(
        zip(evaluation.image_names, metrics["per_image_dsb"], strict=True)
    )
    seconds = evaluation.inference_seconds
    images = len(evaluation.image_names)
    metrics["inference_seconds"] = None if math.isnan(seconds) else seconds
    metrics["inference_images_per_second"] = images / seconds if seconds > 0 else None
    return metrics


def _percent(value: float | None) -> str:
    return ABSENT if value is None or math.isnan(value) else f"{100 * value:.2f}"


def markdown_lines(metrics: dict[str, Any]) -> list[str]:
    lines = ["| metric (%) | value |", "|---|---|"]
    lines += [f"| {label} | {_percent(metrics[key])} |" for key, label in FIGURES]
    lines += ["", "| class | AP |", "|---|---|"]
    lines += [f"| {name} | {_percent(value)} |" for name, value in metrics["per_class_ap"].items()]
    return lines


def _table(rows: list[tuple[str, float | None]], heading: str) -> str:
    cells = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{_percent(value)}</td></tr>" for label, value in rows
    )
    return f"<table><tr><th>{heading}</th><th>value (%)</th></tr>{cells}</table>"


def render_instance_html(
    title: str,
    summary: dict[str, Any],
    metrics: dict[str, Any],
    evaluation: InstanceEvaluation,
    history: list[dict[str, Any]] | None,
) -> str:
    """report.html: summary, scores, per-class AP, precision-recall, curves, the gallery."""
    parts = [f"<h1>{html.escape(title)}</h1>", "<ul>"]
    parts += [
        f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>" for k, v in summary.items()
    ]
    parts += ["</ul>", "<h2>Scores</h2>"]
    parts.append(_table([(label, metrics[key]) for key, label in FIGURES], "score"))
    parts.append(
        f"<p class='note'>Mask AP as COCO computes it, over {metrics['num_images']} images, at "
        f"most {metrics['max_detections']} detections per image and class; {ABSENT}: no true "
        "instance to score. DSB: the 2018 Data Science Bowl score, classes aside.</p>"
    )
    parts += ["<h2>Per class</h2>", _table(list(metrics["per_class_ap"].items()), "class AP")]
    parts += ["<h2>Precision and recall</h2>"]
    parts.append(embedded_picture(figure_png(precision_recall_figure(evaluation.scores)), "PR"))
    if history:
        curves = figure_png(instance_curves_figure(history))
        parts += ["<h2>Training curves</h2>", embedded_picture(curves, "curves")]
    for heading, items in (("Best images", evaluation.best), ("Worst images", evaluation.worst)):
        if items:
            parts += [f"<h2>{heading} (by their own DSB score)</h2>"]
            parts += [f"<p class='note'>{html.escape(MARKS_NOTE)}.</p>"]
            parts.append(embedded_picture(instance_gallery_figure(items), heading))
    body = "\n".join(parts)
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        f"{body}\n</body></html>\n"
    )


def write_instance_report(
    run_dir: Path,
    evaluation: InstanceEvaluation,
    class_names: list[str],
    history: list[dict[str, Any]] | None = None,
    title: str = "fcnseg instance run",
    summary: dict[str, Any] | None = None,
) -> Path:
    """Write the files of the module docstring into run_dir; return report.md's path."""
    run_dir, summary = Path(run_dir), summary or {}
    metrics = instance_metrics(evaluation, class_names)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    lines = [f"# {title}", ""]
    lines += [f"- **{key}**: {value}" for key, value in summary.items()]
    lines += ["", *markdown_lines(metrics), "", "Pictures: [report.html](report.html)"]
    precision_recall_figure(evaluation.scores).savefig(run_dir / "pr_curves.png", dpi=90)
    lines += ["", "## Precision and recall", "", "![precision-recall](pr_curves.png)"]
    if history:
        instance_curves_figure(history).savefig(run_dir / "curves.png", dpi=100)
        lines += ["", "## Training curves", "", "![training curves](curves.png)"]
    items = [*evaluation.best, *evaluation.worst]
    if items:
        (run_dir / "gallery.png").write_bytes(instance_gallery_figure(items))
        lines += ["", "## Best and worst images (image | truth | prediction)", ""]
        lines += [f"{MARKS_NOTE[0].upper()}{MARKS_NOTE[1:]}.", "", "![gallery](gallery.png)"]
    (run_dir / "report.html").write_text(
        render_instance_html(title, summary, metrics, evaluation, history), encoding="utf-8"
    )
    report = run_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
