"""Instances drawn for people, in numpy only: each in its own colour with its contour.

Class colours cannot tell two touching circles apart, so every instance ID takes a colour of its
own. The hues skip red and yellow (0-80 degrees), which the report keeps for its marks: a red
contour is a false prediction, a dashed yellow one a missed object (fcnseg.report).

Drawing works on ID maps (H, W) rather than stacks of masks: an (H, W) map costs the same for
3 instances or 300, where (M, H, W) masks of a large image would not fit in memory.
"""

from __future__ import annotations

import colorsys

import numpy as np

FALSE_COLOUR = (255, 0, 0)  # a prediction that matches no true instance
MISSED_COLOUR = (255, 230, 0)  # a true instance no prediction matches
GOLDEN_RATIO = (5**0.5 - 1) / 2  # consecutive IDs get hues far apart, and never repeat exactly
HUE_RANGE = (90 / 360, 330 / 360)  # green through blue to magenta: no red, no yellow


def instance_colours(count: int) -> np.ndarray:
    """(count + 1, 3) uint8: the colour of IDs 0..count (0, background, is black)."""
    colours = np.zeros((count + 1, 3), dtype=np.uint8)
    low, high = HUE_RANGE
    for index in range(1, count + 1):
        hue = low + (high - low) * ((index * GOLDEN_RATIO) % 1.0)
        value = 1.0 if index % 2 else 0.75  # neighbours in hue differ in brightness too
        red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, value)
        colours[index] = (round(255 * red), round(255 * green), round(255 * blue))
    return colours


def id_contours(ids: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of an instance with a 4-neighbour of another ID (or the border), so
    touching instances each keep their own edge."""
    padded = np.pad(ids, 1, constant_values=0)  # (H + 2, W + 2)
    centre = padded[1:-1, 1:-1]
    differs = (
        (padded[:-2, 1:-1] != centre)
        | (padded[2:, 1:-1] != centre)
        | (padded[1:-1, :-2] != centre)
        | (padded[1:-1, 2:] != centre)
    )
    return differs & (centre > 0)


def dashed(line: np.ndarray, period: int = 6) -> np.ndarray:
    """The contour cut into dashes: kept on diagonal stripes period / 2 pixels wide."""
    rows, columns = np.indices(line.shape)
    return line & (((rows + columns) // max(period // 2, 1)) % 2 == 0)


def grey_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 of an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image."""
    if image.ndim == 2 or image.shape[-1] == 1:
        return np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
    return image[..., :3]


def paint_ids(image: np.ndarray, ids: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) uint8: each ID of `ids` (H, W) blended over the image in its own colour, its
    contour drawn in that colour at full strength."""
    ids = np.asarray(ids, dtype=np.int64)
    colours = instance_colours(int(ids.max(initial=0)))
    picture = grey_rgb(image).astype(np.float32)
    inside = ids > 0
    picture[inside] = (1 - alpha) * picture[inside] + alpha * colours[ids[inside]]
    edges = id_contours(ids)
    picture[edges] = colours[ids[edges]]
    return picture.astype(np.uint8)


def mark_ids(
    picture: np.ndarray,
    ids: np.ndarray,
    chosen: np.ndarray,
    colour: tuple[int, int, int],
    dash: bool = False,
) -> np.ndarray:
    """`picture` with the contours of the IDs where `chosen` (max ID + 1,) bool is True drawn
    in `colour`, dashed or whole and two pixels wide (inside and just outside the edge)."""
    ids = np.asarray(ids, dtype=np.int64)
    selected = np.where(chosen[np.clip(ids, 0, len(chosen) - 1)] & (ids > 0), ids, 0)
    line = id_contours(selected)
    outer = np.zeros_like(line)  # the ring just outside: the mark stays visible on any fill
    outer[1:] |= line[:-1]
    outer[:-1] |= line[1:]
    outer[:, 1:] |= line[:, :-1]
    outer[:, :-1] |= line[:, 1:]
    line = line | (outer & (selected == 0))
    marked = picture.copy()
    marked[dashed(line) if dash else line] = colour
    return marked


def renumbered(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IDs made consecutive 1..M in their order, and the old ID of each new one (M,)."""
    kept = np.unique(ids[ids > 0])
    lookup = np.zeros(int(ids.max(initial=0)) + 1, dtype=np.int64)
    lookup[kept] = np.arange(1, len(kept) + 1)
    return lookup[ids], kept
