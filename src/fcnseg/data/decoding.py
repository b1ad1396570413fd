"""Opening image files that may be damaged, huge or hostile: the header is checked before any
pixel is decoded, and every decoder failure becomes an FcnsegError that names the file.

Two checks, from the header alone (milliseconds, nothing allocated):

    pixel limit    width x height at most MAX_PIXELS, 2**28 (268 Mpx, e.g. 16384 x 16384; the
                   12000 x 12000 images `fcnseg predict` streams are well within it). The
                   environment variable FCNSEG_MAX_PIXELS raises or lowers it. Pillow's own limit
                   (Image.MAX_IMAGE_PIXELS) is kept at least as high, and its warning silenced
                   while fcnseg opens a file, so that Pillow never refuses or warns about an
                   image fcnseg accepts, and fcnseg's sentence replaces both for one it refuses.
    stored bytes   the file must be large enough to hold the pixels its header promises at the
                   best ratio its compression can reach: deflate (PNG, TIFF) 1:1032, LZW 1:3412,
                   PackBits 1:64, JPEG one bit per 8 x 8 block, none 1:1 (at one bit per pixel
                   where the depth is not known yet: a real file never comes near). A 2 KB file
                   promising 16000 x 16000 pixels is damaged or crafted: decoding it would
                   allocate gigabytes (a JPEG decoder fills in what is missing: 16 s, 3.4 GB).

`decoding(path, what)` turns what decoders raise on bad bytes (OSError, ValueError, SyntaxError,
struct.error, zlib.error, IndexError, ...) into an FcnsegError. MemoryError is left alone: the
checks above exist so that it cannot happen, and hiding it would hide a missing check.
"""

from __future__ import annotations

import lzma
import math
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image

from fcnseg.errors import FcnsegError

MAX_PIXELS = 2**28  # width x height of the largest image decoded; FCNSEG_MAX_PIXELS overrides
LIMIT_VARIABLE = "FCNSEG_MAX_PIXELS"
PILLOW_DEFAULT_LIMIT = Image.MAX_IMAGE_PIXELS or 0
ACCEPTED = "an undamaged PNG, JPEG, TIFF, BMP or WebP file"

DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes UnidentifiedImageError and "image file is truncated"
    ValueError,  # includes tifffile.TiffFileError
    SyntaxError,  # Pillow's plugins: "not a PNG file", "broken PNG file"
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ArithmeticError,  # ZeroDivisionError, OverflowError: sizes of 0 or 2**64 in a header
    NotImplementedError,
    struct.error,
    zlib.error,
    lzma.LZMAError,
    cv2.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,  # raised when a warnings filter turns it into an error
)

# The most pixels one stored byte can hold, at one bit per pixel, by compression (None: no bound).
# Deflate: a 258-byte match in 2 bits; LZW: a 12-bit table's longest string, 3838 bytes, in 9
# bits or more; PackBits: 128 bytes in 2; JPEG: an 8 x 8 block in 1 bit or more.
DEFLATE, LZW, PACKBITS, JPEG = 1032, 3412, 64, 512  # decoded bytes per stored byte, at most
PILLOW_TIFF_RATIOS = {"raw": 8, "packbits": 8 * PACKBITS, "tiff_lzw": 8 * LZW, "jpeg": JPEG}
TIFFFILE_RATIOS = {1: 1, 5: LZW, 6: JPEG, 7: JPEG, 8: DEFLATE, 32773: PACKBITS, 32946: DEFLATE}


def pixel_limit() -> int:
    """The largest width x height decoded: FCNSEG_MAX_PIXELS if set, else MAX_PIXELS."""
    text = os.environ.get(LIMIT_VARIABLE, "").strip()
    if not text:
        return MAX_PIXELS
    try:
        limit = int(float(text)) if "e" in text.lower() else int(text)
    except (ValueError, OverflowError):
        limit = 0
    if limit <= 0:
        raise FcnsegError(
            f"{LIMIT_VARIABLE} is '{text}'; accepted: a positive number of pixels such as "
            f"{MAX_PIXELS} (the default) or 1e9; unset it for the default."
        )
    return limit


def check_pixels(width: int, height: int, path: Path, what: str) -> None:
    """An error unless 1 <= width, height and width x height is within the pixel limit."""
    if width <= 0 or height <= 0:
        raise FcnsegError(
            f"{what} {path} declares a size of {width}x{height} pixels (width x height); "
            f"accepted: {ACCEPTED} of at least 1x1 pixels. The file is damaged: export it again."
        )
    limit = pixel_limit()
    if width * height > limit:
        raise FcnsegError(
            f"{what} {path} is {width}x{height} = {width * height:,} pixels, over fcnseg's limit "
            f"of {limit:,} pixels (a guard against decompression bombs); if the image is "
            f"genuine, raise the limit with the environment variable {LIMIT_VARIABLE}, e.g. "
            f"{LIMIT_VARIABLE}={2 ** math.ceil(math.log2(width * height))}."
        )


def check_stored_bytes(needed: float, path: Path, what: str, promised: str) -> None:
    """An error if the file is smaller than the `needed` bytes its header's promise implies."""
    stored = path.stat().st_size
    if stored < needed:
        raise FcnsegError(
            f"{what} {path} promises {promised} in its header, which needs at least "
            f"{math.ceil(needed):,} bytes even at its format's best compression, but the file "
            f"holds {stored:,} bytes; accepted: {ACCEPTED}. It is truncated, damaged or "
            "crafted: export it again."
        )


def check_pillow_header(image: Image.Image, path: Path, what: str) -> None:
    """Pixel limit and stored bytes of an opened (not yet decoded) Pillow image."""
    width, height = image.size
    check_pixels(width, height, path, what)
    size = path.stat().st_size
    offsets = [tile.offset for tile in image.tile if isinstance(tile.offset, int)]
    outside = [offset for offset in offsets if not 0 <= offset <= size]
    if outside:  # Pillow would read (and allocate) up to that offset
        raise FcnsegError(
            f"{what} {path} places its pixel data at byte {outside[0]:,}, but the file holds "
            f"{size:,} bytes; accepted: {ACCEPTED}. It is truncated, damaged or crafted: export "
            "it again."
        )
    pixels = width * height
    ratio = None
    if image.format == "PNG":
        check_png_chunks(path, what, size)
        pixels, ratio = width * height + 8 * height, 8 * DEFLATE  # plus one filter byte a row
    elif image.format in ("JPEG", "MPO"):
        ratio = JPEG  # Huffman coding spends at least one bit on every 8 x 8 block
    elif image.format == "TIFF":
        compression = image.info.get("compression")
        deflate = compression in ("tiff_adobe_deflate", "tiff_deflate")
        ratio = 8 * DEFLATE if deflate else PILLOW_TIFF_RATIOS.get(compression)
    elif image.format == "BMP" and image.info.get("compression") in (0, 3):  # uncompressed
        ratio = 8
    if ratio is not None:
        promised = f"{width}x{height} {image.format} pixels"
        check_stored_bytes(pixels / ratio, path, what, promised)


def check_png_chunks(path: Path, what: str, size: int) -> None:
    """Every chunk of a PNG must end inside the file: Pillow reads (and allocates) a chunk's
    declared length at once, up to 4 GB. Reads 8 bytes a chunk, up to IEND."""
    with open(path, "rb") as handle:
        position = handle.seek(8)  # past the signature
        while position + 8 <= size:
            length, kind = struct.unpack(">I4s", handle.read(8))
            if position + 12 + length > size:
                raise FcnsegError(
                    f"{what} {path} has a PNG chunk ({kind.decode('latin-1')!r}) of "
                    f"{length:,} bytes at byte {position:,}, past the end of the file "
                    f"({size:,} bytes); accepted: {ACCEPTED}. It is truncated, damaged or "
                    "crafted: export it again."
                )
            if kind == b"IEND":
                return
            position = handle.seek(position + 12 + length)


@contextmanager
def decoding(path: Path, what: str) -> Iterator[None]:
    """Decoder failures inside the block become an FcnsegError naming the file and the cause."""
    try:
        yield
    except DECODE_ERRORS as error:
        if isinstance(error, FileNotFoundError | IsADirectoryError | PermissionError):
            raise FcnsegError(f"cannot read {what} {path}: {error.strerror}.") from None
        if isinstance(error, Image.DecompressionBombError | Image.DecompressionBombWarning):
            raise FcnsegError(  # Pillow's own check, past twice fcnseg's limit: the same advice
                f"{what} {path} is over fcnseg's limit of {pixel_limit():,} pixels ({error}); if "
                f"the image is genuine, raise the limit with the environment variable "
                f"{LIMIT_VARIABLE}."
            ) from None
        cause = str(error).strip().rstrip(".") or type(error).__name__
        raise FcnsegError(
            f"cannot read {what} {path}: {cause}; accepted: {ACCEPTED}. The file is damaged or "
            "not an image: open it in an image viewer and save it again, or remove it."
        ) from None


@contextmanager
def open_image(path: Path, what: str = "image") -> Iterator[Image.Image]:
    """Image.open with the header checked (see the module docstring); decode inside the block,
    where a decoder's failure also becomes an FcnsegError."""
    limit = pixel_limit()
    Image.MAX_IMAGE_PIXELS = max(limit, PILLOW_DEFAULT_LIMIT)  # never stricter than fcnseg
    with decoding(path, what):
        with warnings.catch_warnings():  # Pillow warns past its limit: fcnseg's sentence follows
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as image:
            check_pillow_header(image, path, what)
            yield image


def check_tiff_page(page: tifffile.TiffPage, path: Path, what: str) -> None:
    """Pixel limit, segment sizes and stored bytes of a TIFF page, before it is decoded."""
    depth = max(int(page.imagedepth), 1)
    check_pixels(int(page.imagewidth), int(page.imagelength) * depth, path, what)
    segment = math.prod(int(side) for side in page.chunks)  # values one strip or tile decodes to
    if segment * len(page.dataoffsets) > 4 * pixel_limit() * max(int(page.samplesperpixel), 1):
        raise FcnsegError(
            f"{what} {path} declares {len(page.dataoffsets)} strips or tiles of {page.chunks} "
            f"values each, far more than its {page.imagewidth}x{page.imagelength} pixels need; "
            f"accepted: {ACCEPTED}. The file is damaged or crafted: export it again."
        )
    size = path.stat().st_size
    offsets = np.asarray(page.dataoffsets, np.int64)
    counts = np.asarray(page.databytecounts, np.int64)
    stored = int(np.clip(np.minimum(counts, size - offsets), 0, None).sum())  # inside the file
    ratio = TIFFFILE_RATIOS.get(int(page.compression))
    if ratio is None:
        return
    bits = max(int(page.bitspersample), 1) * max(int(page.samplesperpixel), 1)
    needed = int(page.imagewidth) * int(page.imagelength) * depth * bits / 8
    if stored * ratio < needed:
        promised = f"{page.imagewidth}x{page.imagelength} pixels of {bits} bits"
        compression = tifffile.COMPRESSION(page.compression).name
        shortfall = f"{stored:,} bytes of strips or tiles inside the file"
        raise FcnsegError(
            f"{what} {path} promises {promised} in its header, but {shortfall} cannot hold them "
            f"even at the best ratio of its compression ({compression}); accepted: "
            f"{ACCEPTED}. It is truncated, damaged or crafted: export it again."
        )


def read_tiff_page(path: Path, what: str, one_page: bool = False) -> np.ndarray:
    """The first page of a TIFF as stored (any dtype; (H, W) or (H, W, S)), checked first;
    `one_page`: a file of several pages (a stack) is an error rather than its first page."""
    with decoding(path, what), tifffile.TiffFile(path) as tiff:
        page = tiff.pages.first
        if one_page and len(tiff.pages) > 1:
            raise FcnsegError(
                f"{what} {path} holds {len(tiff.pages)} pages; accepted: a one-page TIFF (one "
                "channel of whole numbers). A stack of per-object masks is no ID map: export the "
                "ID map itself."
            )
        check_tiff_page(page, path, what)
        return page.asarray(maxworkers=1)  # no thread pool for one small page


__all__ = [
    "DECODE_ERRORS",
    "LIMIT_VARIABLE",
    "MAX_PIXELS",
    "check_pillow_header",
    "check_pixels",
    "check_tiff_page",
    "decoding",
    "open_image",
    "pixel_limit",
    "read_tiff_page",
]
