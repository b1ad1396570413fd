"""Losses: `loss(logits (N, K, H, W), mask (N, H, W)) -> scalar`, honouring the ignore index.

The config names one or more terms, summed with weights (for example cross-entropy + Dice).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.config import LossConfig
from fcnseg.errors import FcnsegError
from fcnseg.registry import lookup


class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy over the labelled pixels, with optional class weights."""

    def __init__(
        self,
        ignore_index: int = 255,
        class_weights: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.register_buffer("class_weights", class_weights)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            logits,
            mask,
            weight=self.class_weights,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )


class WeightedSum(nn.Module):
    """sum_i weight_i * loss_i(logits, mask)."""

    def __init__(self, losses: list[nn.Module], weights: list[float]) -> None:
        super().__init__()
        self.losses = nn.ModuleList(losses)
        self.weights = weights

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        terms = [w * loss(logits, mask) for loss, w in zip(self.losses, self.weights, strict=True)]
        return torch.stack(terms).sum()


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "cross_entropy": CrossEntropyLoss,
}


def build_loss(config: LossConfig, num_classes: int, ignore_index: int = 255) -> nn.Module:
    """The weighted sum of the configured terms (a single term is returned as itself)."""
    class_weights = None
    if config.class_weights is not None:
        if len(config.class_weights) != num_classes:
            raise FcnsegError(
                f"loss.class_weights has {len(config.class_weights)} values but there are "
                f"{num_classes} classes; give one weight per class."
            )
        class_weights = torch.tensor(config.class_weights, dtype=torch.float32)
    losses = []
    for term in config.terms:
        options: dict[str, Any] = {"ignore_index": ignore_index, **term.options}
        if class_weights is not None:
            options.setdefault("class_weights", class_weights)
        losses.append(lookup(LOSSES, term.name, "loss")(**options))
    if len(losses) == 1 and config.terms[0].weight == 1.0:
        return losses[0]
    return WeightedSum(losses, [term.weight for term in config.terms])
