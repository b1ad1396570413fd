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

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.progress import track

from fcnseg.data.dataset import SegmentationDataset
from fcnseg.inference.predictor import Predictor
from fcnseg.metrics.confusion import ConfusionMatrix, Scores
from fcnseg.report.figures import GalleryItem
from fcnseg.report.figures_attention import AttentionSample, attention_samples

BOUNDARY_TOLERANCE = 2  # pixels: an edge this close to the true one counts as right
GALLERY_SIZE = 3  # best and worst images each


@dataclass(frozen=True)
class Evaluation:
    scores: Scores
    matrix: np.ndarray  # (K, K) pixel counts, rows truth, columns prediction
    image_names: list[str]
    image_miou: list[float]  # NaN for an image without labelled pixels
    image_error_share: list[float]  # wrong pixels / labelled pixels; NaN without labels
    best: list[GalleryItem]
    worst: list[GalleryItem]
    ignore_index: int = 255
    attention: list[AttentionSample] = field(default_factory=list)  # models with gates only

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
    show_progress: bool = False,
) -> Evaluation:
    """Every score of the predictor over every item of `dataset` (see the module docstring);
    `show_progress`: a bar with the time left on the terminal meanwhile."""
    matrix = ConfusionMatrix(num_classes, ignore_index, True, boundary_tolerance)
    error_share = []  # per image: the share of its labelled pixels the model got wrong
    images = range(len(dataset))
    for index in track(images, "evaluating", disable=not show_progress, transient=True):
        image, mask = dataset[index]  # (C, H, W) normalised, (H, W)
        labels = predictor.labels(image[None])  # (1, H, W)
        matrix.update(labels, mask[None])
        error_share.append(wrong_pixel_share(labels[0], mask, ignore_index))
    image_miou = matrix.per_image_iou()
    best, worst = gallery_choice(error_share, gallery_size)
    names = list(getattr(dataset.source, "names", [str(i) for i in range(len(dataset))]))

    def item(index: int) -> GalleryItem:
        image, truth = dataset.source.load(index)
        tensor, _ = dataset.transform(image, truth)
        prediction = predictor.labels(tensor[None])[0].numpy()
        miou, wrong = image_miou[index], error_share[index]
        return GalleryItem(names[index], miou, image, truth, prediction, wrong)

    return Evaluation(
        scores=matrix.compute(),
        matrix=matrix.matrix.numpy().copy(),
        image_names=names,
        image_miou=image_miou,
        image_error_share=error_share,
        best=[item(i) for i in best],
        worst=[item(i) for i in worst],
        ignore_index=ignore_index,
        attention=attention_samples(predictor, dataset),
    )


def wrong_pixel_share(prediction: torch.Tensor, truth: torch.Tensor, ignore_index: int) -> float:
    """(H, W) labels -> the share of the labelled pixels that are wrong (NaN: none labelled)."""
    labelled = truth != ignore_index
    count = int(labelled.sum())
    return float(((prediction != truth) & labelled).sum()) / count if count else math.nan


def gallery_choice(error_share: list[float], size: int) -> tuple[list[int], list[int]]:
    """The best and worst images: fewest and most wrong pixels, each image in one gallery only
    (with fewer than 2 x size images, they are split).

    Ranked by wrong pixels, not by the image's mIoU: a few stray pixels of a class that is
    absent from an image make that class's IoU 0 and the image's mIoU low, while a person sees
    a near-perfect picture; wrong pixels are what the error panel shows."""
    scored = [index for index, value in enumerate(error_share) if not math.isnan(value)]
    count = min(size, max(1, len(scored) // 2)) if scored else 0
    best = sorted(scored, key=lambda index: (error_share[index], index))[:count]
    ranked = sorted(scored, key=lambda index: (-error_share[index], index))
    return best, [index for index in ranked if index not in best][:count]
