import numpy as np
import pytest

from fcnseg.data import synthetic
from fcnseg.data.synthetic import CLASS_NAMES, ShapesDataset, generate_sample, write_shapes_folder


def test_same_seed_same_data_and_different_seeds_differ():
    first, again = generate_sample(3, 5), generate_sample(3, 5)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    other = generate_sample(4, 5)
    assert not np.array_equal(first[0], other[0])


def test_items_are_independent_of_order():
    dataset = ShapesDataset(count=6, seed=1)
    backwards = [dataset.load(i) for i in reversed(range(6))][::-1]
    for index, (image, mask) in enumerate(backwards):
        image_again, mask_again = dataset.load(index)
        assert np.array_equal(image, image_again) and np.array_equal(mask, mask_again)


def test_default_size_is_not_a_multiple_of_32_and_all_classes_occur():
    image, mask = generate_sample(0, 0)
    assert image.shape == (180, 240, 3) and image.dtype == np.uint8
    assert mask.shape == (180, 240) and 180 % 32 and 240 % 32
    seen = set()
    for index in range(20):
        seen |= set(np.unique(generate_sample(0, index)[1]).tolist())
    assert seen == set(range(len(CLASS_NAMES)))


def _check_area(inside: np.ndarray, area: float, fully_inside: bool) -> None:
    if fully_inside:
        assert inside.sum() == pytest.approx(area, rel=0.02)
    else:  # clipped by the image border
        assert inside.sum() <= area * 1.02


@pytest.mark.parametrize("seed", range(4))
def test_rasterised_areas_match_the_geometry(seed: int):
    # Replay each drawer's random draws by hand and compare its pixel count with the shape's
    # exact area: pi r^2 for circles, 4 a b for rectangles, the shoelace formula for triangles.
    size = 400
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5

    inside = synthetic._circle(np.random.default_rng(seed), y, x, size)
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.9) * size
    r = rng.uniform(*synthetic.CIRCLE_RADIUS) * size
    _check_area(inside, np.pi * r**2, r < min(cy, cx, size - cy, size - cx))

    inside = synthetic._rectangle(np.random.default_rng(seed), y, x, size)
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.9) * size
    half_h, half_w = rng.uniform(*synthetic.RECTANGLE_HALF_SIDES, size=2) * size
    reach = np.hypot(half_h, half_w)
    _check_area(inside, 4 * half_h * half_w, reach < min(cy, cx, size - cy, size - cx))

    inside = synthetic._triangle(np.random.default_rng(seed), y, x, size)
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.9) * size
    r = rng.uniform(*synthetic.TRIANGLE_RADIUS) * size
    angles = rng.uniform(0, 2 * np.pi) + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.3, 0.3, 3)
    vy, vx = cy + r * np.sin(angles), cx + r * np.cos(angles)
    area = 0.5 * abs(np.dot(vx, np.roll(vy, -1)) - np.dot(vy, np.roll(vx, -1)))
    _check_area(inside, area, r < min(cy, cx, size - cy, size - cx))


def test_later_shapes_cover_earlier_ones():
    image, mask = generate_sample(0, 2, size=(60, 80))
    assert set(np.unique(mask).tolist()) <= {0, 1, 2, 3}
    # Every labelled shape pixel differs clearly from the noisy background plane nearby.
    background = image[mask == 0].astype(float).mean(axis=0)
    shapes = image[mask > 0].astype(float)
    assert np.abs(shapes - background).sum(axis=1).mean() > 60


def test_write_folder_layout(tmp_path):
    write_shapes_folder(tmp_path, {"train": 3, "val": 2}, size=(21, 33), seed=0)
    train = sorted((tmp_path / "train" / "images").iterdir())
    val = sorted((tmp_path / "val" / "masks").iterdir())
    assert len(train) == 3 and len(val) == 2
    assert {p.name for p in train} == {p.name for p in (tmp_path / "train" / "masks").iterdir()}
    assert not {p.name for p in train} & {p.name for p in val}  # train and val never share items
