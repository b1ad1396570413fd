"""Confusion-matrix metrics: region scores per class and their means, boundary F1, a bootstrap CI.

The matrix is accumulated with one `bincount` per batch (rows = truth, columns = prediction), so
metrics over a whole dataset are exact, not averages of per-batch scores. From it, per class c:

    IoU = TP / (TP + FP + FN)      Dice = 2TP / (2TP + FP + FN)
    precision = TP / (TP + FP)     recall = TP / (TP + FN)  (= the class's accuracy)

and over classes: mIoU, mean Dice, mean class accuracy (mean recall over the classes in the
truth), frequency-weighted IoU (IoU weighted by the class's share of true pixels) and pixel
accuracy. A class that appears in neither truth nor prediction has no IoU at all: it is reported
as absent (NaN, `null` in JSON) and left out of the means, rather than counted as a perfect 1 or
a failing 0. Likewise precision is absent for a class never predicted, recall for one never true.

With `per_image=True` the matrix of each image is kept too (K x K integers per image): the
bootstrap then resamples images with replacement and recomputes the dataset-level mIoU from the
summed matrices, giving a 95% interval that says how much the mIoU depends on which images were
drawn. With `boundary_tolerance` set, boundary F1 (metrics/boundary.py) is accumulated alongside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fcnseg.config import scored_classes
from fcnseg.errors import FcnsegError
from fcnseg.metrics.boundary import boundary_counts, boundary_f1

BOOTSTRAP_SAMPLES = 1000


@dataclass(frozen=True)
class Scores:
    """Scores from one confusion matrix; NaN marks a score that does not exist for that class."""

    per_class_iou: tuple[float, ...]
    per_class_dice: tuple[float, ...]
    miou: float
    mean_dice: float
    pixel_accuracy: float
    num_pixels: int
    per_class_precision: tuple[float, ...] = ()
    per_class_recall: tuple[float, ...] = ()
    per_class_pixels: tuple[int, ...] = ()  # true pixels of each class
    mean_class_accuracy: float = math.nan
    frequency_weighted_iou: float = math.nan
    num_images: int | None = None  # known when per-image matrices were kept
    miou_interval: tuple[float, float] | None = None  # 95% bootstrap interval over images
    per_class_boundary_f1: tuple[float, ...] = ()
    boundary_f1: float | None = None  # mean over classes with a boundary; None: not measured
    boundary_tolerance: int | None = None  # pixels

    def to_dict(self, class_names: list[str] | None = None) -> dict[str, Any]:
        """JSON-ready: NaN becomes None; per-class lists keep class order, names alongside."""
        names = class_names or [str(i) for i in range(len(self.per_class_iou))]
        result: dict[str, Any] = {
            "miou": _json_float(self.miou),
            "miou_95ci": list(self.miou_interval) if self.miou_interval else None,
            "mean_dice": _json_float(self.mean_dice),
            "dice": _json_float(self.mean_dice),
            "pixel_accuracy": _json_float(self.pixel_accuracy),
            "mean_class_accuracy": _json_float(self.mean_class_accuracy),
            "frequency_weighted_iou": _json_float(self.frequency_weighted_iou),
            "boundary_f1": _json_float(self.boundary_f1),
            "boundary_tolerance_pixels": self.boundary_tolerance,
            "num_pixels": self.num_pixels,
            "num_images": self.num_images,
            "class_names": list(names),
        }
        per_class = {
            "per_class_iou": self.per_class_iou,
            "per_class_dice": self.per_class_dice,
            "per_class_precision": self.per_class_precision,
            "per_class_recall": self.per_class_recall,
            "per_class_boundary_f1": self.per_class_boundary_f1,
        }
        for key, values in per_class.items():
            result[key] = [_json_float(v) for v in values]
        result["per_class_pixels"] = list(self.per_class_pixels)
        return result


class ConfusionMatrix:
    """Accumulates a (K x K) matrix over batches; `compute()` gives Scores.

    K is `scored_classes(num_classes)`: a single-output model's matrix is 2 x 2.

    `per_image` keeps each image's matrix (for the bootstrap interval and per-image IoU);
    `boundary_tolerance` (pixels) also accumulates boundary F1. Both cost a little per update,
    so training's validation leaves them off and `fcnseg evaluate` turns them on.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        per_image: bool = False,
        boundary_tolerance: int | None = None,
    ) -> None:
        num_classes = scored_classes(num_classes)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.per_image = per_image
        self.image_matrices: list[torch.Tensor] = []  # (K, K) int64 per image
        self.boundary_tolerance = boundary_tolerance
        self.boundary = torch.zeros(
            4, num_classes, dtype=torch.int64
        )  # see fcnseg.metrics.boundary

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of predicted and true labels (integer tensors of the same shape)."""
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        if pred.is_floating_point() or target.is_floating_point():
            raise TypeError(
                "pred and target must be integer label tensors (argmax the logits first)"
            )
        pred, target = pred.cpu(), target.cpu()
        self._check_labels(pred, target)
        if not self.per_image and self.boundary_tolerance is None:
            self.matrix += self._count(pred, target)
            return
        height, width = pred.shape[-2:]
        for image_pred, image_target in zip(
            pred.reshape(-1, height, width), target.reshape(-1, height, width), strict=True
        ):  # one (H, W) image at a time
            counts = self._count(image_pred, image_target)
            self.matrix += counts
            if self.per_image:
                self.image_matrices.append(counts)
            if self.boundary_tolerance is not None:
                self.boundary += boundary_counts(
                    image_pred,
                    image_target,
                    self.num_classes,
                    self.ignore_index,
                    self.boundary_tolerance,
                )

    def _check_labels(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        k = self.num_classes
        truth = target[target != self.ignore_index]
        if truth.numel() and (truth.min() < 0 or truth.max() >= k):
            bad = torch.unique(truth[(truth < 0) | (truth >= k)]).tolist()
            raise FcnsegError(
                f"target labels {bad} are outside [0, {k}) and not the ignore index "
                f"{self.ignore_index}."
            )
        if pred.numel() and (pred.min() < 0 or pred.max() >= k):
            raise ValueError(f"predicted labels outside [0, {k})")

    def _count(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(K, K) int64 counts of (truth, prediction) pairs, ignored pixels left out."""
        k = self.num_classes
        valid = target != self.ignore_index
        pairs = target[valid].long() * k + pred[valid].long()
        return torch.bincount(pairs, minlength=k * k).view(k, k)

    def reset(self) -> None:
        self.matrix.zero_()
        self.image_matrices.clear()
        self.boundary.zero_()

    def per_image_iou(self) -> list[float]:
        """Each kept image's own mIoU (classes absent from that image left out)."""
        return [_nanmean(class_scores(m)["iou"]) for m in self.image_matrices]

    def compute(self, bootstrap_seed: int = 0) -> Scores:
        scores = class_scores(self.matrix)
        truth_total = self.matrix.sum(dim=1).double()
        total = truth_total.sum()
        has_truth = truth_total > 0
        frequency = truth_total / total.clamp(min=1)
        boundary = boundary_f1(self.boundary) if self.boundary_tolerance is not None else None
        return Scores(
            per_class_iou=tuple(scores["iou"].tolist()),
            per_class_dice=tuple(scores["dice"].tolist()),
            miou=_nanmean(scores["iou"]),
            mean_dice=_nanmean(scores["dice"]),
            pixel_accuracy=float(self.matrix.diag().sum() / total) if total > 0 else math.nan,
            num_pixels=int(total),
            per_class_precision=tuple(scores["precision"].tolist()),
            per_class_recall=tuple(scores["recall"].tolist()),
            per_class_pixels=tuple(int(v) for v in truth_total.tolist()),
            mean_class_accuracy=_nanmean(scores["recall"]),
            frequency_weighted_iou=float((frequency * scores["iou"])[has_truth].sum())
            if total > 0
            else math.nan,
            num_images=len(self.image_matrices) if self.per_image else None,
            miou_interval=self.bootstrap_interval(seed=bootstrap_seed) if self.per_image else None,
            per_class_boundary_f1=tuple(boundary.tolist()) if boundary is not None else (),
            boundary_f1=_nanmean(boundary) if boundary is not None else None,
            boundary_tolerance=self.boundary_tolerance,
        )

    def bootstrap_interval(
        self, samples: int = BOOTSTRAP_SAMPLES, confidence: float = 0.95, seed: int = 0
    ) -> tuple[float, float] | None:
        """Percentile interval of the dataset mIoU over images resampled with replacement."""
        if not self.image_matrices:
            return None
        per_image = torch.stack(self.image_matrices).flatten(1).double()  # (M, K*K)
        count = len(self.image_matrices)
        generator = np.random.default_rng(seed)
        draws = generator.integers(0, count, size=(samples, count))  # (B, M) image indices
        weights = np.stack([np.bincount(row, minlength=count) for row in draws])  # (B, M)
        summed = torch.from_numpy(weights).double() @ per_image  # (B, K*K)
        iou = class_scores(summed.view(samples, self.num_classes, self.num_classes))["iou"]
        mious = torch.nanmean(iou, dim=1).numpy()  # (B,); NaN only if every class is absent
        tail = (1 - confidence) / 2 * 100
        low, high = np.nanpercentile(mious, [tail, 100 - tail])
        return float(low), float(high)


def class_scores(matrix: torch.Tensor) -> dict[str, torch.Tensor]:
    """IoU, Dice, precision and recall of each class from (..., K, K) matrices: (..., K) each,
    NaN where undefined."""
    m = matrix.double()
    true_positive = m.diagonal(dim1=-2, dim2=-1)
    truth_total = m.sum(dim=-1)  # pixels of each class in the truth (rows)
    pred_total = m.sum(dim=-2)  # pixels predicted as each class (columns)
    union = truth_total + pred_total - true_positive
    return {
        "iou": _ratio(true_positive, union),
        "dice": _ratio(2 * true_positive, truth_total + pred_total),
        "precision": _ratio(true_positive, pred_total),
        "recall": _ratio(true_positive, truth_total),
    }


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, NaN where the denominator is 0 (the score does not exist)."""
    nan = torch.full_like(numerator, math.nan)
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-300), nan)


def _nanmean(values: torch.Tensor) -> float:
    present = values[~values.isnan()]
    return float(present.mean()) if present.numel() else math.nan


def _json_float(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value
