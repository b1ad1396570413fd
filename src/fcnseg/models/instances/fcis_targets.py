"""FCIS's training side: what each ROI should give and how far it is from that.

    true_instances   a (2, H, W) target -> its instances' IDs, tight boxes and classes (Truth)
    Rois             a batch's ROIs with their labels (positive at box IoU >= FOREGROUND_IOU)
    mask_targets     each positive ROI's mask on the P x P bins (>= 0.4 inside, -1 on void)
    roi_losses       class, mask and box losses of the hardest ROIs per image (OHEM), weighted
                     and normalised as the reference code (msracver/FCIS)

Also the constants that inference shares (MASK_THRESHOLD, BOX_STDS) and RoiScores, what the
assembled maps say about each ROI. fcis.py holds the network and its inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fcnseg.models.instances.contract import classes_of
from fcnseg.models.instances.psroi import sample_in_boxes
from fcnseg.models.instances.rpn import encode_boxes
from fcnseg.models.instances.windows import instance_boxes

FOREGROUND_IOU = 0.5  # a ROI is positive at this box IoU with a true box
MASK_THRESHOLD = 0.4  # the reference's BINARY_THRESH: mask targets and votes
BOX_STDS = (0.2, 0.2, 0.5, 0.5)  # the reference's BBOX_STDS: box deltas are divided by these
CLASS_WEIGHT, MASK_WEIGHT, BOX_WEIGHT = 1.0, 10.0, 1.0  # the reference's LOSS_WEIGHT


@dataclass
class Truth:
    """One image's true instances: their IDs (G,), boxes (G, 4) and classes (G,)."""

    ids: torch.Tensor
    boxes: torch.Tensor
    classes: torch.Tensor


@dataclass
class Rois:
    """A batch's regions of interest with their training labels."""

    images: torch.Tensor  # (R,) int64
    boxes: torch.Tensor  # (R, 4) pixels
    labels: torch.Tensor  # (R,) int64, the class of a positive ROI, 0 for a negative
    instances: torch.Tensor  # (R,) int64, the ID of a positive ROI's instance, 0 otherwise
    truth_boxes: torch.Tensor  # (R, 4), the matched true box (a negative: its own box)


@dataclass
class RoiScores:
    """What the assembled maps say about R ROIs."""

    class_logits: torch.Tensor  # (R, K)
    mask_logits: torch.Tensor  # (R, K, P, P): inside minus outside
    box_deltas: torch.Tensor  # (R, 4)


def true_instances(target: torch.Tensor, ignore_index: int, num_classes: int) -> Truth:
    """One (2, H, W) target's instances with a class in 1..K-1, and their tight boxes."""
    classes = classes_of(target)  # {ID: the majority class under it}
    ids, corners = instance_boxes(target[0])  # (G,), (G, 4) y0, x0, y1, x1
    labels = torch.tensor([classes.get(int(i), 0) for i in ids], dtype=torch.int64)
    labels = labels.to(target.device)
    valid = (labels >= 1) & (labels < num_classes) & (labels != ignore_index)
    boxes = corners[:, [1, 0, 3, 2]].float()  # (G, 4) x0, y0, x1, y1
    return Truth(ids[valid], boxes[valid], labels[valid])


def mask_targets(target: torch.Tensor, ignore_index: int, rois: Rois, size: int) -> torch.Tensor:
    """(R, P, P) the mask each positive ROI should give: 1 where its instance covers a bin
    (bilinear sample >= 0.4, as the reference's resized crop), 0 elsewhere, -1 (ignored) on
    void bins and everywhere in negative ROIs."""
    result = torch.full(
        (len(rois.boxes), size, size), -1, dtype=torch.int64, device=rois.boxes.device
    )
    positive = torch.nonzero(rois.labels > 0).flatten()
    if len(positive) == 0:
        return result
    images, boxes = rois.images[positive], rois.boxes[positive]
    inside = sample_in_boxes(target[:, 0], images, boxes, size, rois.instances[positive])
    void = sample_in_boxes((target[:, 1] == ignore_index).float(), images, boxes, size)
    masks = (inside >= MASK_THRESHOLD).long().masked_fill(void >= 0.5, -1)
    result[positive] = masks
    return result


def roi_losses(
    scores: RoiScores, rois: Rois, masks: torch.Tensor, hard_rois: int, batch: int
) -> dict[str, torch.Tensor]:
    """The class, mask and box losses of the hardest `hard_rois` ROIs of each image (OHEM),
    normalised as the reference does (see the module docstring)."""
    rows = torch.arange(len(rois.labels), device=rois.labels.device)
    class_losses = F.cross_entropy(scores.class_logits, rois.labels, reduction="none")  # (R,)
    picked = scores.mask_logits[rows, rois.labels]  # (R, P, P): the ROI's own class
    labelled = masks >= 0
    mask_losses = (
        F.binary_cross_entropy_with_logits(
            picked, masks.clamp(min=0).to(picked.dtype), reduction="none"
        )
        * labelled
    )  # (R, P, P)
    box_targets = encode_boxes(rois.boxes, rois.truth_boxes, BOX_STDS)
    box_losses = F.smooth_l1_loss(scores.box_deltas, box_targets, beta=1.0, reduction="none")
    box_losses = box_losses.sum(1) * (rois.labels > 0)  # (R,)
    ranking = (
        CLASS_WEIGHT * class_losses
        + MASK_WEIGHT * mask_losses.mean((1, 2))
        + BOX_WEIGHT * box_losses
    )
    kept = hardest(ranking.detach(), rois.images, hard_rois)
    normaliser = hard_rois * batch
    return {
        "class": CLASS_WEIGHT * class_losses[kept].mean(),
        "mask": MASK_WEIGHT * mask_losses[kept].sum() / normaliser,
        "box": BOX_WEIGHT * box_losses[kept].sum() / normaliser,
    }


def hardest(losses: torch.Tensor, images: torch.Tensor, count: int) -> torch.Tensor:
    """The indices of the `count` largest losses of each image."""
    kept = []
    for image in images.unique().tolist():
        members = torch.nonzero(images == image).flatten()
        kept.append(members[losses[members].argsort(descending=True)[:count]])
    return torch.cat(kept)
