"""What a run leaves for people to read: metrics.json, report.md and a self-contained report.html.

write_run_report(run_dir, evaluation) -> metrics.json, curves.png, samples.png, report.md,
                                         attention.png (models with attention gates),
                                         report.html (pictures embedded: report/html.py)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fcnseg.palette import PALETTE, readable_palette
from fcnseg.report.evaluation import Evaluation
from fcnseg.report.figures import plot_curves, plot_samples
from fcnseg.report.figures_attention import attention_figure
from fcnseg.report.html import write_html_report


def metrics_dict(evaluation: Evaluation, class_names: list[str]) -> dict[str, Any]:
    """metrics.json: the scores, the confusion matrix, each image's mIoU and share of wrong
    pixels (what the best / worst gallery ranks by)."""
    metrics = evaluation.scores.to_dict(class_names)
    metrics["confusion_matrix"] = evaluation.matrix.tolist()
    for key, values in (
        ("per_image_miou", evaluation.image_miou),
        ("per_image_wrong_pixels", evaluation.image_error_share),
    ):
        metrics[key] = {
            name: None if math.isnan(value) else value
            for name, value in zip(evaluation.image_names, values, strict=True)
        }
    return metrics


def _score(value: float | None, missing: str = "absent") -> str:
    """ "absent": the class is in neither truth nor prediction; "n/a": nothing to divide by."""
    return missing if value is None or math.isnan(value) else f"{value:.4f}"


def markdown_lines(metrics: dict[str, Any], class_names: list[str]) -> list[str]:
    lines = ["| metric | value |", "|---|---|"]
    interval = metrics["miou_95ci"]
    ci = f" (95% CI {interval[0]:.4f}-{interval[1]:.4f})" if interval else ""
    lines += [f"| mIoU | {_score(metrics['miou'])}{ci} |"]
    for key, label in (
        ("dice", "mean Dice"),
        ("pixel_accuracy", "pixel accuracy"),
        ("mean_class_accuracy", "mean class accuracy"),
        ("frequency_weighted_iou", "frequency-weighted IoU"),
        ("boundary_f1", "boundary F1"),
    ):
        lines.append(f"| {label} | {_score(metrics[key])} |")
    lines += ["", "| class | IoU | Dice | precision | recall |", "|---|---|---|---|---|"]
    columns = ("per_class_iou", "per_class_dice", "per_class_precision", "per_class_recall")
    for index, name in enumerate(class_names):
        missing = "absent" if metrics["per_class_iou"][index] is None else "n/a"
        cells = " | ".join(_score(metrics[column][index], missing) for column in columns)
        lines.append(f"| {name} | {cells} |")
    return lines


def report_palette(
    evaluation: Evaluation,
    samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None,
    palette: np.ndarray,
    count: int,
) -> np.ndarray:
    """The report's class colours: a dataset's own as they are (its class table chose them),
    fcnseg's fixed ones changed where a class would vanish into the images it is drawn on."""
    if not np.array_equal(palette[:count], PALETTE[:count]):
        return palette
    pictures = [(item.image, item.truth) for item in [*evaluation.best, *evaluation.worst]]
    pictures += [(image, truth) for image, truth, _ in samples or []]
    return readable_palette(pictures, palette, count)


def write_run_report(
    run_dir: Path,
    evaluation: Evaluation,
    class_names: list[str],
    samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    history: list[dict[str, Any]] | None = None,
    title: str = "fcnseg run",
    summary: dict[str, Any] | None = None,
    palette: np.ndarray = PALETTE,
) -> Path:
    """Write metrics.json, the pictures, report.md and report.html into run_dir; return the
    Markdown report's path. `palette` colours the classes: the dataset's own when it has them;
    fcnseg's fixed colours are made readable on these images first (readable_palette)."""
    run_dir = Path(run_dir)
    palette = report_palette(evaluation, samples, palette, len(class_names))
    metrics = metrics_dict(evaluation, class_names)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    lines = [f"# {title}", ""]
    lines += [f"- **{key}**: {value}" for key, value in (summary or {}).items()]
    lines += ["", *markdown_lines(metrics, class_names), "", "Pictures: [report.html](report.html)"]
    if history:
        plot_curves(history, run_dir / "curves.png")
        lines += ["", "## Training curves", "", "![training curves](curves.png)"]
    if samples:
        plot_samples(samples, class_names, run_dir / "samples.png", palette)
        lines += ["", "## Predictions (image | truth | prediction)", "", "![samples](samples.png)"]
    if evaluation.attention:
        (run_dir / "attention.png").write_bytes(attention_figure(evaluation.attention))
        lines += ["", "## Attention gates (alpha per gate)", "", "![attention](attention.png)"]
    write_html_report(
        run_dir / "report.html",
        title,
        summary or {},
        metrics,
        evaluation,
        class_names,
        history,
        palette,
    )
    report = run_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def training_history(checkpoint_path: str | Path, checkpoint: dict[str, Any]) -> list | None:
    """The run's epochs: history.json beside the checkpoint, else the checkpoint's own copy."""
    beside = Path(checkpoint_path).parent / "history.json"
    if beside.is_file():
        try:
            return json.loads(beside.read_text()) or None
        except json.JSONDecodeError:
            pass  # a damaged history only costs the curves
    return checkpoint.get("history") or None
