"""Region losses: one score per class over the whole batch's labelled pixels, averaged.

    dice      soft Dice, 1 - 2 TP / (2 TP + FP + FN)
    tversky   Dice with separate weights for false positives and false negatives
    lovasz    Berman et al. 2018, the Lovasz extension of the Jaccard (IoU) loss

A binary model (one sigmoid logit) is scored by Dice and Tversky on its foreground class only,
as binary Dice is; Lovasz takes the paper's binary form, the Lovasz hinge.

A class with nothing to get wrong (no true and no predicted pixel, or no labelled pixel at all)
costs 0 even with smooth = 0, where the index itself would be 0/0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.errors import FcnsegError
from fcnseg.losses.pixel import labelled_pixels, log_probabilities


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
        # 1 - index written as errors / total, so that a class with no true, predicted or
        # labelled pixel is 0 / 0: it costs 0, and the double `where` keeps its gradient 0
        # rather than the NaN that dividing by 0 would send back.
        errors = self.alpha * fp + self.beta * fn
        total = tp + errors + self.smooth
        counted = total > 0
        per_class = torch.where(counted, errors / torch.where(counted, total, 1.0), 0.0)
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


def lovasz_hinge(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Berman et al. 2018's binary case: the Lovasz hinge of the foreground Jaccard loss (Yu and
    Blaschko's surrogate), logits (P,), truth (P,) 0/1.

    Each pixel's hinge error is 1 - logit * sign (sign +1 for foreground, -1 for background), so
    a background pixel painted foreground costs too, which the foreground-probability form
    misses on a batch without foreground. Unlike the softmax form it is unbounded above.
    """
    signs = 2 * truth - 1
    errors, order = (1 - logits * signs).sort(descending=True)
    increments = lovasz_gradient(truth[order][:, None])[:, 0]
    return (F.relu(errors) * increments).sum()


class LovaszSoftmaxLoss(nn.Module):
    """Berman et al. 2018: a convex, tight surrogate of 1 - IoU, averaged over classes.

    `classes: present` averages over the classes in the batch's truth (the paper's default),
    `all` over every class. `per_image` averages per-image losses instead of pooling pixels.
    A binary model (one logit) takes the paper's binary form, the Lovasz hinge of its
    foreground IoU, where `classes` has nothing to choose.
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
        if logits.shape[1] == 1:
            return lovasz_hinge(logits[:, 0][valid], target[valid].to(logits.dtype))
        probabilities = log_probabilities(logits).exp().permute(0, 2, 3, 1)[valid]  # (P, K)
        truth = F.one_hot(target[valid], probabilities.shape[1]).to(probabilities.dtype)
        return lovasz_softmax(probabilities, truth, self.only_present)
