"""Sliding-window inference: overlapping tiles, run in batches, blended into one map of logits.

Tiles of tile_h x tile_w pixels start every `tile - overlap` pixels; the last tile of a row or a
column is moved back to end exactly at the image border, so no tile reaches past the image. Each
tile's logits are weighted by a window that is largest in its middle, where the network saw the
most context, and the blended map is sum(window * logits) / sum(window) at every pixel:

    gaussian   exp(-d^2 / 2 sigma^2) with sigma = tile / 8 (as nnU-Net does), d from the middle
    linear     1 in the middle, falling linearly to ~0 across the `overlap` pixels of each side

Tiles are run one row of tiles at a time. Once a row of tiles is done, every image row above
the next tile row's top is final, so `blended_bands` yields those rows and keeps only the rest:
at most tile_h x width logits live at once, which is what lets an image far larger than memory
be predicted and written band by band (see fcnseg.inference.streaming).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

BLENDS = ("gaussian", "linear")

RunTiles = Callable[[torch.Tensor], torch.Tensor]  # (B, C, h, w) -> (B, K, h, w) logits
ReadRows = Callable[[int, int], torch.Tensor]  # (top, bottom) -> (C, bottom - top, W) image


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of an image start; tile_h, tile_w never exceed the image."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    tops: tuple[int, ...]
    lefts: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.tops) * len(self.lefts)


def tile_starts(length: int, tile: int, stride: int) -> tuple[int, ...]:
    """0, stride, 2 stride, ... and a last start at length - tile, so the tiles cover 0..length."""
    if length <= tile:
        return (0,)
    starts = list(range(0, length - tile, stride))
    return (*starts, length - tile)


def make_grid(height: int, width: int, tile: int, overlap: float) -> TileGrid:
    """Square tiles of side `tile` (cut to the image), neighbours sharing `overlap` of a tile."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap is a fraction of a tile in [0, 1), got {overlap}")
    tile_h, tile_w = min(tile, height), min(tile, width)
    stride_h = max(1, round(tile_h * (1 - overlap)))
    stride_w = max(1, round(tile_w * (1 - overlap)))
    return TileGrid(
        height,
        width,
        tile_h,
        tile_w,
        tile_starts(height, tile_h, stride_h),
        tile_starts(width, tile_w, stride_w),
    )


def _profile(length: int, blend: str, ramp: int) -> torch.Tensor:
    """(length,) weights along one side of a tile, all > 0 so that every pixel gets a value."""
    position = torch.arange(length, dtype=torch.float32) + 0.5  # pixel centres
    if blend == "gaussian":
        sigma = length / 8
        weights = torch.exp(-((position - length / 2) ** 2) / (2 * sigma**2))
    elif blend == "linear":
        distance_to_edge = torch.minimum(position, length - position)
        weights = (distance_to_edge / max(ramp, 1)).clamp(max=1.0)
    else:
        raise ValueError(f"blend is one of {', '.join(BLENDS)}, got '{blend}'")
    return weights.clamp(min=1e-4)  # a border pixel covered by one tile edge must not be 0/0


def blend_window(grid: TileGrid, blend: str) -> torch.Tensor:
    """(tile_h, tile_w) weights: the outer product of the row and column profiles."""
    ramp_h = grid.tile_h - _stride(grid.tops, grid.tile_h)
    ramp_w = grid.tile_w - _stride(grid.lefts, grid.tile_w)
    return torch.outer(_profile(grid.tile_h, blend, ramp_h), _profile(grid.tile_w, blend, ramp_w))


def _stride(starts: tuple[int, ...], tile: int) -> int:
    return starts[1] - starts[0] if len(starts) > 1 else tile


def blended_bands(
    run: RunTiles, read_rows: ReadRows, grid: TileGrid, blend: str, tile_batch: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (top, logits (K, rows, W)) bands, top to bottom, that together cover the image.

    `read_rows(top, bottom)` gives the image's rows on demand; only one tile row of the image
    and one tile row of accumulated logits are held at a time.
    """
    window = blend_window(grid, blend)  # (tile_h, tile_w)
    carried: torch.Tensor | None = None  # (K + 1, r, W): sums for rows the next tile row shares
    for index, top in enumerate(grid.tops):
        strip = read_rows(top, top + grid.tile_h)  # (C, tile_h, W)
        sums = _run_tile_row(run, strip, grid, window, tile_batch)  # (K + 1, tile_h, W)
        if carried is not None:
            sums[:, : carried.shape[1]] += carried
        bottom = grid.tops[index + 1] if index + 1 < len(grid.tops) else grid.height
        done = bottom - top  # rows no later tile reaches: final
        yield top, sums[:-1, :done] / sums[-1:, :done]
        carried = sums[:, done:].clone()  # a copy, so that this row's sums can be freed


def _run_tile_row(
    run: RunTiles, strip: torch.Tensor, grid: TileGrid, window: torch.Tensor, tile_batch: int
) -> torch.Tensor:
    """(C, tile_h, W) strip -> (K + 1, tile_h, W): window-weighted logit sums, then the weights."""
    sums: torch.Tensor | None = None
    for first in range(0, len(grid.lefts), tile_batch):
        lefts = grid.lefts[first : first + tile_batch]
        tiles = torch.stack([strip[:, :, left : left + grid.tile_w] for left in lefts])
        logits = run(tiles)  # (B, K, tile_h, tile_w)
        if sums is None:
            sums = logits.new_zeros(logits.shape[1] + 1, grid.tile_h, grid.width)
        for left, tile_logits in zip(lefts, logits, strict=True):
            columns = slice(left, left + grid.tile_w)
            sums[:-1, :, columns] += tile_logits * window
            sums[-1, :, columns] += window
    assert sums is not None  # a grid has at least one tile
    return sums


def tiled_logits(
    run: RunTiles, image: torch.Tensor, tile: int, overlap: float, blend: str, tile_batch: int
) -> torch.Tensor:
    """(C, H, W) image -> (K, H, W) blended logits, all bands joined (for images that fit)."""
    grid = make_grid(image.shape[-2], image.shape[-1], tile, overlap)
    bands = blended_bands(run, lambda top, bottom: image[:, top:bottom], grid, blend, tile_batch)
    return torch.cat([band for _, band in bands], dim=1)
