"""What a run leaves for people to read: metrics.json, report.md and a self-contained report.html.

    evaluate(predictor, dataset, ...)     -> Evaluation: every score (fcnseg.metrics) over the
                                             split, with the bootstrap interval and boundary F1;
                                             the confusion matrix; each image's mIoU; the best
                                             and worst images, predicted again for the gallery
    write_run_report(run_dir, evaluation) -> metrics.json, curves.png, samples.png, report.md,
                                             report.html (pictures embedded: report_html.py)

Images are evaluated one at a time, each at its own size, through the Predictor (whole or tiled,
as its options say), so the numbers are the ones `fcnseg predict` would give.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fcnseg.data.dataset import SegmentationDataset
from fcnseg.metrics import ConfusionMatrix, Scores
from fcnseg.predict import Predictor
from fcnseg.report_figures import GalleryItem
from fcnseg.report_html import write_html_report
from fcnseg.visualize import PALETTE, plot_curves, plot_samples

BOUNDARY_TOLERANCE = 2  # pixels: an edge this close to the true one counts as right
GALLERY_SIZE = 3  # best and worst images each


@dataclass(frozen=True)
class Evaluation:
    scores: Scores
    matrix: np.ndarray  # (K, K) pixel counts, rows truth, columns prediction
    image_names: list[str]
    image_miou: list[float]  # NaN for an image without labelled pixels
    best: list[GalleryItem]
    worst: list[GalleryItem]
    ignore_index: int = 255

    @property
    def miou(self) -> float:
        return self.scores.miou


def evaluate(
    predictor: Predictor,
    dataset: SegmentationDataset,
    num_classes: int,
    ignore_index: int = 255,
    boundary_tolerance: int | None = BOUNDARY_TOLERANCE,
    gallery_size: int = GALLERY_SIZE,
) -> Evaluation:
    """Every score of the predictor over every item of `dataset` (see the module docstring)."""
    matrix = ConfusionMatrix(num_classes, ignore_index, True, boundary_tolerance)
    for index in range(len(dataset)):
        image, mask = dataset[index]  # (C, H, W) normalised, (H, W)
        matrix.update(predictor.labels(image[None]), mask[None])
    image_miou = matrix.per_image_iou()
    scored = [i for i, value in enumerate(image_miou) if not math.isnan(value)]
    # Each image in one gallery only: with fewer than 2 x gallery_size, split them.
    count = min(gallery_size, max(1, len(scored) // 2)) if scored else 0
    best = sorted(scored, key=lambda i: (-image_miou[i], i))[:count]
    worst = [i for i in sorted(scored, key=lambda i: (image_miou[i], i)) if i not in best][:count]
    names = list(getattr(dataset.source, "names", [str(i) for i in range(len(dataset))]))

    def item(index: int) -> GalleryItem:
        image, truth = dataset.source.load(index)
        tensor, _ = dataset.transform(image, truth)
        prediction = predictor.labels(tensor[None])[0].numpy()
        return GalleryItem(names[index], image_miou[index], image, truth, prediction)

    return Evaluation(
        scores=matrix.compute(),
        matrix=matrix.matrix.numpy().copy(),
        image_names=names,
        image_miou=image_miou,
        best=[item(i) for i in best],
        worst=[item(i) for i in worst],
        ignore_index=ignore_index,
    )


def sample_predictions(
    predictor: Predictor, dataset: SegmentationDataset, count: int = 4
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(raw image, truth, prediction) for the first `count` items, for pictures."""
    samples = []
    for index in range(min(count, len(dataset))):
        image, truth = dataset.source.load(index)
        tensor, _ = dataset.transform(image, truth)
        prediction = predictor.labels(tensor[None])[0].numpy()
        samples.append((image, truth, prediction))
    return samples


def metrics_dict(evaluation: Evaluation, class_names: list[str]) -> dict[str, Any]:
    """metrics.json: the scores, the confusion matrix and each image's mIoU."""
    metrics = evaluation.scores.to_dict(class_names)
    metrics["confusion_matrix"] = evaluation.matrix.tolist()
    metrics["per_image_miou"] = {
        name: None if math.isnan(value) else value
        for name, value in zip(evaluation.image_names, evaluation.image_miou, strict=True)
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
    Markdown report's path. `palette` colours the classes: the dataset's own when it has them."""
    run_dir = Path(run_dir)
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
