"""A region proposal network's parameter-free parts (Ren, He, Girshick, Sun, "Faster R-CNN",
NIPS 2015), as FCIS uses them: anchors, box coding, box IoU, NMS, proposals and the RPN's
training targets and losses. The two convolutions live in the model (fcis.py).

    objectness (A, h, w), deltas (4A, h, w)       one logit and 4 deltas per anchor and cell
      -> anchors: A = len(sizes) x len(ratios) boxes centred on every cell   (h*w*A, 4)
      -> decoded, clipped to the image, boxes under `min_size` px dropped
      -> the best `pre_nms` by objectness -> NMS (IoU > 0.7 suppressed)
      -> the best `post_nms`                                                  proposals (R, 4)

Boxes are (x0, y0, x1, y1) in pixels, half-open and continuous: a box over pixel columns 3..5
is x0 = 3, x1 = 6, and its width is x1 - x0 (the reference code's "+ 1" widths are gone).
Feature cell (i, j) covers the pixels [j s, (j + 1) s) x [i s, (i + 1) s); its anchors are
centred at ((j + 1/2) s, (i + 1/2) s). An anchor of size S and ratio r (height / width) is
S / sqrt(r) wide and S sqrt(r) high: every ratio keeps the area S^2.

Layout of the RPN's maps: objectness channel a and delta channels 4a..4a+3 belong to anchor a
(size index a // len(ratios), ratio index a % len(ratios)); flattened, anchor (i, j, a) is row
(i w + j) A + a.

Training targets (the reference's anchor loader): an anchor is positive at IoU >= 0.7 with a
box, or when it is (one of) the best anchor(s) of a box; negative below 0.3; ignored between
them and when its centre lies outside the image (in the padding). 256 anchors an image are
sampled, at most half positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

POSITIVE_IOU, NEGATIVE_IOU = 0.7, 0.3  # the RPN's anchor labels
ANCHORS_PER_IMAGE, POSITIVE_FRACTION = 256, 0.5  # sampled for its losses
RPN_NMS_THRESHOLD = 0.7
MIN_SIZE = 2.0  # pixels: narrower or lower proposals are dropped
RPN_SMOOTH_L1_BETA = 1.0 / 9.0  # the reference's smooth_l1 "scalar" 3: beta = 1 / 3^2
MAX_LOG_SCALE = math.log(1000.0 / 16.0)  # exp() of larger width deltas would overflow
POSITIVE, NEGATIVE, IGNORED = 1, 0, -1


@dataclass(frozen=True)
class AnchorSettings:
    """Plain settings (no tensors): postprocessing runs on a model built on the meta device."""

    sizes: tuple[int, ...]  # pixels, the square root of each anchor's area
    ratios: tuple[float, ...]  # height / width
    stride: int  # pixels between the centres of neighbouring cells

    @property
    def count(self) -> int:
        return len(self.sizes) * len(self.ratios)

    def grid(self, feature_size: tuple[int, int], device: torch.device) -> torch.Tensor:
        """(h*w*A, 4) every anchor of every cell, in the maps' flattened order."""
        shapes = [
            (size / math.sqrt(ratio), size * math.sqrt(ratio))
            for size in self.sizes
            for ratio in self.ratios
        ]
        half = torch.tensor(shapes, dtype=torch.float32, device=device) / 2  # (A, 2): w/2, h/2
        height, width = feature_size
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * self.stride
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * self.stride
        centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).view(-1, 1, 2)
        return torch.cat([centres - half, centres + half], dim=-1).view(-1, 4)  # (h*w*A, 4)


def flatten_maps(objectness: torch.Tensor, deltas: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(A, h, w) and (4A, h, w) maps of one image -> (h*w*A,) logits and (h*w*A, 4) deltas."""
    anchors = objectness.shape[0]
    logits = objectness.permute(1, 2, 0).reshape(-1)
    deltas = deltas.view(anchors, 4, *deltas.shape[-2:]).permute(2, 3, 0, 1).reshape(-1, 4)
    return logits, deltas


def box_iou(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(A, B) intersection over union of (A, 4) and (B, 4) boxes; 0 where both are empty."""
    top_left = torch.maximum(first[:, None, :2], second[None, :, :2])
    bottom_right = torch.minimum(first[:, None, 2:], second[None, :, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(-1)  # (A, B)
    areas = (first[:, 2:] - first[:, :2]).clamp(min=0).prod(-1)
    other_areas = (second[:, 2:] - second[:, :2]).clamp(min=0).prod(-1)
    union = areas[:, None] + other_areas[None] - intersection
    return intersection / union.clamp(min=1e-9)


def encode_boxes(
    references: torch.Tensor, targets: torch.Tensor, stds: tuple[float, ...] = (1, 1, 1, 1)
) -> torch.Tensor:
    """(R, 4) deltas that move each reference box onto its target: centre shifts in units of
    the reference's size, log size ratios; each divided by its std (the reference's
    BBOX_STDS normalisation)."""
    size = (references[:, 2:] - references[:, :2]).clamp(min=1e-3)
    centre = (references[:, 2:] + references[:, :2]) / 2
    target_size = (targets[:, 2:] - targets[:, :2]).clamp(min=1e-3)
    target_centre = (targets[:, 2:] + targets[:, :2]) / 2
    deltas = torch.cat([(target_centre - centre) / size, (target_size / size).log()], dim=1)
    return deltas / deltas.new_tensor(stds)


def decode_boxes(
    references: torch.Tensor, deltas: torch.Tensor, stds: tuple[float, ...] = (1, 1, 1, 1)
) -> torch.Tensor:
    """The inverse of encode_boxes: (R, 4) boxes from reference boxes and their deltas."""
    deltas = deltas * deltas.new_tensor(stds)
    size = references[:, 2:] - references[:, :2]
    centre = (references[:, 2:] + references[:, :2]) / 2 + deltas[:, :2] * size
    half = size * deltas[:, 2:].clamp(max=MAX_LOG_SCALE).exp() / 2
    return torch.cat([centre - half, centre + half], dim=1)


def clip_boxes(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Boxes cut to the image [0, W] x [0, H]."""
    height, width = image_size
    limits = boxes.new_tensor([width, height, width, height])
    return torch.minimum(boxes.clamp(min=0), limits)


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, limit: int) -> torch.Tensor:
    """Greedy non-maximum suppression: the indices of at most `limit` boxes, best first; each
    box is kept unless a kept, better one overlaps it by IoU above `threshold`."""
    order = scores.argsort(descending=True, stable=True)
    boxes = boxes[order]
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    kept: list[int] = []
    for index in range(len(order)):
        if len(kept) == limit:
            break
        if suppressed[index]:
            continue
        kept.append(index)
        # Only later boxes can still be kept: compare against those.
        overlaps = box_iou(boxes[index : index + 1], boxes[index + 1 :])[0]
        suppressed[index + 1 :] |= overlaps > threshold
    return order[torch.tensor(kept, dtype=torch.int64, device=boxes.device)]


def propose(
    objectness: torch.Tensor,
    deltas: torch.Tensor,
    anchors: AnchorSettings,
    image_size: tuple[int, int],
    pre_nms: int,
    post_nms: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's (A, h, w) objectness and (4A, h, w) deltas -> proposals (R, 4) and their
    objectness probabilities (R,), best first (see the module docstring)."""
    logits, deltas = flatten_maps(objectness.detach(), deltas.detach())
    grid = anchors.grid((objectness.shape[-2], objectness.shape[-1]), objectness.device)
    boxes = clip_boxes(decode_boxes(grid, deltas.float()), image_size)  # (h*w*A, 4)
    sizes = boxes[:, 2:] - boxes[:, :2]
    large = torch.nonzero((sizes >= MIN_SIZE).all(1)).flatten()
    best = logits[large].float().argsort(descending=True, stable=True)[:pre_nms]
    boxes, scores = boxes[large[best]], logits[large[best]].float().sigmoid()
    kept = nms(boxes, scores, RPN_NMS_THRESHOLD, post_nms)
    return boxes[kept], scores[kept]


def label_anchors(
    grid: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(K,) labels (POSITIVE, NEGATIVE, IGNORED) of K anchors against (G, 4) true boxes, and
    (K,) the box each anchor overlaps most (0 without boxes)."""
    centres = (grid[:, :2] + grid[:, 2:]) / 2
    inside = (centres[:, 0] < image_size[1]) & (centres[:, 1] < image_size[0])
    labels = torch.full((len(grid),), IGNORED, dtype=torch.int64, device=grid.device)
    if len(boxes) == 0:
        return labels.masked_fill(inside, NEGATIVE), torch.zeros_like(labels)
    overlaps = box_iou(grid, boxes).masked_fill(~inside[:, None], -1.0)  # (K, G)
    best, matched = overlaps.max(1)
    labels[inside & (best < NEGATIVE_IOU)] = NEGATIVE
    labels[inside & (best >= POSITIVE_IOU)] = POSITIVE
    best_of_box = overlaps.max(0).values  # (G,)
    is_best = ((overlaps == best_of_box[None]) & (best_of_box[None] > 0)).any(1)
    labels[is_best] = POSITIVE
    return labels, matched


def sample_labels(labels: torch.Tensor, count: int, positive_fraction: float) -> torch.Tensor:
    """The indices of at most `count` labelled rows, at random: up to `positive_fraction`
    of them positive, the rest negative."""
    positives = torch.nonzero(labels == POSITIVE).flatten()
    negatives = torch.nonzero(labels == NEGATIVE).flatten()
    positive_count = min(len(positives), int(count * positive_fraction))
    negative_count = min(len(negatives), count - positive_count)
    chosen = positives[torch.randperm(len(positives), device=labels.device)[:positive_count]]
    others = negatives[torch.randperm(len(negatives), device=labels.device)[:negative_count]]
    return torch.cat([chosen, others])


def rpn_loss(
    objectness: torch.Tensor,
    deltas: torch.Tensor,
    boxes: list[torch.Tensor],
    anchors: AnchorSettings,
    image_size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(objectness loss, box loss) of a batch's (N, A, h, w) and (N, 4A, h, w) maps against
    each image's (G, 4) true boxes: logistic loss averaged over the sampled anchors; smooth L1
    of positive anchors' deltas, summed and divided by 256 an image, as the reference does."""
    grid = anchors.grid((objectness.shape[-2], objectness.shape[-1]), objectness.device)
    logit_parts, label_parts, delta_parts, target_parts = [], [], [], []
    for image, image_boxes in enumerate(boxes):
        logits, image_deltas = flatten_maps(objectness[image], deltas[image])
        labels, matched = label_anchors(grid, image_boxes, image_size)
        chosen = sample_labels(labels, ANCHORS_PER_IMAGE, POSITIVE_FRACTION)
        logit_parts.append(logits[chosen])
        label_parts.append(labels[chosen])
        positive = chosen[labels[chosen] == POSITIVE]
        delta_parts.append(image_deltas[positive])
        if len(image_boxes):
            target_parts.append(encode_boxes(grid[positive], image_boxes[matched[positive]]))
        else:
            target_parts.append(image_deltas.new_zeros(0, 4))
    logits, labels = torch.cat(logit_parts), torch.cat(label_parts)
    objectness_loss = F.binary_cross_entropy_with_logits(
        logits, labels.to(logits.dtype), reduction="sum"
    ) / max(len(logits), 1)
    box_loss = F.smooth_l1_loss(
        torch.cat(delta_parts), torch.cat(target_parts), beta=RPN_SMOOTH_L1_BETA, reduction="sum"
    ) / (ANCHORS_PER_IMAGE * len(boxes))
    return objectness_loss, box_loss
