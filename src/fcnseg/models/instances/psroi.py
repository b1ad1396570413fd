"""FCIS's regions of interest: position-sensitive ROI pooling (the assembling), the training
masks sampled inside a ROI, and at inference the detections chosen among the ROIs and their
masks voted and pasted back into the image.

Position-sensitive ROI pooling (R-FCN's, with FCIS's pooled size). A ROI is cut into a P x P
grid of bins (P = 21 in FCIS); bin (p, q) averages the feature cells it touches of the one score
map that scores its relative position: map (d k + g(p)) k + g(q) for output d, where the k x k
position grid (k = 7) holds g(p) = floor(p k / P). As in the reference code, bin p along an axis
spans the cells [floor(start + p b), ceil(start + (p + 1) b)) with b = max(end - start, 0.1) / P,
clipped to the map; an empty bin is 0. Sums over cell rectangles come from a summed-area table,
so each bin costs 4 reads whatever its size, and the gradient flows back to every cell it
averaged. ROI corners are not rounded to whole pixels first (the reference's are).

Masks inside a ROI are P x P grids sampled at the bin centres (bilinear on pixels, zero outside
the image), as the reference resizes a ROI's crop of the true mask to 21 x 21.

Inference (the reference's mask voting): per foreground class, ROIs scoring at least the
threshold go through box NMS; the best detections over all classes are kept. Each detection's
mask is voted by every ROI whose box overlaps its box by IoU >= 0.5: their P x P masks of its
class, resized bilinearly into their boxes and thresholded at 0.4, averaged with their class
probabilities as weights, and thresholded at 0.4 again. Masks are only ever made over the window
covering the voters' boxes, then copied into the image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fcnseg.models.instances.rpn import box_iou, nms


def bin_edges(
    starts: torch.Tensor, ends: torch.Tensor, pooled_size: int, limit: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, P) first and one-past-last feature cell of each bin along one axis."""
    bins = (ends - starts).clamp(min=0.1) / pooled_size  # (R,)
    steps = torch.arange(pooled_size + 1, device=starts.device, dtype=starts.dtype)
    edges = starts[:, None] + steps[None] * bins[:, None]  # (R, P + 1)
    first = edges[:, :-1].floor().long().clamp(0, limit)
    last = edges[:, 1:].ceil().long().clamp(0, limit)
    return first, last


def position_sensitive_pool(
    maps: torch.Tensor,
    images: torch.Tensor,
    boxes: torch.Tensor,
    stride: int,
    grid_size: int,
    pooled_size: int,
) -> torch.Tensor:
    """(R, D, P, P) pooled values of (N, D*k*k, h, w) score maps for R ROIs: (R, 4) boxes in
    pixels (x0, y0, x1, y1) on images `images` (R,). Parameter-free."""
    _, channels, height, width = maps.shape
    outputs = channels // (grid_size * grid_size)
    table = F.pad(maps.cumsum(-1).cumsum(-2), (1, 0, 1, 0))  # (N, C, h + 1, w + 1)
    cells = boxes.to(maps.dtype) / stride
    x0, x1 = bin_edges(cells[:, 0], cells[:, 2], pooled_size, width)  # (R, P) each
    y0, y1 = bin_edges(cells[:, 1], cells[:, 3], pooled_size, height)
    group = (torch.arange(pooled_size, device=maps.device) * grid_size) // pooled_size  # (P,)
    group = group.clamp(max=grid_size - 1)
    position = group[:, None] * grid_size + group[None, :]  # (P, P)
    output = torch.arange(outputs, device=maps.device)
    channel = output[:, None, None] * grid_size * grid_size + position  # (D, P, P)
    # Flat index of (image, channel) into the table, then of the four corners.
    plane = (images[:, None, None, None] * channels + channel[None]) * (height + 1)  # (R,D,P,P)
    flat = table.reshape(-1)

    def corner(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        index = (plane + rows[:, None, :, None]) * (width + 1) + cols[:, None, None, :]
        return flat[index]  # (R, D, P, P)

    sums = corner(y1, x1) - corner(y0, x1) - corner(y1, x0) + corner(y0, x0)
    areas = (y1 - y0)[:, :, None] * (x1 - x0)[:, None, :]  # (R, P, P)
    return torch.where(areas[:, None] > 0, sums / areas[:, None].clamp(min=1), 0.0)


def bin_centres(boxes: torch.Tensor, pooled_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, P) pixel coordinates (continuous, pixel centres at i + 1/2) of the bin centres of
    each ROI, along y and along x."""
    steps = (torch.arange(pooled_size, device=boxes.device, dtype=boxes.dtype) + 0.5) / pooled_size
    xs = boxes[:, 0:1] + steps[None] * (boxes[:, 2:3] - boxes[:, 0:1])
    ys = boxes[:, 1:2] + steps[None] * (boxes[:, 3:4] - boxes[:, 1:2])
    return ys, xs


def sample_in_boxes(
    maps: torch.Tensor,
    images: torch.Tensor,
    boxes: torch.Tensor,
    pooled_size: int,
    equal_to: torch.Tensor | None = None,
) -> torch.Tensor:
    """(R, P, P) bilinear samples of (N, H, W) maps at each ROI's bin centres; pixels outside
    the map count as 0. With `equal_to` (R,), ROI r samples the indicator `maps == equal_to[r]`
    instead (its instance's mask, from an ID map)."""
    _, height, width = maps.shape
    ys, xs = bin_centres(boxes.float(), pooled_size)  # (R, P) each
    result = torch.zeros(len(boxes), pooled_size, pooled_size, device=maps.device)
    for row_offset in (0, 1):
        rows, row_weights = neighbour(ys, row_offset, height)
        for col_offset in (0, 1):
            cols, col_weights = neighbour(xs, col_offset, width)
            values = maps[images[:, None, None], rows[:, :, None], cols[:, None, :]]
            if equal_to is not None:
                values = values == equal_to[:, None, None]
            result += values * row_weights[:, :, None] * col_weights[:, None, :]
    return result


def neighbour(
    coordinates: torch.Tensor, offset: int, limit: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixel below (offset 0) or above (1) each continuous coordinate, clamped into the
    map, and its bilinear weight (0 when the pixel lies outside the map)."""
    shifted = coordinates - 0.5  # pixel i's centre is at i + 1/2
    low = shifted.floor()
    fraction = shifted - low
    index = low.long() + offset
    weight = fraction if offset else 1 - fraction
    inside = (index >= 0) & (index < limit)
    return index.clamp(0, limit - 1), weight * inside


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, window: tuple[int, ...]) -> torch.Tensor:
    """(J, h, w) masks (J, P, P) resized to their (J, 4) boxes bilinearly (as F.interpolate
    with align_corners=False) over the pixels of `window` (x0, y0, x1, y1, integers); 0 outside
    their boxes."""
    x0, y0, x1, y1 = window
    size = masks.shape[-1]
    device = masks.device
    ys = torch.arange(y0, y1, device=device, dtype=boxes.dtype) + 0.5  # pixel centres
    xs = torch.arange(x0, x1, device=device, dtype=boxes.dtype) + 0.5
    # Pixel centre -> coordinate in each mask's grid, where bin b spans [b, b + 1).
    mask_ys = (ys[None] - boxes[:, 1:2]) / (boxes[:, 3:4] - boxes[:, 1:2]).clamp(min=1e-6) * size
    mask_xs = (xs[None] - boxes[:, 0:1]) / (boxes[:, 2:3] - boxes[:, 0:1]).clamp(min=1e-6) * size
    inside_y = (ys[None] >= boxes[:, 1:2]) & (ys[None] < boxes[:, 3:4])  # (J, h)
    inside_x = (xs[None] >= boxes[:, 0:1]) & (xs[None] < boxes[:, 2:3])  # (J, w)
    # Samples past the outer bin centres take the edge bin, as interpolate does.
    mask_ys, mask_xs = mask_ys.clamp(0.5, size - 0.5), mask_xs.clamp(0.5, size - 0.5)
    pasted = masks.new_zeros(len(masks), y1 - y0, x1 - x0)
    slots = torch.arange(len(masks), device=device)[:, None, None]
    for row_offset in (0, 1):
        rows, row_weights = neighbour(mask_ys, row_offset, size)
        for col_offset in (0, 1):
            cols, col_weights = neighbour(mask_xs, col_offset, size)
            picked = masks[slots, rows[:, :, None], cols[:, None, :]]  # (J, h, w)
            pasted += (
                picked * (row_weights * inside_y)[:, :, None] * (col_weights * inside_x)[:, None, :]
            )
    return pasted


def covering_window(boxes: torch.Tensor, image_size: tuple[int, int]) -> tuple[int, ...]:
    """The smallest integer window (x0, y0, x1, y1) inside the image holding every box."""
    height, width = image_size
    x0 = max(math.floor(float(boxes[:, 0].min())), 0)
    y0 = max(math.floor(float(boxes[:, 1].min())), 0)
    x1 = min(math.ceil(float(boxes[:, 2].max())), width)
    y1 = min(math.ceil(float(boxes[:, 3].max())), height)
    return x0, y0, max(x1, x0), max(y1, y0)


def vote_masks(
    boxes: torch.Tensor,
    probabilities: torch.Tensor,
    masks: torch.Tensor,
    chosen: torch.Tensor,
    classes: torch.Tensor,
    image_size: tuple[int, int],
    merge_iou: float,
    threshold: float,
) -> torch.Tensor:
    """Mask voting: (M, H, W) bool, one per detection (ROI chosen[m] of class classes[m]).

    Every ROI (boxes (R, 4)) overlapping the detection's box by IoU >= merge_iou votes with its
    mask of that class (masks (R, K, P, P) probabilities, pasted into its box and thresholded at
    `threshold`), weighted by its probability of the class (probabilities (R, K)) over the sum of
    the voters' probabilities; the voted mask is where the weighted votes reach `threshold`.
    """
    height, width = image_size
    voted = torch.zeros(len(chosen), height, width, dtype=torch.bool, device=boxes.device)
    overlaps = box_iou(boxes[chosen], boxes)  # (M, R)
    for slot, label in enumerate(classes.tolist()):  # a detection overlaps itself by 1
        voters = torch.nonzero(overlaps[slot] >= merge_iou).flatten()
        voters = voters if len(voters) else chosen[slot : slot + 1]
        weights = probabilities[voters, label]
        weights = weights / weights.sum().clamp(min=1e-12)
        window = covering_window(boxes[voters], image_size)
        x0, y0, x1, y1 = window
        pasted = paste_masks(masks[voters, label], boxes[voters], window)  # (J, h, w)
        votes = ((pasted >= threshold).to(weights.dtype) * weights[:, None, None]).sum(0)
        voted[slot, y0:y1, x0:x1] = votes >= threshold
    return voted


def select_detections(
    boxes: torch.Tensor,
    probabilities: torch.Tensor,
    score_threshold: float,
    nms_threshold: float,
    limit: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per foreground class: ROIs scoring at least `score_threshold`, box NMS; then the best
    `limit` over all classes. Their ROI indices, classes and scores, best first."""
    sizes = boxes[:, 2:] - boxes[:, :2]
    usable = (sizes >= 1).all(1)  # a box thinner than a pixel has no mask to vote
    parts: list[list[torch.Tensor]] = [[], [], []]
    for label in range(1, probabilities.shape[1]):
        scores = probabilities[:, label]
        candidates = torch.nonzero(usable & (scores >= score_threshold)).flatten()
        kept = candidates[nms(boxes[candidates], scores[candidates], nms_threshold, limit)]
        parts[0].append(kept)
        parts[1].append(torch.full_like(kept, label))
        parts[2].append(scores[kept])
    chosen, classes, scores = (torch.cat(part) for part in parts)
    order = scores.argsort(descending=True, stable=True)[:limit]
    return chosen[order], classes[order], scores[order]
