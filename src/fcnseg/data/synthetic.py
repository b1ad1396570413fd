"""Generated shapes: the zero-download default dataset.

Each image is a noisy background of one random colour with a gentle gradient, over which 1-4
shapes (circles, rotated rectangles, triangles) of random colours are painted in turn, later
ones covering earlier ones. The mask records exactly which shape is visible at each pixel, so
labels are exact. Colours are random, so the classes differ by geometry, not colour: the model
has to learn shape.

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
    for _ in range(rng.integers(1, 5)):
        label = int(rng.integers(1, len(CLASS_NAMES)))
        inside = DRAW[label](rng, y, x, min(height, width))
        image[inside] = _distinct_colour(rng, background)
        mask[inside] = label
    image += rng.normal(0.0, 10.0, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def _distinct_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour far enough from the background that the shape is visible at all."""
    while True:
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - background).sum() > 90:
            return colour


def _centre(rng: np.random.Generator, y: np.ndarray) -> tuple[float, float]:
    """A centre away from the border, so that most of each shape is in view."""
    height, width = y.shape
    return rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width


def _circle(rng: np.random.Generator, y: np.ndarray, x: np.ndarray, extent: int) -> np.ndarray:
    cy, cx = _centre(rng, y)
    radius = rng.uniform(0.1, 0.22) * extent
    return (y - cy) ** 2 + (x - cx) ** 2 <= radius**2


def _rectangle(rng: np.random.Generator, y: np.ndarray, x: np.ndarray, extent: int) -> np.ndarray:
    cy, cx = _centre(rng, y)
    half_h, half_w = rng.uniform(0.08, 0.2, size=2) * extent
    angle = rng.uniform(0, np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    u = (x - cx) * cos + (y - cy) * sin  # coordinates along the rectangle's own axes
    v = -(x - cx) * sin + (y - cy) * cos
    return (np.abs(u) <= half_w) & (np.abs(v) <= half_h)


def _triangle(rng: np.random.Generator, y: np.ndarray, x: np.ndarray, extent: int) -> np.ndarray:
    cy, cx = _centre(rng, y)
    radius = rng.uniform(0.15, 0.3) * extent
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
