"""Boundary F1: do the predicted class edges lie where the true ones are, within a few pixels?

Region scores such as IoU barely notice a blurry or shifted edge, because edge pixels are few.
Boundary F1 (Csurka et al., BMVC 2013) looks at the edges alone. For each class c:

    edge(mask)    pixels of the mask with a neighbour (3x3) outside it; the image border is no edge
    precision_c   share of predicted edge pixels with a true edge pixel within `tolerance`
    recall_c      share of true edge pixels with a predicted edge pixel within `tolerance`
    F1_c          2 P R / (P + R)

"Within" is the Chebyshev distance (a (2t+1) x (2t+1) square), which morphology gives exactly
with a max pool. Counts are summed over the dataset before the ratios, like the confusion matrix.
Pixels within `tolerance` of an ignored pixel are left out of both edge maps: an edge drawn next
to an unlabelled region cannot be judged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """(K, H, W) float 0/1 -> 1 wherever a pixel within Chebyshev distance `radius` is 1."""
    if radius == 0:
        return masks
    return F.max_pool2d(masks[None], 2 * radius + 1, stride=1, padding=radius)[0]


def edges(masks: torch.Tensor) -> torch.Tensor:
    """(K, H, W) float 0/1 -> 1 on pixels of a mask that touch (3x3) a pixel outside it.

    Erosion is a min pool; max_pool2d pads with -inf, so outside the image counts as inside
    the mask and the image border is never an edge.
    """
    eroded = -F.max_pool2d(-masks[None], 3, stride=1, padding=1)[0]
    return masks - eroded


def boundary_counts(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int, tolerance: int
) -> torch.Tensor:
    """(4, K) int64 per class: matched predicted edge pixels, predicted edge pixels, matched
    true edge pixels, true edge pixels; for one (H, W) pair of label maps."""
    classes = torch.arange(num_classes).view(-1, 1, 1)
    pred_masks = (pred[None] == classes).float()  # (K, H, W)
    true_masks = (target[None] == classes).float()
    ignored = (target == ignore_index).float()[None]  # (1, H, W)
    judged = 1 - dilate(ignored, tolerance)  # (1, H, W)
    pred_edges, true_edges = edges(pred_masks) * judged, edges(true_masks) * judged
    matched_pred = pred_edges * dilate(true_edges, tolerance)
    matched_true = true_edges * dilate(pred_edges, tolerance)
    sums = [m.sum(dim=(1, 2)) for m in (matched_pred, pred_edges, matched_true, true_edges)]
    return torch.stack(sums).round().long()


def boundary_f1(counts: torch.Tensor) -> torch.Tensor:
    """(K,) F1 per class from summed (4, K) counts; NaN for a class with no edge in either map,
    0 for one whose edges exist only in the prediction or only in the truth."""
    matched_pred, pred_total, matched_true, true_total = counts.double()
    precision = matched_pred / pred_total.clamp(min=1)
    recall = matched_true / true_total.clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    absent = (pred_total == 0) & (true_total == 0)
    return torch.where(absent, torch.full_like(f1, math.nan), f1)
