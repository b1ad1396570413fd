"""Boundary masks for the watershed baseline, checked on hand-built maps with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnseg.data.instances.boundaries import boundary_mask, write_boundary_masks
from fcnseg.errors import FcnsegError


def touching_squares() -> np.ndarray:
    """10 x 14: A rows 2-7 cols 2-6, B rows 2-7 cols 7-13 (B touches A and the right border)."""
    ids = np.zeros((10, 14), dtype=np.uint16)
    ids[2:8, 2:7] = 1
    ids[2:8, 7:14] = 7
    return ids


def test_two_touching_squares_have_a_2_pixel_inner_band() -> None:
    ids = touching_squares()
    expected = np.where(ids > 0, 2, 0).astype(np.uint8)
    expected[4:6, 4] = 1  # A: 2 px from the background on every side leaves only column 4
    expected[4:6, 9:14] = 1  # B: 2 px from A on the left; the image border is no boundary
    np.testing.assert_array_equal(boundary_mask(ids), expected)


def test_band_width_1() -> None:
    ids = touching_squares()
    expected = np.where(ids > 0, 2, 0).astype(np.uint8)
    expected[3:7, 3:6] = 1
    expected[3:7, 8:14] = 1
    np.testing.assert_array_equal(boundary_mask(ids, width=1), expected)


def test_void_is_ignored_and_makes_no_boundary() -> None:
    ids = np.ones((7, 7), dtype=np.uint8)
    void = np.zeros((7, 7), dtype=bool)
    void[0, 0] = True
    expected = np.ones((7, 7), dtype=np.uint8)
    expected[0, 0] = 255
    np.testing.assert_array_equal(boundary_mask(ids, void), expected)
    ids[0, 0] = 0  # the same pixel as background: its 5 x 5 neighbours become boundary
    with_background = boundary_mask(ids)
    assert with_background[0, 0] == 0
    assert (with_background[:3, :3][ids[:3, :3] > 0] == 2).all()
    assert (with_background[3:, :] == 1).all() and (with_background[:, 3:] == 1).all()


def test_bad_inputs_raise() -> None:
    with pytest.raises(FcnsegError, match="H, W"):
        boundary_mask(np.zeros((2, 3, 3)))
    with pytest.raises(FcnsegError, match="void"):
        boundary_mask(np.zeros((3, 3)), np.zeros((2, 2), dtype=bool))
    with pytest.raises(FcnsegError, match="width"):
        boundary_mask(np.zeros((3, 3)), width=0)


def test_write_boundary_masks(tmp_path: Path) -> None:
    source, out = tmp_path / "instances", tmp_path / "semantic"
    ids = touching_squares()
    for split, names in (("train", ["a", "b"]), ("val", ["c"])):
        (source / split / "images").mkdir(parents=True)
        (source / split / "masks").mkdir(parents=True)
        for name in names:
            Image.fromarray(np.zeros((10, 14, 3), dtype=np.uint8)).save(
                source / split / "images" / f"{name}.png"
            )
            Image.fromarray(ids).save(source / split / "masks" / f"{name}.png")
    assert write_boundary_masks(source, out, ["train", "val"], limit=1) == {"train": 1, "val": 1}
    written = np.array(Image.open(out / "train" / "masks" / "a.png"))
    np.testing.assert_array_equal(written, boundary_mask(ids))
    assert (out / "train" / "images" / "a.png").exists()
    assert not (out / "train" / "masks" / "b.png").exists()  # limit 1
    assert write_boundary_masks(source, out, ["train"]) == {"train": 2}  # rewrites in place
    assert sorted(p.name for p in (out / "train" / "images").iterdir()) == ["a.png", "b.png"]


def test_center_crop(tmp_path: Path) -> None:
    source, out = tmp_path / "instances", tmp_path / "semantic"
    (source / "val" / "images").mkdir(parents=True)
    (source / "val" / "masks").mkdir(parents=True)
    image = np.arange(10 * 14 * 3, dtype=np.uint8).reshape(10, 14, 3)
    Image.fromarray(image).save(source / "val" / "images" / "a.png")
    Image.fromarray(touching_squares()).save(source / "val" / "masks" / "a.png")
    write_boundary_masks(source, out, ["val"], center_crop=6)
    cropped = np.array(Image.open(out / "val" / "images" / "a.png"))
    np.testing.assert_array_equal(cropped, image[2:8, 4:10])
    mask = np.array(Image.open(out / "val" / "masks" / "a.png"))
    np.testing.assert_array_equal(mask, boundary_mask(touching_squares())[2:8, 4:10])
    with pytest.raises(FcnsegError, match="smaller"):
        write_boundary_masks(source, out, ["val"], center_crop=11)
