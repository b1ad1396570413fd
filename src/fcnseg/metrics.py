"""Confusion-matrix metrics: per-class IoU and Dice, their means, pixel accuracy.

The matrix is accumulated with one `bincount` per batch (rows = truth, columns = prediction), so
metrics over a whole dataset are exact, not averages of per-batch scores. A class that appears in
neither truth nor prediction has no IoU at all: it is reported as absent (NaN, `null` in JSON)
and left out of the means, rather than counted as a perfect 1 or a failing 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from fcnseg.errors import FcnsegError


@dataclass(frozen=True)
class Scores:
    """Scores from one confusion matrix; NaN marks a class absent from truth and prediction."""

    per_class_iou: tuple[float, ...]
    per_class_dice: tuple[float, ...]
    miou: float
    mean_dice: float
    pixel_accuracy: float
    num_pixels: int

    def to_dict(self, class_names: list[str] | None = None) -> dict[str, Any]:
        """JSON-ready: NaN becomes None; per-class lists keep class order, names alongside."""
        names = class_names or [str(i) for i in range(len(self.per_class_iou))]
        return {
            "miou": _json_float(self.miou),
            "mean_dice": _json_float(self.mean_dice),
            "dice": _json_float(self.mean_dice),
            "pixel_accuracy": _json_float(self.pixel_accuracy),
            "num_pixels": self.num_pixels,
            "class_names": list(names),
            "per_class_iou": [_json_float(v) for v in self.per_class_iou],
            "per_class_dice": [_json_float(v) for v in self.per_class_dice],
        }


class ConfusionMatrix:
    """Accumulates a (num_classes x num_classes) matrix over batches; `compute()` gives Scores."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of predicted and true labels (integer tensors of the same shape)."""
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        if pred.is_floating_point() or target.is_floating_point():
            raise TypeError(
                "pred and target must be integer label tensors (argmax the logits first)"
            )
        k = self.num_classes
        valid = target != self.ignore_index
        truth, guess = target[valid].long(), pred[valid].long()
        if truth.numel() and (truth.min() < 0 or truth.max() >= k):
            bad = torch.unique(truth[(truth < 0) | (truth >= k)]).tolist()
            raise FcnsegError(
                f"target labels {bad} are outside [0, {k}) and not the ignore index "
                f"{self.ignore_index}."
            )
        if guess.numel() and (guess.min() < 0 or guess.max() >= k):
            raise ValueError(f"predicted labels outside [0, {k})")
        counts = torch.bincount((truth * k + guess).flatten().cpu(), minlength=k * k)
        self.matrix += counts.view(k, k)

    def reset(self) -> None:
        self.matrix.zero_()

    def compute(self) -> Scores:
        m = self.matrix.double()
        true_positive = m.diag()
        truth_total = m.sum(dim=1)  # pixels of each class in the truth
        pred_total = m.sum(dim=0)  # pixels predicted as each class
        union = truth_total + pred_total - true_positive
        present = union > 0
        nan = torch.full_like(true_positive, math.nan)
        iou = torch.where(present, true_positive / union.clamp(min=1), nan)
        dice_denominator = truth_total + pred_total
        dice = torch.where(present, 2 * true_positive / dice_denominator.clamp(min=1), nan)
        total = m.sum()
        return Scores(
            per_class_iou=tuple(iou.tolist()),
            per_class_dice=tuple(dice.tolist()),
            miou=_nanmean(iou),
            mean_dice=_nanmean(dice),
            pixel_accuracy=float(true_positive.sum() / total) if total > 0 else math.nan,
            num_pixels=int(total),
        )


def _nanmean(values: torch.Tensor) -> float:
    present = values[~values.isnan()]
    return float(present.mean()) if present.numel() else math.nan


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value
