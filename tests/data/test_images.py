"""Images of every common kind come back as uint8 (H, W, C), scaled by policy, never clipped."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fcnseg import FcnsegError
from fcnseg.data.images import describe_image, image_channels, read_image


def save(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_rgb_and_greyscale_in_either_mode(tmp_path: Path):
    rgb = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    path = save(tmp_path / "rgb.png", rgb)
    assert np.array_equal(read_image(path), rgb)
    grey = save(tmp_path / "grey.png", np.array([[0, 100], [200, 255]], np.uint8))
    as_rgb = read_image(grey)
    assert as_rgb.shape == (2, 2, 3) and as_rgb[1, 0].tolist() == [200, 200, 200]
    assert read_image(grey, "L")[..., 0].tolist() == [[0, 100], [200, 255]]


def test_rgba_alpha_dropped_or_kept(tmp_path: Path):
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], np.uint8)
    path = save(tmp_path / "rgba.png", rgba)
    assert read_image(path).tolist() == [[[10, 20, 30], [40, 50, 60]]]  # colour untouched
    assert read_image(path, alpha="keep").tolist() == rgba.tolist()
    assert image_channels("RGB", "keep") == 4 and image_channels("L", "drop") == 1


def test_16_bit_greyscale_scaled_by_its_full_range(tmp_path: Path):
    path = save(tmp_path / "wide.png", np.array([[0, 65535], [257, 32896]], np.uint16))
    assert describe_image(Image.open(path)) == "greyscale 16-bit"
    assert read_image(path, "L")[..., 0].tolist() == [[0, 255], [1, 128]]


def test_12_bit_data_scaled_by_image_bit_depth(tmp_path: Path):
    path = save(tmp_path / "twelve.tif", np.array([[0, 4095], [2048, 1]], np.uint16))
    # 2048 / 4095 * 255 = 127.53 -> 128; 1 / 4095 * 255 = 0.06 -> 0
    assert read_image(path, "L", bit_depth=12)[..., 0].tolist() == [[0, 255], [128, 0]]


def test_values_over_the_bit_depth_are_an_error_naming_count_and_file(tmp_path: Path):
    path = save(tmp_path / "hot.png", np.array([[4095, 4096], [5000, 0]], np.uint16))
    with pytest.raises(FcnsegError, match=r"hot\.png has 2 pixel values outside 0\.\.4095"):
        read_image(path, "L", bit_depth=12)


def test_per_image_scaling_stretches_min_to_max(tmp_path: Path):
    path = save(tmp_path / "dim.png", np.array([[100, 200], [300, 150]], np.uint16))
    assert read_image(path, "L", scaling="per_image")[..., 0].tolist() == [[0, 128], [255, 64]]


def test_16_bit_colour_png_and_tiff_keep_every_bit(tmp_path: Path):
    # Pillow would narrow these to 8 bits by itself; fcnseg reads them whole and scales them.
    rgb = np.array([[[0, 4095, 65535], [257, 514, 771]]], np.uint16)
    for name in ("wide.png", "wide.tif"):
        cv2.imwrite(str(tmp_path / name), rgb[..., ::-1])  # OpenCV writes BGR
        assert read_image(tmp_path / name).tolist() == [[[0, 16, 255], [1, 2, 3]]]
        with pytest.raises(FcnsegError, match=r"1 pixel values outside 0..4095"):
            read_image(tmp_path / name, bit_depth=12)  # 65535 is no 12-bit value


def test_float_images_must_lie_in_0_1(tmp_path: Path):
    path = save(tmp_path / "float.tif", np.array([[0.0, 0.5], [1.0, 0.25]], np.float32))
    assert read_image(path, "L")[..., 0].tolist() == [[0, 128], [255, 64]]
    save(path, np.array([[0.0, 2.0]], np.float32))
    with pytest.raises(FcnsegError, match=r"1 pixel values outside 0\.\.1"):
        read_image(path, "L")


def test_bad_settings_and_unreadable_files_are_named(tmp_path: Path):
    path = save(tmp_path / "ok.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(FcnsegError, match=r"image_alpha 'maybe'.*accepted"):
        read_image(path, alpha="maybe")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(FcnsegError, match=r"cannot read image .*broken\.png"):
        read_image(broken)
