"""Generated instance data: overlapping and touching shapes with exact instance maps.

The pictures are those of fcnseg.data.synthetic (grainy tilted background, circles, rotated
rectangles and triangles in their classes' hue bands), with more shapes per image, kept as
parameters so that every map can be checked against geometry. Shapes are painted in turn: a later
one occludes an earlier one, so each ID's pixels are exactly its shape minus the later shapes; a
shape hidden entirely gets no ID, and IDs 1..N are the visible shapes in painting order.

In TOUCHING_SHARE of the images the last shape is moved, by whole pixels, until it touches an
earlier visible instance without covering it: boundaries that meet are where instance methods
fail (two nuclei merged into one), so every set has such pairs to measure.

Everything comes from `default_rng([seed, index])`, like synthetic.py: any item, in any order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from fcnseg.data.instances.maps import touching_pairs
from fcnseg.data.synthetic import (
    CIRCLE_RADIUS,
    CLASS_NAMES,
    DEFAULT_SIZE,
    RECTANGLE_HALF_SIDES,
    TRIANGLE_RADIUS,
    _shape_colour,
)

SHAPES_PER_IMAGE = (3, 9)  # drawn from [low, high)
TOUCHING_SHARE = 0.5  # images whose last shape is placed touching an earlier one
MIN_PLACED_AREA = 20  # pixels of a moved shape left in view, else it stays where it was drawn


@dataclass(frozen=True)
class Shape:
    """One painted shape: a circle (centre, radius) or a convex polygon (corners)."""

    label: int  # class: 1 circle, 2 rectangle, 3 triangle (CLASS_NAMES)
    centre: tuple[float, float]  # (y, x) in pixels, pixel centres at .5
    radius: float = 0.0  # circles only
    corners: tuple[tuple[float, float], ...] = ()  # (y, x) each, by increasing angle (x, y)

    def moved(self, down: int, right: int) -> Shape:
        corners = tuple((y + down, x + right) for y, x in self.corners)
        return replace(
            self, centre=(self.centre[0] + down, self.centre[1] + right), corners=corners
        )

    def mask(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(H, W) bool: the pixels whose centre (y, x) lies inside, edges included."""
        if not self.corners:
            return (y - self.centre[0]) ** 2 + (x - self.centre[1]) ** 2 <= self.radius**2
        inside = np.ones(y.shape, dtype=bool)
        for (y0, x0), (y1, x1) in zip(
            self.corners, self.corners[1:] + self.corners[:1], strict=True
        ):
            inside &= (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) >= 0  # left of each edge
        return inside


@dataclass
class InstanceSample:
    image: np.ndarray  # (H, W, 3) uint8
    ids: np.ndarray  # (H, W) int64, 0 background, 1..N the visible shapes in painting order
    classes: np.ndarray  # (N + 1,) int64: the class of each ID, 0 for background
    shapes: list[Shape]  # every painted shape, in painting order
    shape_ids: list[int]  # the ID of each shape, 0 where later shapes hide it entirely
    touching: tuple[int, int] | None  # the pair placed touching on purpose, if any

    def target(self) -> np.ndarray:
        """(2, H, W) int64 target of the instance task."""
        return np.stack([self.ids, self.classes[self.ids]])


def random_shape(rng: np.random.Generator, height: int, width: int) -> Shape:
    """A shape of a random class, sized as synthetic.py's, mostly in view."""
    label = int(rng.integers(1, len(CLASS_NAMES)))
    extent = min(height, width)
    centre = (rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width)
    if label == 1:
        return Shape(label, centre, radius=rng.uniform(*CIRCLE_RADIUS) * extent)
    if label == 2:
        half_height, half_width = rng.uniform(*RECTANGLE_HALF_SIDES, size=2) * extent
        angle = rng.uniform(0, np.pi)
        cos, sin = np.cos(angle), np.sin(angle)
        # (along, across) the rectangle's own axes, in increasing angle; rotated into (y, x)
        own = [(1, 1), (-1, 1), (-1, -1), (1, -1)]
        corners = [
            (
                centre[0] + u * half_width * sin + v * half_height * cos,
                centre[1] + u * half_width * cos - v * half_height * sin,
            )
            for u, v in own
        ]
        return Shape(label, centre, corners=tuple(corners))
    radius = rng.uniform(*TRIANGLE_RADIUS) * extent
    # Vertices about 120 degrees apart, jittered, by increasing angle as Shape.mask expects.
    angles = rng.uniform(0, 2 * np.pi) + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.3, 0.3, 3)
    corners = [(centre[0] + radius * np.sin(a), centre[1] + radius * np.cos(a)) for a in angles]
    return Shape(label, centre, corners=tuple(corners))


def _shift_to_touch(partner: np.ndarray, shape: np.ndarray, axis: int, side: int) -> int | None:
    """Pixels to move `shape` along `axis` (0 down, 1 right) so that it lies beside `partner` on
    `side` (+1 after, -1 before) in every shared line and meets it in one: touching, not covering.
    None when no line crosses both."""
    first, second = (partner, shape) if axis == 1 else (partner.T, shape.T)
    lines = first.any(axis=1) & second.any(axis=1)
    if not lines.any():
        return None
    positions = np.arange(first.shape[1])
    far = first.shape[1] * 4
    if side > 0:  # the shape's first pixel one after the partner's last, in the tightest line
        gaps = np.where(first, positions, -far).max(1) - np.where(second, positions, far).min(1)
        return int(gaps[lines].max()) + 1
    gaps = np.where(first, positions, far).min(1) - np.where(second, positions, -far).max(1)
    return int(gaps[lines].min()) - 1


def place_touching(
    rng: np.random.Generator, shape: Shape, partner: np.ndarray, y: np.ndarray, x: np.ndarray
) -> Shape | None:
    """`shape` moved by whole pixels to touch `partner` (a visible instance) from a random side,
    or from the opposite one when the first would take it out of view; None if neither fits."""
    height, width = y.shape
    rows, columns = np.nonzero(partner)
    across = (round(rows.mean() - shape.centre[0]), round(columns.mean() - shape.centre[1]))
    axis, side = int(rng.integers(0, 2)), int(rng.choice([-1, 1]))
    aligned = shape.moved(across[0], 0) if axis == 1 else shape.moved(0, across[1])
    # Measured on a canvas three times the image's size: the parts of the shape now out of view
    # come into it when it moves, and must not land on the partner.
    wide_y, wide_x = np.mgrid[-height : 2 * height, -width : 2 * width].astype(np.float64) + 0.5
    wide_partner = np.pad(partner, ((height, height), (width, width)))
    wide_shape = aligned.mask(wide_y, wide_x)
    for direction in (side, -side):
        shift = _shift_to_touch(wide_partner, wide_shape, axis, direction)
        if shift is None:
            return None
        placed = aligned.moved(shift, 0) if axis == 0 else aligned.moved(0, shift)
        if not (0 <= placed.centre[0] < height and 0 <= placed.centre[1] < width):
            continue
        mask = placed.mask(y, x)
        # Whole-pixel moves keep the raster, but floating point may still move an edge pixel
        # exactly on the boundary: check rather than trust.
        if not (mask & partner).any() and mask.sum() >= MIN_PLACED_AREA and _touches(partner, mask):
            return placed
    return None


def _touches(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether two masks have 4-adjacent pixels."""
    return bool(
        (first[:-1] & second[1:]).any()
        or (first[1:] & second[:-1]).any()
        or (first[:, :-1] & second[:, 1:]).any()
        or (first[:, 1:] & second[:, :-1]).any()
    )


def generate_instances(
    seed: int, index: int, size: tuple[int, int] = DEFAULT_SIZE
) -> InstanceSample:
    """Item `index` of seed `seed`: the picture, its instance map and the shapes behind it."""
    rng = np.random.default_rng([seed, index])
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5  # pixel centres
    background = rng.uniform(0, 255, size=3)
    tilt = rng.uniform(-40, 40, size=(2, 3)) / max(height, width)
    image = background + y[..., None] * tilt[0] + x[..., None] * tilt[1]  # (H, W, 3)
    shapes = [random_shape(rng, height, width) for _ in range(rng.integers(*SHAPES_PER_IMAGE))]
    touch = rng.random() < TOUCHING_SHARE
    painted = np.zeros((height, width), dtype=np.int64)  # index + 1 of the shape on top
    partner = 0
    for number, shape in enumerate(shapes, start=1):
        if touch and number == len(shapes):
            partner = int(rng.choice(np.unique(painted[painted > 0])))
            placed = place_touching(rng, shape, painted == partner, y, x)
            shapes[-1], partner = (placed, partner) if placed else (shape, 0)
        inside = shapes[number - 1].mask(y, x)
        image[inside] = _shape_colour(rng, shapes[number - 1].label, background)
        painted[inside] = number
    noise = np.where(painted[..., None] == 0, 18.0, 4.0)  # grainy background, smooth shapes
    image += rng.normal(0.0, 1.0, size=image.shape) * noise
    return _sample(np.clip(image, 0, 255).astype(np.uint8), painted, shapes, partner)


def _sample(
    image: np.ndarray, painted: np.ndarray, shapes: list[Shape], partner: int
) -> InstanceSample:
    """Renumber the visible shapes 1..N in painting order; hidden ones get no ID."""
    visible = np.unique(painted[painted > 0])
    renumber = np.zeros(len(shapes) + 1, dtype=np.int64)
    renumber[visible] = np.arange(1, len(visible) + 1)
    classes = np.array([0, *(shapes[number - 1].label for number in visible)], dtype=np.int64)
    touching = (int(renumber[partner]), int(renumber[len(shapes)])) if partner else None
    shape_ids = renumber[1:].tolist()
    return InstanceSample(image, renumber[painted], classes, shapes, shape_ids, touching)


class ShapesInstances:
    """`count` generated items: `load(index)` -> (image uint8 (H, W, 3), target int64 (2, H, W))."""

    def __init__(self, count: int, size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0) -> None:
        self.count, self.size, self.seed = count, (int(size[0]), int(size[1])), seed
        self.names = [f"instances_{seed}_{index:05d}" for index in range(count)]
        self.class_names = list(CLASS_NAMES)

    def __len__(self) -> int:
        return self.count

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        sample = generate_instances(self.seed, index, self.size)
        return sample.image, sample.target()

    def load_target(self, index: int) -> np.ndarray:
        return generate_instances(self.seed, index, self.size).target()

    def touching_pairs(self, index: int) -> list[tuple[int, int]]:
        """The 4-adjacent instance pairs of item `index` (for AP on touching objects)."""
        return touching_pairs(generate_instances(self.seed, index, self.size).ids)


def write_instance_shapes_folder(
    root: Path, splits: dict[str, int], size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0
) -> None:
    """Write generated splits in the instance folder layout (fcnseg.data.instances.folder):
    images/<name>.png, masks/<name>.png (16-bit IDs), classes/<name>.png (class map).

    Each split has its own seed offset, so that train and val never share an image.
    """
    for offset, (split, count) in enumerate(splits.items()):
        dataset = ShapesInstances(count, size, seed=seed + 1000 * offset)
        for folder in ("images", "masks", "classes"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for index, name in enumerate(dataset.names):
            sample = generate_instances(dataset.seed, index, dataset.size)
            Image.fromarray(sample.image).save(root / split / "images" / f"{name}.png")
            Image.fromarray(sample.ids.astype(np.uint16)).save(
                root / split / "masks" / f"{name}.png"
            )
            class_map = sample.classes[sample.ids].astype(np.uint8)
            Image.fromarray(class_map).save(root / split / "classes" / f"{name}.png")
