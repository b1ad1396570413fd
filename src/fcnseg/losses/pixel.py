"""Pixel losses: a mean over the labelled pixels of a per-pixel cost.

    cross_entropy          softmax cross-entropy, class weights and label smoothing
    binary_cross_entropy   sigmoid cross-entropy for a single-output (binary) model
    focal                  Lin et al. 2017, in log-softmax / log-sigmoid form

The helpers here are shared with the region losses: which pixels count, and log-probabilities
for K >= 2 softmax logits and for a single sigmoid logit alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.errors import FcnsegError


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
    """Sigmoid cross-entropy for a single-output model (K == 1) against 0/1 masks.

    `pos_weight` weighs the foreground (1) pixels, as in PyTorch's; `class_weights` says the
    same as a (1,) tensor, which is how `loss.class_weights` of a binary model reaches it.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        pos_weight: float | None = None,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if class_weights is not None:
            if pos_weight is not None or class_weights.numel() != 1:
                raise FcnsegError(
                    f"binary_cross_entropy takes one foreground weight, got pos_weight "
                    f"{pos_weight} and loss.class_weights {class_weights.tolist()}; give "
                    "one number in either (loss.class_weights: [w] for a one-output model)."
                )
            pos_weight = float(class_weights[0])
        self.ignore_index = ignore_index
        self.pos_weight = pos_weight

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
    for several classes it is a constant factor, and per-class weights are `class_weights`; a
    binary model's `class_weights` may be its foreground weight alone, (1,), as BCE's pos_weight.
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
        weights = self.class_weights
        if weights is not None and len(weights) == 1 and logits.shape[1] == 1:
            per_pixel = per_pixel * torch.where(target == 1, weights[0], 1.0)
        elif weights is not None:
            per_pixel = per_pixel * weights[target]
        return masked_mean(per_pixel, valid)
