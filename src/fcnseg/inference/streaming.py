"""Images larger than memory: read in row bands, written as PNG row by row.

    BandSource     rows(top, bottom) -> (rows, W, C) uint8, in the model's colour mode. An
                   uncompressed 8-bit TIFF is read band by band straight from the file; any
                   other image is decoded whole once (PNG cannot be read in parts) and kept as
                   uint8, which is H x W x C bytes: 144 MB for a 12000 x 12000 greyscale image,
                   within fcnseg's pixel limit (2**28 pixels; FCNSEG_MAX_PIXELS raises it).
    PngWriter      writes a PNG as its rows arrive: zlib-compressed IDAT chunks per band, so the
                   finished mask never has to exist in memory (Pillow can only save whole images).

A PNG is a signature and chunks (length, type, data, CRC-32): IHDR (size, bit depth, colour type),
PLTE for palette images, IDAT holding the zlib stream of rows, each prefixed by its filter type
(0: none), and IEND. That is all a writer needs.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from types import TracebackType

import numpy as np
import tifffile
from PIL import Image

from fcnseg.config import DataConfig
from fcnseg.data.decoding import DECODE_ERRORS
from fcnseg.data.folder import read_image
from fcnseg.errors import FcnsegError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type (greyscale, truecolour)
PALETTE_COLOUR_TYPE = 3
MINISBLACK, RGB, CONTIGUOUS = 1, 2, 1  # TIFF tag values: photometric, planar configuration


class PngWriter:
    """Write an 8-bit PNG band by band: `write(rows)` with (rows, W) or (rows, W, 3) uint8."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        channels: int = 1,
        palette: np.ndarray | None = None,
    ) -> None:
        colour_type = PALETTE_COLOUR_TYPE if palette is not None else COLOUR_TYPES[channels]
        self.width, self.height, self.channels, self.rows_written = width, height, channels, 0
        self.handle = open(path, "wb")  # noqa: SIM115 (closed by close() or the with block)
        self.compressor = zlib.compressobj(level=6)
        self.handle.write(PNG_SIGNATURE)
        self._chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
        if palette is not None:
            self._chunk(b"PLTE", np.asarray(palette, dtype=np.uint8).reshape(-1, 3).tobytes())

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.uint8).reshape(len(rows), -1)  # (r, W * C)
        if rows.shape[1] != self.width * self.channels:
            raise ValueError(
                f"rows of {rows.shape[1]} bytes, expected {self.width * self.channels}"
            )
        filtered = np.concatenate([np.zeros((len(rows), 1), np.uint8), rows], axis=1)  # filter 0
        compressed = self.compressor.compress(filtered.tobytes())
        if compressed:
            self._chunk(b"IDAT", compressed)
        self.rows_written += len(rows)

    def close(self) -> None:
        if self.handle.closed:
            return
        try:
            if self.rows_written != self.height:
                raise ValueError(f"{self.rows_written} rows written, the PNG has {self.height}")
            self._chunk(b"IDAT", self.compressor.flush())
            self._chunk(b"IEND", b"")
        finally:
            self.handle.close()

    def _chunk(self, kind: bytes, data: bytes) -> None:
        self.handle.write(struct.pack(">I", len(data)) + kind + data)
        self.handle.write(struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    def __enter__(self) -> PngWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:  # a half-written PNG is of no use to anyone: leave no file behind
            self.handle.close()
            Path(self.handle.name).unlink(missing_ok=True)


class BandSource:
    """An image read by row bands: `rows(top, bottom)` -> (rows, W, C) uint8 in the model's mode.

    A streamed TIFF is checked when opened: at least 1 x 1 pixels, and every row inside the
    file; it needs no pixel limit, as nothing of its size is ever held. Any other image is
    decoded by read_image, under fcnseg's pixel limit (fcnseg.data.decoding).
    """

    def __init__(self, path: Path, data: DataConfig) -> None:
        self.path, self.data = Path(path), data
        self.mode = data.image_mode + ("A" if data.image_alpha == "keep" else "")
        self.whole: np.ndarray | None = None
        layout = _uncompressed_tiff_layout(self.path, data)
        if layout is None:  # decode once, keep the uint8 image
            self.whole = read_image(
                self.path,
                data.image_mode,
                data.image_alpha,
                data.image_bit_depth,
                data.image_scaling,
            )
            self.height, self.width = self.whole.shape[:2]
        else:
            self.offset, self.height, self.width, channels = layout
            self.stored_mode = "L" if channels == 1 else "RGB"
            _check_rows_inside(self.path, self.offset, self.height, self.width * channels)

    @property
    def streamed(self) -> bool:
        """Whether rows come from the file on demand (True) or from a decoded copy."""
        return self.whole is None

    def rows(self, top: int, bottom: int) -> np.ndarray:
        top, bottom = max(top, 0), min(bottom, self.height)
        if self.whole is not None:
            return self.whole[top:bottom]
        channels = len(self.stored_mode)
        row_bytes = self.width * channels
        with open(self.path, "rb") as handle:
            handle.seek(self.offset + top * row_bytes)
            data = handle.read(max(bottom - top, 0) * row_bytes)
        if len(data) != max(bottom - top, 0) * row_bytes:
            raise FcnsegError(
                f"cannot read image {self.path}: the file ends before row {bottom} of "
                f"{self.height} (it was cut short while being read?); accepted: a whole TIFF. "
                "Copy it again."
            )
        band = np.frombuffer(data, np.uint8).reshape(len(data) // row_bytes, self.width, channels)
        if self.stored_mode == self.mode:
            return band
        # The same Pillow conversion read_image applies to a whole image, one band at a time.
        image = Image.fromarray(band[..., 0] if channels == 1 else band)
        converted = np.asarray(image.convert(self.mode))
        return converted[..., None] if converted.ndim == 2 else converted


def _uncompressed_tiff_layout(path: Path, data: DataConfig) -> tuple[int, int, int, int] | None:
    """(byte offset of the pixels, height, width, channels) of an uncompressed, contiguous
    8-bit L or RGB TIFF, whose rows can be read in place; None for anything else."""
    if path.suffix.lower() not in (".tif", ".tiff") or data.image_scaling != "bit_depth":
        return None
    if data.image_bit_depth not in (None, 8):
        return None
    try:
        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages.first
            suitable = (
                page.is_memmappable  # uncompressed, contiguous, native byte order
                and page.dtype == np.uint8
                and (page.samplesperpixel, page.photometric) in ((1, MINISBLACK), (3, RGB))
                and page.planarconfig == CONTIGUOUS
                and page.imagedepth == 1
            )
            if not suitable:
                return None
            size = (int(page.imagelength), int(page.imagewidth), int(page.samplesperpixel))
            return (int(page.dataoffsets[0]), *size)
    except DECODE_ERRORS:
        return None  # let read_image name the problem


def _check_rows_inside(path: Path, offset: int, height: int, row_bytes: int) -> None:
    """A streamed TIFF must have at least one row and column, and all its rows in the file."""
    if height <= 0 or row_bytes <= 0:
        raise FcnsegError(
            f"image {path} declares {height} rows of {row_bytes} bytes; accepted: a TIFF of at "
            "least 1 x 1 pixels. The file is damaged: export it again."
        )
    size = path.stat().st_size
    if offset < 0 or offset + height * row_bytes > size:
        raise FcnsegError(
            f"image {path} declares {height} rows of {row_bytes} bytes from byte {offset}, but "
            f"the file ends at byte {size}; accepted: a whole TIFF. It is truncated or damaged: "
            "copy or export it again."
        )
