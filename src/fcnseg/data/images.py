"""Reading images of any common depth into the uint8 arrays every transform expects.

Pillow reads 8-bit files (RGB, greyscale, RGBA, palette, CMYK), 16-bit greyscale and float
TIFFs faithfully, but narrows 16-bit *colour* PNGs and TIFFs to 8 bits on its own; those are read
with OpenCV, which keeps every bit. Wide values are then scaled to 0..255 by a stated policy:

    image_scaling: bit_depth   value / (2^bits - 1) * 255, bits = data.image_bit_depth or the
                               file's (8, 16; floats must lie in [0, 1]); a value above the range
                               is an error naming the file and the count, never clipped
    image_scaling: per_image   each image's own min..max stretched to 0..255

Alpha is dropped or kept as a last channel (data.image_alpha); alpha is never rescaled per image.
Every file is opened through fcnseg.data.decoding: its header is checked against the pixel
limit (fcnseg.data.decoding.MAX_PIXELS, or the environment variable FCNSEG_MAX_PIXELS) and its
size before a pixel is decoded, and whatever bytes it holds end in an image or an FcnsegError.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fcnseg.data.decoding import open_image, pixel_limit
from fcnseg.errors import FcnsegError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")  # one channel, more than 8 bits
SCALINGS = ("bit_depth", "per_image")
__all__ = [
    "IMAGE_SUFFIXES",
    "describe_image",
    "image_channels",
    "open_image",
    "pixel_limit",
    "read_image",
    "read_stored_image",
    "stored_bits",
]


def image_channels(mode: str, alpha: str) -> int:
    """How many channels read_image returns: 1 for "L", 3 for "RGB", plus one kept alpha."""
    return len(mode) + (alpha == "keep")


def stored_bits(image: Image.Image) -> int:
    """Bits per sample as stored; for 16-bit colour Pillow's mode says "RGB", its raw mode not."""
    if image.mode in WIDE_MODES:
        return 32 if image.mode in ("I", "F") else 16
    for tile in image.tile:
        rawmode = tile.args[0] if isinstance(tile.args, tuple) else tile.args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return 16
    return 8 if image.mode != "1" else 1


def describe_image(image: Image.Image) -> str:
    """A few words for reports: "RGB 8-bit", "greyscale 16-bit", "RGBA 16-bit"."""
    kinds = {"L": "greyscale", "1": "black-and-white", "P": "palette", "F": "greyscale float"}
    kind = "greyscale" if image.mode.startswith("I") else kinds.get(image.mode, image.mode)
    return f"{kind} {stored_bits(image)}-bit"


def read_image(
    path: Path,
    mode: str = "RGB",
    alpha: str = "drop",
    bit_depth: int | None = None,
    scaling: str = "bit_depth",
) -> np.ndarray:
    """(H, W, C) uint8 in `mode` ("RGB" or "L"), with alpha as a last channel when kept."""
    if mode not in ("RGB", "L") or alpha not in ("drop", "keep") or scaling not in SCALINGS:
        raise FcnsegError(
            f"data.image_mode is '{mode}', image_alpha '{alpha}' and image_scaling '{scaling}'; "
            "accepted: image_mode RGB or L, image_alpha drop or keep, image_scaling bit_depth "
            "or per_image."
        )
    array, stored_mode = read_stored_image(path)
    if array.dtype != np.uint8 or bit_depth not in (None, 8) or scaling == "per_image":
        array = _to_uint8(array, stored_mode, path, bit_depth, scaling)
    target = mode + ("A" if alpha == "keep" else "")
    converted = np.asarray(Image.fromarray(array, stored_mode).convert(target))
    return converted[..., None] if converted.ndim == 2 else converted


def read_stored_image(path: Path) -> tuple[np.ndarray, str]:
    """The image's values as stored (uint8, uint16 or float) and their mode: L, RGB or RGBA.
    The header is checked first (fcnseg.data.decoding: pixel limit, stored bytes)."""
    with open_image(path) as image:
        if image.mode in WIDE_MODES or stored_bits(image) == 16:
            return _wide_array(image, path)
        mode = "RGBA" if "A" in image.mode or "transparency" in image.info else "RGB"
        mode = "L" if image.mode in ("L", "1") else mode
        return np.asarray(image.convert(mode)), mode


def _wide_array(image: Image.Image, path: Path) -> tuple[np.ndarray, str]:
    """The stored values of a deeper-than-8-bit image, and its mode ("L", "RGB" or "RGBA")."""
    if image.mode in WIDE_MODES:
        return np.asarray(image), "L"
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # its header: checked by open_image
    if array is None or array.ndim not in (2, 3) or array.size == 0:
        raise FcnsegError(
            f"cannot read the 16-bit colour image {path}: OpenCV cannot decode it; accepted: "
            "an undamaged 16-bit PNG or TIFF. Open it in an image viewer and save it again."
        )
    if array.ndim == 2:
        return array, "L"
    if array.shape[2] not in (3, 4):  # two channels (grey and alpha): the grey
        return np.ascontiguousarray(array[..., 0]), "L"
    order = [2, 1, 0, 3][: array.shape[2]]  # OpenCV's BGR(A) to RGB(A)
    return np.ascontiguousarray(array[..., order]), "RGBA" if array.shape[2] == 4 else "RGB"


def _to_uint8(
    array: np.ndarray, mode: str, path: Path, bit_depth: int | None, scaling: str
) -> np.ndarray:
    """Scale stored values to 0..255 as the policy says (see the module docstring)."""
    values = array.astype(np.float64)
    colour = values[..., :3] if mode == "RGBA" else values
    if scaling == "per_image":
        low, high = colour.min(), colour.max()
        colour = (colour - low) / max(high - low, 1e-12)
    else:
        colour = colour / _white_level(colour, array.dtype, path, bit_depth)
    if mode == "RGBA":  # alpha is a mask of its own: scaled by its storage range only
        alpha = values[..., 3:] / (np.iinfo(array.dtype).max if array.dtype.kind in "ui" else 1)
        colour = np.concatenate([colour, alpha], axis=-1)
    return np.rint(np.clip(colour, 0, 1) * 255).astype(np.uint8)


def _white_level(values: np.ndarray, dtype: np.dtype, path: Path, bit_depth: int | None) -> float:
    """The stored value that means full intensity; values above it are reported, not clipped."""
    if dtype.kind == "f" and bit_depth is None:
        white, setting = 1.0, "float images must lie in [0, 1]"
    else:
        bits = bit_depth or (8 if dtype == np.uint8 else 16)
        white, setting = float(2**bits - 1), f"{bits}-bit values run 0..{2**bits - 1}"
    above = int(np.count_nonzero(values > white)) + int(np.count_nonzero(values < 0))
    if above:
        raise FcnsegError(
            f"image {path} has {above} pixel values outside 0..{white:g} ({setting}); set "
            "data.image_bit_depth to the bits your camera uses, or data.image_scaling: per_image."
        )
    return white
