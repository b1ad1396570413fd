"""Losses: `loss(logits (N, K, H, W), mask (N, H, W) int64) -> scalar`, honouring the ignore index.

Two families, and the class weights both can take:

    pixel.py          cross_entropy, binary_cross_entropy, focal: a mean over labelled pixels
    region.py         dice, tversky, lovasz: one score per class over the batch, averaged
    class_weights.py  median-frequency class weights counted on the training masks

A single-output model (K == 1, masks 0/1) is a binary one. A sigmoid logit x is the two-class
softmax of [0, x], so every loss but cross_entropy takes it as two classes; Dice and Tversky then
score the foreground class only, as binary Dice does, and Lovasz becomes Berman et al.'s binary
Lovasz hinge (which also punishes foreground painted on an image that has none). Its class
weights are one number: the foreground's weight relative to the background's.

Everything is computed from log-probabilities (log_softmax, logsigmoid), never log(p) of a
rounded p, so logits of +-1e4 give finite losses and gradients with no clipping. Ignored pixels
take no part at all, and a batch with no labelled pixel gives a loss of 0 (not the 0/0 NaN of a
plain mean).

The config sums weighted terms, e.g. cross-entropy + Dice with median-frequency class weights:

    loss:
      terms: [{name: cross_entropy}, {name: dice, weight: 0.5}]
      class_weights: median_frequency       # or a list, one weight per class
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fcnseg.config import LossConfig
from fcnseg.errors import FcnsegError
from fcnseg.losses.class_weights import (
    count_class_pixels,
    median_frequency_weights,
    resolve_class_weights,
)
from fcnseg.losses.pixel import (
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    FocalLoss,
    labelled_pixels,
    log_probabilities,
    masked_mean,
)
from fcnseg.losses.region import DiceLoss, LovaszSoftmaxLoss, TverskyLoss, soft_counts
from fcnseg.registry import check_options, lookup

__all__ = [
    "LOSSES",
    "BinaryCrossEntropyLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "LovaszSoftmaxLoss",
    "TverskyLoss",
    "WeightedSum",
    "build_loss",
    "count_class_pixels",
    "labelled_pixels",
    "log_probabilities",
    "masked_mean",
    "median_frequency_weights",
    "resolve_class_weights",
    "soft_counts",
]


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
    "binary_cross_entropy": BinaryCrossEntropyLoss,
    "focal": FocalLoss,
    "dice": DiceLoss,
    "tversky": TverskyLoss,
    "lovasz": LovaszSoftmaxLoss,
}


def build_loss(config: LossConfig, num_classes: int, ignore_index: int = 255) -> nn.Module:
    """The weighted sum of the configured terms (a single term is returned as itself)."""
    class_weights = None
    if isinstance(config.class_weights, str):
        raise FcnsegError(
            f"loss.class_weights '{config.class_weights}' must be resolved to numbers first "
            "(fcnseg.losses.resolve_class_weights)."
        )
    if config.class_weights is not None:
        if len(config.class_weights) != num_classes:
            raise FcnsegError(
                f"loss.class_weights has {len(config.class_weights)} values but there are "
                f"{num_classes} classes; give one weight per class"
                + (
                    " (a one-output binary model takes one: the foreground's)."
                    if num_classes == 1
                    else "."
                )
            )
        class_weights = torch.tensor(config.class_weights, dtype=torch.float32)
    losses = []
    for term in config.terms:
        maker = lookup(LOSSES, term.name, "loss")
        options: dict[str, Any] = {"ignore_index": ignore_index, **term.options}
        if class_weights is not None and "class_weights" in inspect.signature(maker).parameters:
            options.setdefault("class_weights", class_weights)
        check_options(options, inspect.signature(maker).parameters, f"loss '{term.name}'")
        losses.append(maker(**options))
    if len(losses) == 1 and config.terms[0].weight == 1.0:
        return losses[0]
    return WeightedSum(losses, [term.weight for term in config.terms])
