"""COCO's mask encodings, written out so that the data layer needs no pycocotools.

    RLE        run lengths over the mask read column by column (Fortran order), starting with a
               run of zeros (0 when the first pixel is set); `{"counts": [..], "size": [h, w]}`
    compressed the same counts as a string: each count (from the fourth on, as its difference to
               the count two before) in 5-bit groups, low first, 0x20 = "more groups follow",
               0x10 in the last group = negative, each group + 48 as one ASCII character
    polygon    [x1, y1, x2, y2, ...] in pixel coordinates, one list per part of an object

Polygons are rasterised exactly as pycocotools' `rleFrPoly` does (the boundary walked at five times
the resolution, then every column's crossings toggle the mask): the same pixels, so a model
trained here is scored by pycocotools against the very masks it learned from.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POLYGON_SCALE = 5  # pycocotools' upsampling of the boundary before it is snapped to pixels


def decode_counts(counts: Sequence[int], height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of uncompressed RLE counts (runs of 0, 1, 0, ... in column order)."""
    runs = np.asarray(counts, dtype=np.int64)
    if runs.sum() != height * width or (runs < 0).any():
        raise ValueError(f"the counts sum to {runs.sum()}, not height x width = {height * width}")
    values = np.arange(len(runs)) % 2 == 1  # odd runs are the mask's pixels
    flat = np.repeat(values, runs)  # (H * W,) in column order
    return flat.reshape(width, height).T


def encode_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed RLE counts of an (H, W) mask, as pycocotools' `encode` makes them."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)  # column order
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(edges).tolist()
    return [0, *runs] if flat.size and flat[0] else runs  # the first run counts zeros


def counts_from_string(text: str | bytes) -> list[int]:
    """The counts of a compressed RLE string (pycocotools' `rleFrString`)."""
    data = text.encode("ascii") if isinstance(text, str) else bytes(text)
    counts: list[int] = []
    position = 0
    while position < len(data):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(data):
                raise ValueError("the string ends in the middle of a count")
            group = data[position] - 48
            if not 0 <= group < 64:
                raise ValueError(f"character {chr(data[position])!r} is not an RLE character")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position, shift = position + 1, shift + 5
            if not more and group & 0x10:
                value |= -1 << shift  # the sign bit of the last group: a negative difference
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def counts_to_string(counts: Sequence[int]) -> str:
    """The compressed string of RLE counts (pycocotools' `rleToString`)."""
    characters = []
    for index, count in enumerate(counts):
        value = int(count) - (int(counts[index - 2]) if index > 2 else 0)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5  # arithmetic shift: a negative value ends at -1, a positive one at 0
            more = value != -1 if group & 0x10 else value != 0
            characters.append(chr(group + (0x20 if more else 0) + 48))
    return "".join(characters)


def polygon_mask(polygon: Sequence[float], height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of one COCO polygon [x1, y1, ...]: the same pixels as pycocotools."""
    xy = np.asarray(polygon, dtype=np.float64)[: len(polygon) // 2 * 2].reshape(-1, 2)
    if len(xy) == 0:
        return np.zeros((height, width), dtype=bool)
    # C's (int)(v + .5) truncates toward zero, also for points left of or above the image.
    corners = np.trunc(POLYGON_SCALE * xy + 0.5).astype(np.int64)
    corners = np.concatenate([corners, corners[:1]])  # closed: back to the first point
    walked = [_walk_edge(*corners[index], *corners[index + 1]) for index in range(len(xy))]
    u = np.concatenate([edge[0] for edge in walked])  # upsampled boundary, x
    v = np.concatenate([edge[1] for edge in walked])  # upsampled boundary, y
    return _fill_between_crossings(u, v, height, width)


def _walk_edge(xs: int, ys: int, xe: int, ye: int) -> tuple[np.ndarray, np.ndarray]:
    """Every upsampled point of one edge, stepping one unit along its longer axis."""
    dx, dy = abs(xe - xs), abs(ye - ys)
    flip = (dx >= dy and xs > xe) or (dx < dy and ys > ye)
    if flip:  # walk from the lower end, then reverse, as the C code does
        xs, xe, ys, ye = xe, xs, ye, ys
    length = max(dx, dy)
    steps = np.arange(length + 1)
    steps = length - steps if flip else steps
    if dx >= dy:
        slope = (ye - ys) / dx if dx else 0.0
        return steps + xs, np.trunc(ys + slope * steps + 0.5).astype(np.int64)
    slope = (xe - xs) / dy
    return np.trunc(xs + slope * steps + 0.5).astype(np.int64), steps + ys


def _fill_between_crossings(u: np.ndarray, v: np.ndarray, height: int, width: int) -> np.ndarray:
    """Where the boundary crosses a pixel column's centre line, the column toggles in or out."""
    moved = np.flatnonzero(u[1:] != u[:-1]) + 1
    column = np.where(u[moved] < u[moved - 1], u[moved], u[moved] - 1).astype(np.float64)
    column = (column + 0.5) / POLYGON_SCALE - 0.5
    row = np.minimum(v[moved], v[moved - 1]).astype(np.float64)
    row = np.ceil(np.clip((row + 0.5) / POLYGON_SCALE - 0.5, 0, height))
    kept = (np.floor(column) == column) & (column >= 0) & (column <= width - 1)
    toggles = column[kept].astype(np.int64) * height + row[kept].astype(np.int64)
    # Each toggle flips every pixel after it (column order); two at one place cancel.
    flips = np.bincount(toggles, minlength=height * width + 1)[: height * width]
    inside = np.cumsum(flips) % 2 == 1  # (H * W,) in column order
    return inside.reshape(width, height).T
