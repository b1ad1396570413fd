"""InstanceFCN's inference: dense windows -> objectness -> assembled masks -> mask NMS -> masks.

    objectness (S, h, w)                 one logit per feature position and window size
      -> windows centred in the image with probability >= score_threshold,
         the best 10 x max_detections                                       W candidates
      -> assembled at feature resolution                                    (W_L, m, m) per size
      -> bilinear upsampling to the window's L x L pixels, threshold 0.5    (W_L, L, L) bool
      -> greedy NMS on the IoU of the masks, at most max_detections kept    M windows
      -> pasted at the image's own size                                     (M, H, W) bool

Only candidates are assembled and upsampled, and masks stay L x L windows with their origins
until the few kept ones are pasted: nothing of size (windows, H, W) is ever made. Mask IoU is
computed inside one mask's tight box, and only for masks whose boxes and areas allow an IoU above
the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fcnseg.models.instances.windows import assemble, centres_inside, window_tops

CANDIDATES_PER_DETECTION = 10  # candidates kept before NMS, per allowed detection
CHUNK = 256  # windows upsampled at once: bounds the float memory of large windows


@dataclass
class WindowMasks:
    """W binary masks, each an L x L window (zero-padded to the largest L) at a pixel origin."""

    masks: torch.Tensor  # (W, L, L) bool, False outside the image
    tops: torch.Tensor  # (W,) int64, first row in the image (may be negative)
    lefts: torch.Tensor  # (W,) int64, first column in the image (may be negative)

    def __len__(self) -> int:
        return len(self.tops)


def candidate_windows(
    objectness: torch.Tensor,
    window_sizes: tuple[int, ...],
    stride: int,
    image_size: tuple[int, int],
    score_threshold: float,
    limit: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores, size indices, rows and columns of the best windows of one image's (S, h, w)
    objectness, best first."""
    feature_size = objectness.shape[-2:]
    inside = torch.stack(
        [
            centres_inside(L, stride, feature_size, image_size, objectness.device)
            for L in window_sizes
        ]
    )  # (S, h, w)
    probability = objectness.sigmoid().masked_fill(~inside, -1.0).flatten()
    chosen = torch.nonzero(probability >= score_threshold).flatten()
    scores, order = probability[chosen].sort(descending=True)
    chosen, scores = chosen[order[:limit]], scores[:limit]
    height, width = feature_size
    return scores, chosen // (height * width), chosen // width % height, chosen % width


def window_masks(
    score_maps: torch.Tensor,
    sizes: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    window_sizes: tuple[int, ...],
    stride: int,
    image_size: tuple[int, int],
) -> WindowMasks:
    """Assemble one image's (k*k, h, w) score maps in each window and upsample to its pixels."""
    largest = max((window_sizes[index] for index in sizes.unique().tolist()), default=stride)
    device = score_maps.device
    masks = torch.zeros(len(sizes), largest, largest, dtype=torch.bool, device=device)
    tops, lefts = torch.zeros_like(rows), torch.zeros_like(cols)
    for index in sizes.unique().tolist():
        size, cells = window_sizes[index], window_sizes[index] // stride
        chosen = torch.nonzero(sizes == index).flatten()
        tops[chosen] = window_tops(rows[chosen], cells, stride)
        lefts[chosen] = window_tops(cols[chosen], cells, stride)
        for chunk in chosen.split(CHUNK):
            images = torch.zeros_like(chunk)
            logits = assemble(score_maps[None], images, rows[chunk], cols[chunk], cells)
            logits = F.interpolate(
                logits[:, None], size=(size, size), mode="bilinear", align_corners=False
            )
            masks[chunk, :size, :size] = logits[:, 0] > 0  # sigmoid > 0.5
    pixel = torch.arange(largest, device=device)
    row_inside = (tops[:, None] + pixel >= 0) & (tops[:, None] + pixel < image_size[0])
    col_inside = (lefts[:, None] + pixel >= 0) & (lefts[:, None] + pixel < image_size[1])
    masks &= row_inside[:, :, None] & col_inside[:, None, :]
    return WindowMasks(masks, tops, lefts)


def mask_boxes(windows: WindowMasks) -> torch.Tensor:
    """(W, 4) each mask's tight box in image pixels, y0, x0, y1, x1 half-open (empty: 0 size)."""
    size = windows.masks.shape[-1]
    boxes = []
    for axis, origin in ((2, windows.tops), (1, windows.lefts)):
        occupied = windows.masks.any(axis)  # (W, L): rows (or columns) with a mask pixel
        first = occupied.int().argmax(1)
        last = size - occupied.flip(1).int().argmax(1)
        boxes.append((origin + first, origin + torch.where(occupied.any(1), last, first)))
    (y0, y1), (x0, x1) = boxes
    return torch.stack([y0, x0, y1, x1], dim=1)


def intersections(
    windows: WindowMasks, index: int, others: torch.Tensor, box: torch.Tensor
) -> torch.Tensor:
    """(J,) pixels mask `index` shares with each of `others`, counted inside its tight `box`
    (outside it, it has none): a (J, box) gather instead of (J, L, L)."""
    size = windows.masks.shape[-1]
    device = windows.masks.device
    y0, x0, y1, x1 = box.tolist()
    rows, cols = torch.arange(y0, y1, device=device), torch.arange(x0, x1, device=device)
    mine = windows.masks[index][rows - windows.tops[index], :][:, cols - windows.lefts[index]]
    their_rows = rows[None] - windows.tops[others][:, None]  # (J, bh), rows in their windows
    their_cols = cols[None] - windows.lefts[others][:, None]  # (J, bw)
    inside = ((their_rows >= 0) & (their_rows < size))[:, :, None] & (
        (their_cols >= 0) & (their_cols < size)
    )[:, None, :]
    theirs = windows.masks[
        others[:, None, None],
        their_rows.clamp(0, size - 1)[:, :, None],
        their_cols.clamp(0, size - 1)[:, None, :],
    ]  # (J, bh, bw)
    return (theirs & inside & mine).flatten(1).sum(1)


def mask_nms(
    windows: WindowMasks, scores: torch.Tensor, iou_threshold: float, limit: int
) -> torch.Tensor:
    """Greedy NMS on mask IoU: the indices of at most `limit` windows kept, best first.

    Each window, best first, is kept unless an already kept one overlaps it by IoU above
    `iou_threshold`; empty masks are never kept. Exact IoUs are computed only where the bound
    min(box overlap, either area) on the intersection allows one above the threshold.
    """
    areas = windows.masks.flatten(1).sum(1)  # (W,)
    boxes = mask_boxes(windows)  # (W, 4)
    suppressed = areas == 0
    kept: list[int] = []
    for index in scores.argsort(descending=True).tolist():
        if len(kept) == limit:
            break
        if suppressed[index]:
            continue
        kept.append(index)
        top_left = torch.maximum(boxes[:, :2], boxes[index, :2])
        bottom_right = torch.minimum(boxes[:, 2:], boxes[index, 2:])
        box_overlap = (bottom_right - top_left).clamp(min=0).prod(1)  # (W,)
        bound = torch.minimum(torch.minimum(box_overlap, areas), areas[index])
        possible = ~suppressed & (bound > iou_threshold * (areas[index] + areas - bound))
        others = torch.nonzero(possible).flatten()
        shared = intersections(windows, index, others, boxes[index])
        iou = shared / (areas[index] + areas[others] - shared)
        suppressed[others[iou > iou_threshold]] = True
    return torch.tensor(kept, dtype=torch.int64, device=scores.device)


def paste(windows: WindowMasks, image_size: tuple[int, int]) -> torch.Tensor:
    """(W, H, W) masks at the image's size: each window copied in at its origin, clipped."""
    height, width = image_size
    size = windows.masks.shape[-1]
    pasted = torch.zeros(len(windows), height, width, dtype=torch.bool, device=windows.masks.device)
    origins = zip(windows.tops.tolist(), windows.lefts.tolist(), strict=True)
    for slot, (top, left) in enumerate(origins):
        y0, y1 = max(top, 0), min(top + size, height)
        x0, x1 = max(left, 0), min(left + size, width)
        if y1 > y0 and x1 > x0:
            pasted[slot, y0:y1, x0:x1] = windows.masks[
                slot, y0 - top : y1 - top, x0 - left : x1 - left
            ]
    return pasted


def detect(
    score_maps: torch.Tensor,
    objectness: torch.Tensor,
    window_sizes: tuple[int, ...],
    stride: int,
    image_size: tuple[int, int],
    score_threshold: float,
    nms_threshold: float,
    max_detections: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's (k*k, h, w) score maps and (S, h, w) objectness -> masks (M, H, W) bool at
    `image_size` and their scores (M,), best first."""
    limit = CANDIDATES_PER_DETECTION * max_detections
    scores, sizes, rows, cols = candidate_windows(
        objectness, window_sizes, stride, image_size, score_threshold, limit
    )
    windows = window_masks(score_maps, sizes, rows, cols, window_sizes, stride, image_size)
    kept = mask_nms(windows, scores, nms_threshold, max_detections)
    chosen = WindowMasks(windows.masks[kept], windows.tops[kept], windows.lefts[kept])
    return paste(chosen, image_size), scores[kept]
