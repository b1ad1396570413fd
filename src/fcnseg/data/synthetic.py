"""Generated shapes: the zero-download default dataset.

Each image is a grainy background of one random colour with a gentle gradient, over which 2-6
smooth shapes (circles, rotated rectangles, triangles) of random colours are painted in turn, later
ones covering earlier ones. The mask records exactly which shape is visible at each pixel, so
labels are exact. Each class has its own band of hues (circles reddish, rectangles greenish,
triangles bluish) at random saturation and brightness, so colour hints at the class and shape
settles it. Shapes are a fifth to a half of the shorter side across: on a small image a tiny
shape is mostly boundary, and IoU would then grade edge pixels rather than recognition (a one-
pixel error around a 10-pixel-radius circle costs 20% of its IoU).

Everything is drawn with numpy from `default_rng([seed, index])`: the same seed gives the same
data on any machine, and item `index` can be made on its own, in any order, by any worker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = ("background", "circle", "rectangle", "triangle")
DEFAULT_SIZE = (180, 240)  # (H, W), deliberately not multiples of 32


def generate_sample(
    seed: int, index: int, size: tuple[int, int] = DEFAULT_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Image uint8 (H, W, 3) and mask uint8 (H, W) with labels 0..3 (see CLASS_NAMES)."""
    rng = np.random.default_rng([seed, index])
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5  # pixel centres
    background = rng.uniform(0, 255, size=3)
    tilt = rng.uniform(-40, 40, size=(2, 3)) / max(height, width)
    image = background + y[..., None] * tilt[0] + x[..., None] * tilt[1]  # (H, W, 3)
    mask = np.zeros((height, width), dtype=np.uint8)
    for _ in range(rng.integers(2, 7)):
        label = int(rng.integers(1, len(CLASS_NAMES)))
        inside = DRAW[label](rng, y, x, min(height, width))
        image[inside] = _shape_colour(rng, label, background)
        mask[inside] = label
    # Grainy background, smooth shapes: like objects in front of a textured scene, and the
    # local cue that tells a shape's inside from the background when their colours are close.
    noise = np.where(mask[..., None] == 0, 18.0, 4.0)
    image += rng.normal(0.0, 1.0, size=image.shape) * noise
    return np.clip(image, 0, 255).astype(np.uint8), mask


# Each class paints with its own band of hues (red, green, blue, each +-0.1 of the hue circle)
# at random saturation and brightness: as real classes have typical colours, and so that a
# small model learns the classes within the demo's three CPU minutes; shape alone separates
# them where colours mislead (shading, overlaps, the background's own colour).
HUE_CENTRES = {1: 0.0, 2: 1 / 3, 3: 2 / 3}


def _shape_colour(rng: np.random.Generator, label: int, background: np.ndarray) -> np.ndarray:
    """A colour of the class's hue band, far enough from the background to be seen."""
    while True:
        hue = (HUE_CENTRES[label] + rng.uniform(-0.1, 0.1)) % 1.0
        colour = _hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))
        if np.abs(colour - background).sum() > 90:
            return colour


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    """RGB in [0, 255] of an HSV colour (all three in [0, 1])."""
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6  # the standard formula's phase of R, G, B
    channel = value - value * saturation * np.clip(np.minimum(k, 4 - k), 0, 1)
    return 255.0 * channel


# Shape sizes as shares of the image's shorter side (drawn uniformly from each range).
CIRCLE_RADIUS = (0.12, 0.22)
RECTANGLE_HALF_SIDES = (0.09, 0.19)
TRIANGLE_RADIUS = (0.15, 0.28)  # centre to vertex


def _centre(rng: np.random.Generator, y: np.ndarray) -> tuple[float, float]:
    """A centre away from the border, so that most of each shape is in view."""
    height, width = y.shape
    return rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width


def _circle(rng: np.random.Generator, y: np.ndarray, x: np.ndarray, extent: int) -> np.ndarray:
    cy, cx = _centre(rng, y)
    radius = rng.uniform(*CIRCLE_RADIUS) * extent
    return (y - cy) ** 2 + (x - cx) ** 2 <= radius**2


def _rectangle(rng: np.random.Generator, y: np.ndarray, x: np.ndarray, extent: int) -> np.ndarray:
    cy, cx = _centre(rng, y)
    half_h, half_w = rng.uniform(*RECTANGLE_HALF_SIDES, size=2) * extent
    angle = rng.uniform(0, np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    u = (x - cx) * cos + (y - cy) * sin  # coordinates along the rectangle's own axes
    v = -(x - cx) * sin + (y - cy) * cos
    return (np.abs(u) <= half_w) & (np.abs(v) <= half_h)


def _triangle(rng: np.random.Generator, y: np.ndarray, x: np.ndarray, extent: int) -> np.ndarray:
    cy, cx = _centre(rng, y)
    radius = rng.uniform(*TRIANGLE_RADIUS) * extent
    # Vertices about 120 degrees apart, jittered: every triangle is clearly a triangle.
    angles = rng.uniform(0, 2 * np.pi) + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.3, 0.3, 3)
    vy, vx = cy + radius * np.sin(angles), cx + radius * np.cos(angles)
    inside = np.ones(y.shape, dtype=bool)
    for i in range(3):  # the counter-clockwise side of each edge
        j = (i + 1) % 3
        cross = (vx[j] - vx[i]) * (y - vy[i]) - (vy[j] - vy[i]) * (x - vx[i])
        inside &= cross >= 0
    return inside


DRAW = {1: _circle, 2: _rectangle, 3: _triangle}


class ShapesDataset:
    """`count` generated samples; `load(index)` draws sample `index` of seed `seed` on demand."""

    def __init__(self, count: int, size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0) -> None:
        self.count, self.size, self.seed = count, tuple(size), seed
        self.names = [f"shapes_{seed}_{index:05d}" for index in range(count)]
        self.class_names = list(CLASS_NAMES)

    def __len__(self) -> int:
        return self.count

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image, mask = generate_sample(self.seed, index, self.size)
        return image, mask.astype(np.int64)


def write_shapes_folder(
    root: Path, splits: dict[str, int], size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0
) -> None:
    """Write generated splits in the folder layout: <root>/<split>/images|masks/<name>.png.

    Each split has its own seed offset, so that train and val never share an image.
    """
    for offset, (split, count) in enumerate(splits.items()):
        dataset = ShapesDataset(count, size, seed=seed + 1000 * offset)
        for folder in ("images", "masks"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for index, name in enumerate(dataset.names):
            image, mask = generate_sample(dataset.seed, index, dataset.size)
            Image.fromarray(image).save(root / split / "images" / f"{name}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{name}.png")
