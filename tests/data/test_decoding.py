"""Headers are checked before decoding: crafted sizes and bombs are refused in milliseconds, and
whatever a decoder raises on bad bytes ends as an FcnsegError naming the file.

Each test stands for a class of failure the reader fuzzer (benchmarks/fuzz_readers.py) found."""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from fcnseg import FcnsegError
from fcnseg.data import decoding
from fcnseg.data.decoding import MAX_PIXELS, open_image, pixel_limit, read_tiff_page
from fcnseg.data.images import read_image
from fcnseg.data.instances.maps import read_id_map
from fcnseg.data.masks.encodings import read_stored_mask


def png_with_size(path: Path, mode: str, width: int, height: int, padding: int = 0) -> Path:
    """A small valid 48 x 40 PNG whose IHDR then claims width x height (CRC made right), with
    `padding` bytes in an ancillary chunk after it (which decoders skip)."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((40, 48), np.uint8)).convert(mode).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR: signature 8, length 4, type 4
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    if padding:
        body = b"fcNs" + bytes(padding)
        chunk = struct.pack(">I", padding) + body + struct.pack(">I", zlib.crc32(body))
        data[33:33] = chunk
    path.write_bytes(bytes(data))
    return path


def tiff_with_tag(path: Path, tag: str, value: int, field: str = "value") -> Path:
    """A tiled 16-bit TIFF with one tag's first value (or its count) overwritten."""
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((40, 48), np.uint16), tile=(16, 16))
    data = bytearray(buffer.getvalue())
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tiff:
        entry = tiff.pages.first.tags[tag]
    at, format = (entry.offset + 4, "<I") if field == "count" else (entry.valueoffset, "<I")
    if field == "value" and int(entry.dtype) == 3:  # SHORT
        format = "<H"
    data[at : at + struct.calcsize(format)] = struct.pack(format, value)
    path.write_bytes(bytes(data))
    return path


def refused_quickly(read, path: Path, match: str) -> None:
    start = time.perf_counter()
    with pytest.raises(FcnsegError, match=match):
        read(path)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("mode", ["1", "L", "RGB", "I;16"])
def test_a_png_promising_16000_squared_pixels_in_a_small_file_is_refused_at_once(
    tmp_path: Path, mode: str
):
    path = png_with_size(tmp_path / "crafted.png", mode, 16000, 16000)
    # 256 M one-bit pixels are 32 MB; deflate packs at most 1032 bytes into one: >= 31,008 bytes.
    message = r"promises 16000x16000 PNG pixels .* at least 31,\d{3} bytes .* holds \d+ bytes"
    for read in (read_image, read_stored_mask, read_id_map):
        refused_quickly(read, path, message)


def test_over_the_pixel_limit_the_message_names_the_limit_and_how_to_raise_it(tmp_path: Path):
    path = png_with_size(tmp_path / "huge.png", "RGB", 20000, 20000)  # 400 M > 268 M pixels
    assert pixel_limit() == MAX_PIXELS == 268_435_456
    message = r"20000x20000 = 400,000,000 pixels, over fcnseg's limit of 268,435,456 .*"
    refused_quickly(read_image, path, message + r"FCNSEG_MAX_PIXELS=536870912")


def test_pillow_never_raises_or_warns_in_its_own_words(tmp_path: Path):
    # 65536 x 16384 = 1.07 G pixels: past twice Pillow's limit, so Pillow raises inside open().
    path = png_with_size(tmp_path / "bomb.png", "L", 65536, 16384)
    over = png_with_size(tmp_path / "over.png", "L", 17000, 16000)  # 272 M: a warning only
    # 150 M pixels: over Pillow's default limit (89 M: a warning), within fcnseg's; padded to
    # the 18,169 bytes that many one-bit pixels need at least.
    wide = png_with_size(tmp_path / "wide.png", "1", 1_000_000, 150, padding=20_000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        refused_quickly(read_image, path, r"over fcnseg's limit .* FCNSEG_MAX_PIXELS")
        refused_quickly(read_image, over, r"over fcnseg's limit .* FCNSEG_MAX_PIXELS")
        with open_image(wide) as image:  # the header is fine: nothing is decoded here
            assert image.size == (1_000_000, 150)
    assert [str(warning.message) for warning in caught] == []
    assert Image.MAX_IMAGE_PIXELS >= MAX_PIXELS


def test_the_limit_follows_the_environment_variable(tmp_path: Path, monkeypatch):
    path = png_with_size(tmp_path / "small.png", "RGB", 48, 40)  # 1920 pixels, unchanged
    monkeypatch.setenv("FCNSEG_MAX_PIXELS", "1000")
    refused_quickly(read_image, path, r"48x40 = 1,920 pixels, over fcnseg's limit of 1,000")
    assert Image.MAX_IMAGE_PIXELS >= 89_478_485  # Pillow's own never goes below its default
    monkeypatch.setenv("FCNSEG_MAX_PIXELS", "1920")
    assert read_image(path).shape == (40, 48, 3)
    monkeypatch.setenv("FCNSEG_MAX_PIXELS", "1e9")
    assert pixel_limit() == 10**9
    monkeypatch.setenv("FCNSEG_MAX_PIXELS", "lots")
    with pytest.raises(FcnsegError, match=r"FCNSEG_MAX_PIXELS is 'lots'; accepted: a positive"):
        read_image(path)


def test_a_jpeg_frame_header_promising_16000_squared_pixels_is_refused(tmp_path: Path):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", 16000, 16000)  # height, width
    path = tmp_path / "crafted.jpg"
    path.write_bytes(bytes(data))
    # Decoded, this took 16 s and 3.4 GB: libjpeg fills in the missing 256 M pixels.
    refused_quickly(read_image, path, r"promises 16000x16000 JPEG pixels .* at least 500,000")


def test_pixel_data_placed_past_the_end_of_the_file_is_refused(tmp_path: Path):
    # Pillow would read (allocating first) the 2 GB up to that offset.
    path = tiff_with_tag(tmp_path / "far.tif", "TileOffsets", 2**31 - 1)
    refused_quickly(read_image, path, r"pixel data at byte 2,147,483,647, but the file holds")


def test_a_png_chunk_running_past_the_end_of_the_file_is_refused(tmp_path: Path):
    # Pillow reads a chunk's declared length at once: an IDAT of 2 GB in a 100-byte file made it
    # allocate 2 GB before finding the file short.
    data = bytearray(png_with_size(tmp_path / "a.png", "RGB", 48, 40).read_bytes())
    assert data[37:41] == b"IDAT"
    data[33:37] = struct.pack(">I", 2**31 + 11)
    (tmp_path / "long_chunk.png").write_bytes(bytes(data))
    message = r"PNG chunk \('IDAT'\) of 2,147,483,659 bytes at byte 33, past the end of the file"
    refused_quickly(read_image, tmp_path / "long_chunk.png", message)


def test_decoder_errors_of_every_type_become_a_sentence_naming_the_file(tmp_path: Path):
    png = bytearray(png_with_size(tmp_path / "a.png", "L", 48, 40).read_bytes())
    png[8:12] = struct.pack(">I", 5)  # an IHDR of 5 bytes: Pillow raises ValueError
    (tmp_path / "short_header.png").write_bytes(bytes(png))
    with pytest.raises(FcnsegError, match=r"cannot read mask .*short_header\.png: .*accepted"):
        read_stored_mask(tmp_path / "short_header.png")
    # A tile length with 2**31 - 1 values: tifffile divides by zero.
    path = tiff_with_tag(tmp_path / "tiles.tif", "TileLength", 2**31 - 1, field="count")
    with pytest.raises(FcnsegError, match=r"cannot read instance map .*tiles\.tif"):
        read_id_map(path)


def test_tiff_pages_are_checked_before_tifffile_decodes_them(tmp_path: Path):
    with pytest.raises(FcnsegError, match=r"declares a size of 0x40 pixels"):
        read_tiff_page(tiff_with_tag(tmp_path / "empty.tif", "ImageWidth", 0), "image")
    tall = tiff_with_tag(tmp_path / "tall.tif", "ImageLength", 4_000_000)  # 48 x 4 M x 2 bytes
    with pytest.raises(FcnsegError, match=r"promises 48x4000000 pixels of 16 bits .* \(NONE\)"):
        read_tiff_page(tall, "image")
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(FcnsegError, match=r"holds 3 pages; accepted: a one-page TIFF"):
        read_id_map(stack)
    assert read_tiff_page(stack, "image").shape == (8, 8)  # where one page is all that is wanted


def test_a_missing_file_is_named_plainly(tmp_path: Path):
    with pytest.raises(FcnsegError, match=r"cannot read image .*gone\.png: No such file"):
        read_image(tmp_path / "gone.png")


def test_every_decoder_error_type_is_listed():
    # The fuzzer found each of these escaping a reader at least once.
    for kind in (ValueError, SyntaxError, ZeroDivisionError, struct.error, zlib.error):
        assert issubclass(kind, decoding.DECODE_ERRORS)
    assert not issubclass(MemoryError, decoding.DECODE_ERRORS)  # never hidden: a missing check
