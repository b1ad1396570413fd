"""COCO RLE and polygons against hand-computed masks and pycocotools (the reference).

Agreement with pycocotools is required to be exact, pixel for pixel and character for character:
the polygon rasteriser follows its algorithm rather than approximating it with a fill.
"""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from fcnseg.data.instances.rle import (
    counts_from_string,
    counts_to_string,
    decode_counts,
    encode_counts,
    polygon_mask,
)

# pycocotools calls numpy's __array__ the pre-2.0 way; its warning is not about this code.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def reference_polygon(polygon: list[float], height: int, width: int) -> np.ndarray:
    return coco_mask.decode(coco_mask.frPyObjects([polygon], height, width))[..., 0].astype(bool)


def test_counts_by_hand_are_column_major_and_start_with_zeros():
    mask = np.array([[0, 1, 1], [0, 1, 0]], dtype=bool)
    # Columns read top to bottom: 0 0 | 1 1 | 1 0 -> two zeros, three ones, one zero.
    assert encode_counts(mask) == [2, 3, 1]
    assert np.array_equal(decode_counts([2, 3, 1], 2, 3), mask)
    starts_set = np.array([[1, 0], [1, 0]], dtype=bool)
    assert encode_counts(starts_set) == [0, 2, 2]  # an empty first run of zeros


def test_compressed_string_by_hand():
    # Counts below 16 are one character each, chr(value + 48): [2, 3, 1] -> "231".
    assert counts_to_string([2, 3, 1]) == "231"
    assert counts_from_string("231") == [2, 3, 1]
    assert counts_from_string(b"231") == [2, 3, 1]  # pycocotools hands out bytes
    # 40 needs two 5-bit groups: 40 & 31 = 8 with "more" (0x20) -> chr(8 + 32 + 48) = "X",
    # then 40 >> 5 = 1 -> "1". From the fourth count on, the difference to the count two before
    # is written: [1, 1, 1, 0] -> "111" then 0 - 1 = -1 -> 31 (0x10 set: negative) -> "O".
    assert counts_to_string([40]) == "X1"
    assert counts_to_string([1, 1, 1, 0]) == "111O"
    assert counts_from_string("111O") == [1, 1, 1, 0]


@pytest.mark.parametrize("seed", range(4))
def test_rle_agrees_with_pycocotools_exactly(seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        height, width = (int(side) for side in rng.integers(1, 50, size=2))
        mask = rng.random((height, width)) < rng.uniform(0, 1)
        if rng.random() < 0.3:  # long runs: counts far apart, negative differences
            mask = np.zeros((height, width), dtype=bool)
            mask[rng.integers(0, height) :, rng.integers(0, width) :] = True
        reference = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        counts = encode_counts(mask)
        assert counts_to_string(counts) == reference["counts"].decode()
        assert counts_from_string(reference["counts"]) == counts
        assert np.array_equal(decode_counts(counts, height, width), mask)


def test_large_counts_survive_the_round_trip():
    counts = [1_000_000, 3, 70_000, 1, 5, 123_456]
    text = counts_to_string(counts)
    assert counts_from_string(text) == counts
    reference = coco_mask.frPyObjects({"counts": counts, "size": [1, sum(counts)]}, 1, sum(counts))
    assert reference["counts"].decode() == text


def test_counts_that_do_not_fill_the_image_are_refused():
    with pytest.raises(ValueError, match="sum to 5"):
        decode_counts([2, 3], 2, 3)


def test_polygon_squares_by_hand():
    # Pixel (row i, column j) spans [j, j + 1] x [i, i + 1]: a square with corners on integers
    # covers the pixels between them.
    square = polygon_mask([1, 1, 4, 1, 4, 3, 1, 3], 5, 6)
    expected = np.zeros((5, 6), dtype=bool)
    expected[1:3, 1:4] = True
    assert np.array_equal(square, expected)
    assert not polygon_mask([], 4, 4).any()


@pytest.mark.parametrize("seed", range(4))
def test_polygons_agree_with_pycocotools_exactly(seed: int):
    """Random polygons (convex or not, crossing the border, on a 0.5 grid or anywhere)."""
    rng = np.random.default_rng(seed)
    for trial in range(150):
        height, width = (int(side) for side in rng.integers(1, 60, size=2))
        corners = int(rng.integers(3, 12))
        points = rng.uniform(-5, max(height, width) + 5, size=2 * corners)
        if trial % 3 == 0:
            points = np.round(points * 2) / 2  # on half pixels: the rounding cases
        polygon = points.tolist()
        assert np.array_equal(
            polygon_mask(polygon, height, width), reference_polygon(polygon, height, width)
        ), polygon


def test_a_triangle_agrees_with_pycocotools_on_a_large_image():
    polygon = [10.2, 5.7, 390.4, 120.1, 50.3, 290.9]
    assert np.array_equal(polygon_mask(polygon, 300, 400), reference_polygon(polygon, 300, 400))
