"""Class colours that stay readable on the image they are drawn over (fcnseg.palette)."""

from __future__ import annotations

import numpy as np

from fcnseg.palette import MIN_CONTRAST, PALETTE, luminance, readable_palette


def test_luminance_of_black_white_and_pure_green():
    values = luminance(np.array([[0, 0, 0], [255, 255, 255], [0, 255, 0]]))
    np.testing.assert_allclose(values, [0.0, 1.0, 0.7152])


def test_a_black_class_on_dark_pixels_takes_a_bright_colour_and_others_keep_theirs():
    # ISBI-like: membranes (class 0, fcnseg's black) are dark pixels; cells (class 1) are grey.
    image = np.full((8, 8, 1), 200, np.uint8)
    labels = np.ones((8, 8), np.int64)
    image[:, :3] = 20
    labels[:, :3] = 0
    palette = readable_palette([(image, labels)], PALETTE, 2)
    dark = 20 / 255
    assert abs(luminance(palette[0]) - dark) >= MIN_CONTRAST  # was 0.08 from black: unreadable
    assert tuple(palette[0]) == (255, 255, 255)  # the candidate farthest from dark: white
    np.testing.assert_array_equal(palette[1], PALETTE[1])  # red on grey: readable already
    np.testing.assert_array_equal(palette[2:], PALETTE[2:])  # classes not drawn: untouched


def test_two_unreadable_classes_get_different_colours_and_absent_ones_none():
    image = np.zeros((4, 4, 3), np.uint8)  # all black
    labels = np.array([[0, 0, 1, 1]] * 4)
    palette = PALETTE.copy()
    palette[1] = (10, 10, 10)
    result = readable_palette([(image, labels)], palette, 3)
    assert tuple(result[0]) != tuple(result[1])
    assert all(luminance(result[label]) >= MIN_CONTRAST for label in (0, 1))
    np.testing.assert_array_equal(result[2], palette[2])
