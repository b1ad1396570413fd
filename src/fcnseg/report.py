"""What a run leaves for people to read: metrics.json, pictures, and report.md tying them together.

evaluate(predictor, dataset)           -> Scores over the whole split (one confusion matrix)
write_run_report(run_dir, ...)         -> metrics.json, curves.png, samples.png, report.md
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from fcnseg.data.dataset import SegmentationDataset
from fcnseg.metrics import ConfusionMatrix, Scores
from fcnseg.predict import Predictor
from fcnseg.visualize import PALETTE, plot_curves, plot_samples


def evaluate(
    predictor: Predictor,
    dataset: SegmentationDataset,
    num_classes: int,
    ignore_index: int = 255,
    batch_size: int = 1,
) -> Scores:
    """Scores of the predictor over every item of `dataset`."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    return predictor.evaluate(loader, ConfusionMatrix(num_classes, ignore_index)).compute()


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


def write_metrics(scores: Scores, class_names: list[str], path: Path) -> dict[str, Any]:
    metrics = scores.to_dict(class_names)
    path.write_text(json.dumps(metrics, indent=1))
    return metrics


def _score(value: float | None) -> str:
    return (
        "absent"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.4f}")
    )


def write_run_report(
    run_dir: Path,
    scores: Scores,
    class_names: list[str],
    samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    history: list[dict[str, Any]] | None = None,
    title: str = "fcnseg run",
    summary: dict[str, Any] | None = None,
    palette: np.ndarray = PALETTE,
) -> Path:
    """Write metrics.json, the pictures and report.md into run_dir; return the report's path.

    `palette` colours the classes in pictures: the dataset's own colours when it has them.
    """
    run_dir = Path(run_dir)
    metrics = write_metrics(scores, class_names, run_dir / "metrics.json")
    lines = [f"# {title}", ""]
    for key, value in (summary or {}).items():
        lines.append(f"- **{key}**: {value}")
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| mIoU | {_score(metrics['miou'])} |", f"| mean Dice | {_score(metrics['dice'])} |"]
    lines += [f"| pixel accuracy | {_score(metrics['pixel_accuracy'])} |", ""]
    lines += ["| class | IoU | Dice |", "|---|---|---|"]
    for name, iou, dice in zip(
        class_names, metrics["per_class_iou"], metrics["per_class_dice"], strict=True
    ):
        lines.append(f"| {name} | {_score(iou)} | {_score(dice)} |")
    if history:
        plot_curves(history, run_dir / "curves.png")
        lines += ["", "## Training curves", "", "![training curves](curves.png)"]
    if samples:
        plot_samples(samples, class_names, run_dir / "samples.png", palette)
        lines += ["", "## Predictions (image | truth | prediction)", "", "![samples](samples.png)"]
    report = run_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report
