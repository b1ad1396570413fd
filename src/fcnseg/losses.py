"""Losses: `loss(logits (N, K, H, W), mask (N, H, W) int64) -> scalar`, honouring the ignore index.

Two families:

    pixel losses    cross_entropy, binary_cross_entropy, focal   a mean over the labelled pixels
    region losses   dice, tversky, lovasz                        one score per class over the
                                                                 batch, averaged over classes

A single-output model (K == 1, masks 0/1) is a binary one. A sigmoid logit x is the two-class
softmax of [0, x], so every loss but cross_entropy takes it as two classes; region losses then
score the foreground class only, as binary Dice does. Everything is computed from
log-probabilities (log_softmax, logsigmoid), never log(p) of a rounded p, so logits of +-1e4
give finite losses and gradients with no clipping. Ignored pixels take no part at all, and a
batch with no labelled pixel gives a loss of 0 (not the 0/0 NaN of a plain mean).

The config sums weighted terms, e.g. cross-entropy + Dice with median-frequency class weights:

    loss:
      terms: [{name: cross_entropy}, {name: dice, weight: 0.5}]
      class_weights: median_frequency       # or a list, one weight per class
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.config import LossConfig
from fcnseg.errors import FcnsegError
from fcnseg.registry import lookup, suggest


def labelled_pixels(mask: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(valid (N, H, W) bool, target with ignored pixels set to 0, safe to index with)."""
    valid = mask != ignore_index
    return valid, torch.where(valid, mask, 0)


def log_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(N, K, H, W) log-probabilities; a sigmoid logit x becomes two classes: [1 - p, p]."""
    if logits.shape[1] == 1:
        return torch.cat([F.logsigmoid(-logits), F.logsigmoid(logits)], dim=1)
    return F.log_softmax(logits, dim=1)


def masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The mean of `values` over the valid pixels; 0 when there are none."""
    return torch.where(valid, values, 0.0).sum() / valid.sum().clamp_min(1)


class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy with optional class weights and label smoothing, as F.cross_entropy.

    The mean is weighted, sum_i w[y_i] l_i / sum_i w[y_i] over labelled pixels, as PyTorch's.
    """

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
        if logits.shape[1] == 1:
            raise FcnsegError(
                "cross_entropy needs at least 2 classes; a single-output (binary) model "
                "trains with binary_cross_entropy."
            )
        per_pixel = F.cross_entropy(  # 0 at ignored pixels
            logits,
            mask,
            weight=self.class_weights,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction="none",
        )
        valid, target = labelled_pixels(mask, self.ignore_index)
        weights = (
            valid.float() if self.class_weights is None else self.class_weights[target] * valid
        )
        return per_pixel.sum() / weights.sum().clamp_min(torch.finfo(per_pixel.dtype).tiny)


class BinaryCrossEntropyLoss(nn.Module):
    """Sigmoid cross-entropy for a single-output model (K == 1) against 0/1 masks."""

    def __init__(self, ignore_index: int = 255, pos_weight: float | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.pos_weight = pos_weight  # weight of the foreground (1) pixels, as in PyTorch's

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] != 1:
            raise FcnsegError(
                f"binary_cross_entropy needs a single-output model, got {logits.shape[1]} "
                "outputs; use cross_entropy for several classes."
            )
        valid, target = labelled_pixels(mask, self.ignore_index)
        pos_weight = None if self.pos_weight is None else logits.new_tensor(self.pos_weight)
        per_pixel = F.binary_cross_entropy_with_logits(
            logits[:, 0], target.to(logits.dtype), pos_weight=pos_weight, reduction="none"
        )
        return masked_mean(per_pixel, valid)


class FocalLoss(nn.Module):
    """Lin et al. 2017: -alpha_t (1 - p_t)^gamma log p_t, averaged over the labelled pixels.

    `alpha` weighs the foreground of a binary model (1 - alpha the background), as RetinaNet's;
    for several classes it is a constant factor, and per-class weights are `class_weights`.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        gamma: float = 2.0,
        alpha: float | None = None,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise FcnsegError(f"focal loss gamma must be >= 0, got {gamma}.")
        self.ignore_index, self.gamma, self.alpha = ignore_index, gamma, alpha
        self.register_buffer("class_weights", class_weights)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        valid, target = labelled_pixels(mask, self.ignore_index)
        log_pt = log_probabilities(logits).gather(1, target[:, None])[:, 0]  # (N, H, W)
        # 1 - p_t as -expm1(log p_t): exact near p_t = 1, where 1 - exp(.) rounds to 0 early.
        # The floor only keeps the gradient of x^gamma finite at x = 0 when gamma < 1; it changes
        # the loss by at most tiny^gamma * |log p_t| with log p_t ~ 0 there.
        one_minus_pt = (-torch.expm1(log_pt)).clamp_min(torch.finfo(log_pt.dtype).tiny)
        per_pixel = -one_minus_pt.pow(self.gamma) * log_pt
        if self.alpha is not None:
            binary = logits.shape[1] == 1
            per_pixel = per_pixel * (
                torch.where(target == 1, self.alpha, 1 - self.alpha) if binary else self.alpha
            )
        if self.class_weights is not None:
            per_pixel = per_pixel * self.class_weights[target]
        return masked_mean(per_pixel, valid)


def soft_counts(
    logits: torch.Tensor, mask: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class soft true positives, false positives and false negatives over labelled pixels.

    Each is (K,), or (1,) for the foreground of a binary model.
    """
    valid, target = labelled_pixels(mask, ignore_index)
    probabilities = log_probabilities(logits).exp()  # (N, K', H, W), K' = max(K, 2)
    truth = F.one_hot(target, probabilities.shape[1]).permute(0, 3, 1, 2).to(probabilities.dtype)
    valid = valid[:, None]
    probabilities = torch.where(valid, probabilities, 0.0)
    truth = torch.where(valid, truth, 0.0)
    true_positive = (probabilities * truth).sum(dim=(0, 2, 3))
    false_positive = probabilities.sum(dim=(0, 2, 3)) - true_positive
    false_negative = truth.sum(dim=(0, 2, 3)) - true_positive
    if logits.shape[1] == 1:
        return true_positive[1:], false_positive[1:], false_negative[1:]
    return true_positive, false_positive, false_negative


class TverskyLoss(nn.Module):
    """Salehi et al. 2017: 1 - (TP + s) / (TP + alpha FP + beta FN + s), averaged over classes.

    alpha = beta = 0.5 is soft Dice; beta > alpha punishes missed pixels more (better recall).
    The class average is weighted by `class_weights` when given.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        alpha: float = 0.3,
        beta: float = 0.7,
        smooth: float = 1.0,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.ignore_index, self.alpha, self.beta, self.smooth = ignore_index, alpha, beta, smooth
        self.register_buffer("class_weights", class_weights)

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tp, fp, fn = soft_counts(logits, mask, self.ignore_index)
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        per_class = 1 - index
        if self.class_weights is None or logits.shape[1] == 1:
            return per_class.mean()
        return (per_class * self.class_weights).sum() / self.class_weights.sum()


class DiceLoss(TverskyLoss):
    """Soft Dice: 1 - (2 TP + s) / (2 TP + FP + FN + s) per class, averaged over classes.

    It is Tversky with alpha = beta = 1/2 (multiply its fraction through by 2), smooth s / 2.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        smooth: float = 1.0,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__(ignore_index, 0.5, 0.5, smooth / 2, class_weights)


def lovasz_gradient(sorted_truth: torch.Tensor) -> torch.Tensor:
    """Berman et al. 2018, Alg. 1: the Jaccard loss's increments along errors sorted descending.

    `sorted_truth` is (P, K) 0/1, column c sorted by class c's errors; returns (P, K).
    """
    total = sorted_truth.sum(dim=0)
    intersection = total - sorted_truth.cumsum(dim=0)
    union = total + (1 - sorted_truth).cumsum(dim=0)  # >= 1: the first pixel adds 1 either way
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_softmax(
    probabilities: torch.Tensor, truth: torch.Tensor, only_present: bool
) -> torch.Tensor:
    """The Lovasz extension of the per-class Jaccard loss, probabilities (P, K), truth (P, K)."""
    errors, order = (truth - probabilities).abs().sort(dim=0, descending=True)
    per_class = (errors * lovasz_gradient(truth.gather(0, order))).sum(dim=0)  # (K,)
    counted = truth.sum(dim=0) > 0 if only_present else torch.ones_like(per_class, dtype=bool)
    return torch.where(counted, per_class, 0.0).sum() / counted.sum().clamp_min(1)


class LovaszSoftmaxLoss(nn.Module):
    """Berman et al. 2018: a convex, tight surrogate of 1 - IoU, averaged over classes.

    `classes: present` averages over the classes in the batch's truth (the paper's default),
    `all` over every class. `per_image` averages per-image losses instead of pooling pixels.
    """

    def __init__(
        self, ignore_index: int = 255, classes: str = "present", per_image: bool = False
    ) -> None:
        super().__init__()
        if classes not in ("present", "all"):
            raise FcnsegError(f"lovasz classes must be 'present' or 'all', got '{classes}'.")
        self.ignore_index, self.only_present, self.per_image = (
            ignore_index,
            classes == "present",
            per_image,
        )

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.per_image:
            pairs = zip(logits.split(1), mask.split(1), strict=True)
            return torch.stack([self.pooled(*pair) for pair in pairs]).mean()
        return self.pooled(logits, mask)

    def pooled(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The loss over all labelled pixels of the batch as one set."""
        valid, target = labelled_pixels(mask, self.ignore_index)
        probabilities = log_probabilities(logits).exp().permute(0, 2, 3, 1)[valid]  # (P, K')
        truth = F.one_hot(target[valid], probabilities.shape[1]).to(probabilities.dtype)
        if logits.shape[1] == 1:  # a binary model: the foreground class only
            probabilities, truth = probabilities[:, 1:], truth[:, 1:]
        return lovasz_softmax(probabilities, truth, self.only_present)


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


def median_frequency_weights(
    masks: Iterable[np.ndarray | torch.Tensor], num_classes: int, ignore_index: int = 255
) -> list[float]:
    """Eigen & Fergus 2015: weight_c = median(freq) / freq_c.

    freq_c is class c's pixel count over the labelled pixels of the images where c appears.
    Classes that never appear get weight 1.
    """
    pixels = np.zeros(num_classes, dtype=np.int64)
    pixels_of_images_with = np.zeros(num_classes, dtype=np.int64)
    for mask in masks:
        labels = np.asarray(mask).ravel()
        labels = labels[labels != ignore_index]
        counts = np.bincount(labels, minlength=num_classes)[:num_classes]
        pixels += counts
        pixels_of_images_with += np.where(counts > 0, labels.size, 0)
    present = pixels > 0
    if not present.any():
        return [1.0] * num_classes
    frequency = pixels[present] / pixels_of_images_with[present]
    weights = np.ones(num_classes)
    weights[present] = np.median(frequency) / frequency
    return weights.tolist()


def resolve_class_weights(
    config: LossConfig,
    masks: Callable[[], Iterable[np.ndarray]],
    num_classes: int,
    ignore_index: int,
) -> LossConfig:
    """The loss config with `class_weights: median_frequency` replaced by the numbers.

    `masks` is called only when needed: counting reads every training mask once.
    """
    if not isinstance(config.class_weights, str):
        return config
    if config.class_weights != "median_frequency":
        raise FcnsegError(
            f"loss.class_weights must be a list of numbers or 'median_frequency', "
            f"got '{config.class_weights}'."
        )
    weights = median_frequency_weights(masks(), num_classes, ignore_index)
    return dataclasses.replace(config, class_weights=weights)


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
                f"{num_classes} classes; give one weight per class."
            )
        class_weights = torch.tensor(config.class_weights, dtype=torch.float32)
    losses = []
    for term in config.terms:
        maker = lookup(LOSSES, term.name, "loss")
        options: dict[str, Any] = {"ignore_index": ignore_index, **term.options}
        if class_weights is not None and "class_weights" in inspect.signature(maker).parameters:
            options.setdefault("class_weights", class_weights)
        accepted = inspect.signature(maker).parameters
        for key in options:
            if key not in accepted:
                raise FcnsegError(
                    f"loss '{term.name}' has no option '{key}'.{suggest(key, accepted)} "
                    f"Options: {', '.join(accepted)}."
                )
        losses.append(maker(**options))
    if len(losses) == 1 and config.terms[0].weight == 1.0:
        return losses[0]
    return WeightedSum(losses, [term.weight for term in config.terms])
