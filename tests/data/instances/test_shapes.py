"""Generated instance data: seeded, and every ID exactly its shape minus the shapes painted later.

The reference masks come from matplotlib's point-in-polygon test and the circle's equation, not
from the generator's own rasteriser.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.path import Path as Outline

from fcnseg.config import DataConfig
from fcnseg.data.instances.folder import InstanceFolder
from fcnseg.data.instances.maps import touching_pairs
from fcnseg.data.instances.shapes import (
    Shape,
    ShapesInstances,
    generate_instances,
    write_instance_shapes_folder,
)

SIZE = (70, 90)  # not multiples of 32


def reference_mask(shape: Shape, size: tuple[int, int]) -> np.ndarray:
    """Pixels whose centre is inside the shape, by an independent method."""
    y, x = np.mgrid[0 : size[0], 0 : size[1]] + 0.5
    if not shape.corners:
        return (y - shape.centre[0]) ** 2 + (x - shape.centre[1]) ** 2 <= shape.radius**2
    outline = Outline([(cx, cy) for cy, cx in shape.corners])
    points = np.stack([x.ravel(), y.ravel()], axis=1)
    return outline.contains_points(points).reshape(size)


def test_same_seed_same_item_and_other_seeds_differ():
    first, again = generate_instances(2, 7, SIZE), generate_instances(2, 7, SIZE)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.ids, again.ids)
    assert not np.array_equal(first.ids, generate_instances(3, 7, SIZE).ids)
    data = ShapesInstances(5, SIZE, seed=1)
    backwards = [data.load(index) for index in reversed(range(5))][::-1]
    for index, (image, target) in enumerate(backwards):
        assert np.array_equal(target, data.load(index)[1]) and image.shape == (*SIZE, 3)


@pytest.mark.parametrize("index", range(12))
def test_every_id_is_its_shape_minus_later_shapes(index: int):
    sample = generate_instances(0, index, SIZE)
    masks = [reference_mask(shape, SIZE) for shape in sample.shapes]
    covered_later = np.zeros(SIZE, dtype=bool)
    for shape, mask, number in reversed(
        list(zip(sample.shapes, masks, sample.shape_ids, strict=True))
    ):
        visible = mask & ~covered_later
        if number == 0:
            assert not visible.any()  # hidden entirely: no ID
        else:
            assert np.array_equal(sample.ids == number, visible)
            assert sample.classes[number] == shape.label
        covered_later |= mask
    assert np.array_equal(sample.ids > 0, covered_later)  # nothing else is an instance
    count = int(sample.ids.max())
    assert set(np.unique(sample.ids).tolist()) == set(range(count + 1))  # contiguous
    target = sample.target()
    assert np.array_equal(target[1], sample.classes[sample.ids]) and target.dtype == np.int64


def test_touching_pairs_are_placed_on_purpose_and_found():
    placed = 0
    for index in range(16):
        sample = generate_instances(0, index, SIZE)
        pairs = touching_pairs(sample.ids)
        for a, b in pairs:  # each pair found really has a pixel of a beside a pixel of b
            first, second = sample.ids == a, sample.ids == b
            beside = (first[:, :-1] & second[:, 1:]) | (first[:, 1:] & second[:, :-1])
            above = (first[:-1] & second[1:]) | (first[1:] & second[:-1])
            assert beside.any() or above.any()
        if sample.touching is not None:
            placed += 1
            a, b = sample.touching
            assert (a, b) in pairs
            last = reference_mask(sample.shapes[-1], SIZE)
            earlier = reference_mask(sample.shapes[sample.shape_ids.index(a)], SIZE)
            # Touching, not overlapping: the moved shape covers no pixel of its partner.
            assert not (last & (sample.ids == a)).any() and (earlier & ~last).any()
    assert placed >= 4  # about half of the images


def test_classes_of_every_kind_occur():
    seen = set()
    for index in range(10):
        seen |= set(generate_instances(0, index, SIZE).classes[1:].tolist())
    assert seen == {1, 2, 3}


def test_written_folder_reads_back_as_generated(tmp_path: Path):
    write_instance_shapes_folder(tmp_path, {"train": 2, "val": 1}, SIZE, seed=3)
    config = DataConfig(kind="folder", root=str(tmp_path), num_classes=4)
    train = InstanceFolder(config, "train")
    assert len(train) == 2 and train.multi_class
    for index in range(2):
        image, target = train.load(index)
        sample = generate_instances(3, index, SIZE)
        assert np.array_equal(image, sample.image) and np.array_equal(target, sample.target())
    val = InstanceFolder(config, "val")
    assert np.array_equal(val.load(0)[1], generate_instances(1003, 0, SIZE).target())
