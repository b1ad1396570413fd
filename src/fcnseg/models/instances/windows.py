"""InstanceFCN's sliding windows: their geometry, the assembling module, and training samples.

Geometry. The score maps have stride s (8). A window of L pixels spans m = L / s feature cells;
the window at feature position (y, x) covers the cells [y - m//2, y - m//2 + m) (and likewise in
x), i.e. the pixels [(y - m//2) s, (y - m//2) s + L). Feature cell r covers the pixels
[r s, (r + 1) s), as `F.interpolate(align_corners=False)` places it, so for odd m the window is
centred on cell (y, x) and for even m on the corner between four cells.

Assembling (the paper's Sec. 3.1). The window is cut into a k x k grid; the feature cells in grid
cell (i, j) are copied from score map i * k + j. The paper's m = 21, k = 5 does not divide
evenly, and it does not say how it rounds: here an offset u along a side belongs to the grid cell
holding its centre, floor((u + 1/2) k / m), which keeps the grid symmetric (for m < k, too).
A window reaching past the map reads the map's nearest edge cell, as `F.interpolate` does.

Which windows are positive (the paper follows DeepMask: an object centred in the window, fully
inside it, at the window's scale). Ours, with b and d the centre and longest side of an
instance's box:
    centred   |b - window centre| <= max(s / 2, L / 10) on both axes (s / 2: the nearest grid
              position always qualifies, however the object lies between positions)
    inside    the box lies entirely inside the window
    scale     d >= 0.4 L (with `inside`, an object fills 0.4 L to L - 2 * offset of the window)
A window positive for several instances (touching ones) is given the one nearest its centre.
Every other window whose centre lies in the image is negative; there is no "don't care" band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fcnseg.errors import FcnsegError

SMALLEST_FILL = 0.4  # an instance's longest side is at least this fraction of its window
CENTRE_TOLERANCE = 0.1  # ... and its centre at most this fraction of the window off-centre
NEGATIVE, OUTSIDE = -1, -2  # window labels besides the index of the instance it is positive for


def grid_cells(window_cells: int, grid_size: int) -> torch.Tensor:
    """(m,) the grid cell (0..k-1) of each of the m offsets along a window side."""
    offsets = torch.arange(window_cells)
    return (2 * offsets + 1) * grid_size // (2 * window_cells)


def window_tops(positions: torch.Tensor, window_cells: int, stride: int) -> torch.Tensor:
    """The first pixel row (or column) of the windows at these feature rows (or columns)."""
    return (positions - window_cells // 2) * stride


def assemble(
    score_maps: torch.Tensor,
    images: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    window_cells: int,
) -> torch.Tensor:
    """The assembling module: (W, m, m) windows of (N, k*k, h, w) score maps, one gather.

    Window i is at feature position (rows[i], cols[i]) of image images[i]. Parameter-free: the
    gradient of each assembled value flows back to the one score it was copied from.
    """
    _, channels, height, width = score_maps.shape
    grid_size = math.isqrt(channels)
    if grid_size * grid_size != channels:
        raise FcnsegError(f"assembling needs k*k score maps, got {channels}.")
    device = score_maps.device
    cells = grid_cells(window_cells, grid_size).to(device)  # (m,)
    channel = cells[:, None] * grid_size + cells[None, :]  # (m, m)
    offsets = torch.arange(window_cells, device=device) - window_cells // 2  # (m,)
    feature_rows = (rows[:, None] + offsets).clamp(0, height - 1)  # (W, m)
    feature_cols = (cols[:, None] + offsets).clamp(0, width - 1)  # (W, m)
    return score_maps[
        images[:, None, None], channel[None], feature_rows[:, :, None], feature_cols[:, None, :]
    ]  # (W, m, m)


def crop_windows(
    maps: torch.Tensor, images: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, L, L) crops of (N, H, W) maps at the given pixel origins, and where they are inside."""
    height, width = maps.shape[-2:]
    pixel = torch.arange(size, device=maps.device)
    rows, cols = tops[:, None] + pixel, lefts[:, None] + pixel  # (W, L) each
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None]
    values = maps[
        images[:, None, None],
        rows.clamp(0, height - 1)[:, :, None],
        cols.clamp(0, width - 1)[:, None, :],
    ]
    return values, inside  # (W, L, L) each


def instance_boxes(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The instance IDs of an (H, W) ID map and their boxes (J, 4): y0, x0, y1, x1 half-open."""
    rows, cols = torch.nonzero(ids > 0, as_tuple=True)
    instances, inverse = ids[rows, cols].unique(return_inverse=True)
    count = len(instances)
    big = ids.shape[0] + ids.shape[1]
    y0 = torch.full((count,), big, device=ids.device).scatter_reduce(0, inverse, rows, "amin")
    x0 = torch.full((count,), big, device=ids.device).scatter_reduce(0, inverse, cols, "amin")
    y1 = torch.zeros(count, dtype=torch.int64, device=ids.device)
    x1 = torch.zeros_like(y1)
    y1 = y1.scatter_reduce(0, inverse, rows + 1, "amax")
    x1 = x1.scatter_reduce(0, inverse, cols + 1, "amax")
    return instances, torch.stack([y0, x0, y1, x1], dim=1)


def axis_fit(
    starts: torch.Tensor, ends: torch.Tensor, tops: torch.Tensor, size: int, tolerance: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Along one axis: (positions, J) whether each box is centred in and inside each window,
    and how far its centre is from the window's centre."""
    offset = ((starts + ends)[None] / 2 - (tops[:, None] + size / 2)).abs()  # (P, J)
    inside = (starts[None] >= tops[:, None]) & (ends[None] <= tops[:, None] + size)
    return (offset <= tolerance) & inside, offset


def label_windows(
    boxes: torch.Tensor,
    window_sizes: tuple[int, ...],
    stride: int,
    feature_size: tuple[int, int],
    image_size: tuple[int, int],
) -> torch.Tensor:
    """(S, h, w) labels of every window: the index of the instance (row of `boxes`) it is
    positive for, NEGATIVE, or OUTSIDE when its centre is not in the image (padding)."""
    height, width = feature_size
    y0, x0, y1, x1 = boxes.T.float()  # (J,) each
    labels = []
    for size in window_sizes:
        cells = size // stride
        tops = window_tops(torch.arange(height, device=boxes.device), cells, stride)  # (h,)
        lefts = window_tops(torch.arange(width, device=boxes.device), cells, stride)  # (w,)
        tolerance = max(stride / 2, CENTRE_TOLERANCE * size)
        row_fit, row_offset = axis_fit(y0, y1, tops, size, tolerance)  # (h, J)
        col_fit, col_offset = axis_fit(x0, x1, lefts, size, tolerance)  # (w, J)
        scale_fit = torch.maximum(y1 - y0, x1 - x0) >= SMALLEST_FILL * size  # (J,)
        positive = row_fit[:, None] & col_fit[None] & scale_fit  # (h, w, J)
        offset = torch.maximum(row_offset[:, None], col_offset[None])  # (h, w, J)
        label = torch.full((height, width), NEGATIVE, device=boxes.device)
        if len(boxes):
            nearest = offset.masked_fill(~positive, math.inf).argmin(-1)  # (h, w)
            label = torch.where(positive.any(-1), nearest, label)
        inside = centres_inside(size, stride, feature_size, image_size, boxes.device)
        labels.append(label.masked_fill(~inside, OUTSIDE))
    return torch.stack(labels)  # (S, h, w)


def centres_inside(
    size: int,
    stride: int,
    feature_size: tuple[int, int],
    image_size: tuple[int, int],
    device: torch.device | None = None,
) -> torch.Tensor:
    """(h, w) whether the window of `size` pixels at each position has its centre in the image:
    the others are centred in the padding, which has no objects to find (or learn)."""
    cells = size // stride
    rows = torch.arange(feature_size[0], device=device)
    cols = torch.arange(feature_size[1], device=device)
    row_inside = window_tops(rows, cells, stride) + size / 2 < image_size[0]  # (h,)
    col_inside = window_tops(cols, cells, stride) + size / 2 < image_size[1]  # (w,)
    return row_inside[:, None] & col_inside[None]


def sample_labels(labels: torch.Tensor, windows_per_image: int) -> torch.Tensor:
    """Flat indices into (S, h, w) labels: up to half the windows positive, at random, and as
    many negatives (the paper's 1:1), but at least 1/8 of them so that images without objects
    still teach the objectness branch."""
    flat = labels.flatten()
    positives = torch.nonzero(flat >= 0).flatten()
    negatives = torch.nonzero(flat == NEGATIVE).flatten()
    positive_count = min(len(positives), windows_per_image // 2)
    negative_count = min(len(negatives), max(positive_count, windows_per_image // 8))
    chosen_positives = positives[
        torch.randperm(len(positives), device=flat.device)[:positive_count]
    ]
    chosen_negatives = negatives[
        torch.randperm(len(negatives), device=flat.device)[:negative_count]
    ]
    return torch.cat([chosen_positives, chosen_negatives])


@dataclass
class SampledWindows:
    """The windows a training batch is scored on: W windows, each at (image, size, row, col)."""

    images: torch.Tensor  # (W,) int64
    sizes: torch.Tensor  # (W,) int64, index into window_sizes
    rows: torch.Tensor  # (W,) int64, feature row
    cols: torch.Tensor  # (W,) int64, feature column
    instances: torch.Tensor  # (W,) int64, the instance ID of a positive window, 0 for a negative

    @property
    def positive(self) -> torch.Tensor:
        return self.instances > 0


def sample_windows(
    ids: torch.Tensor,
    window_sizes: tuple[int, ...],
    stride: int,
    feature_size: tuple[int, int],
    windows_per_image: int,
) -> SampledWindows:
    """Training windows for a batch of (N, H, W) instance ID maps (0 = background)."""
    height, width = feature_size
    parts: list[list[torch.Tensor]] = [[], [], [], [], []]
    for image, image_ids in enumerate(ids):
        instances, boxes = instance_boxes(image_ids)
        labels = label_windows(boxes, window_sizes, stride, feature_size, image_ids.shape)
        chosen = sample_labels(labels, windows_per_image)  # (W_n,)
        label = labels.flatten()[chosen]
        instance = torch.where(label >= 0, instances[label.clamp(min=0)], 0) if len(boxes) else 0
        parts[0].append(torch.full_like(chosen, image))
        parts[1].append(chosen // (height * width))
        parts[2].append(chosen // width % height)
        parts[3].append(chosen % width)
        parts[4].append(torch.zeros_like(chosen) + instance)
    return SampledWindows(*(torch.cat(part) for part in parts))
