"""The band reader survives damaged TIFFs (truncated strips, odd tags, zero sizes) and still
decodes a 12000 x 12000 PNG whole, within fcnseg's pixel limit."""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from fcnseg import FcnsegError
from fcnseg.config import DataConfig
from fcnseg.inference.streaming import BandSource, PngWriter

TAGS = (
    "ImageWidth", "ImageLength", "BitsPerSample", "Compression", "PhotometricInterpretation",
    "StripOffsets", "SamplesPerPixel", "RowsPerStrip", "StripByteCounts", "PlanarConfiguration",
)  # fmt: skip


def streamed_tiff(path: Path, channels: int = 3) -> np.ndarray:
    """An uncompressed 8-bit 40 x 30 TIFF (read in place by BandSource); its pixels."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(40, 30, channels), dtype=np.uint8)
    tifffile.imwrite(path, pixels.squeeze(), photometric="rgb" if channels == 3 else None)
    return pixels


def every_band(source: BandSource) -> np.ndarray:
    return np.concatenate([source.rows(top, top + 16) for top in range(0, source.height, 16)])


def test_rows_come_from_the_file_and_stop_at_its_last_row(tmp_path: Path):
    pixels = streamed_tiff(tmp_path / "a.tif")
    source = BandSource(tmp_path / "a.tif", DataConfig(image_mode="RGB"))
    assert source.streamed and np.array_equal(every_band(source), pixels)
    assert source.rows(30, 100).shape == (10, 30, 3)  # past the end: the rows there are


def test_a_truncated_tiff_is_refused_when_opened_not_mid_prediction(tmp_path: Path):
    streamed_tiff(tmp_path / "cut.tif")
    data = (tmp_path / "cut.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[:2000])  # 40 rows of 90 bytes do not fit
    with pytest.raises(FcnsegError, match=r"40 rows of 90 bytes .* file ends at byte 2000"):
        BandSource(tmp_path / "cut.tif", DataConfig(image_mode="RGB"))


@pytest.mark.parametrize("value", [0, 1, 2, 255, 65535])
@pytest.mark.parametrize("tag", TAGS)
def test_any_tag_value_gives_rows_or_a_sentence(tmp_path: Path, tag: str, value: int):
    # Zero sizes, wrong band counts, strips outside the file: the fuzzer's IndexError and
    # ValueError came from such files.
    path = tmp_path / "odd.tif"
    streamed_tiff(path)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tiff:
        entry = tiff.pages.first.tags[tag]
    format = "<H" if int(entry.dtype) == 3 else "<I"
    data[entry.valueoffset : entry.valueoffset + struct.calcsize(format)] = struct.pack(
        format, value
    )
    path.write_bytes(bytes(data))
    try:
        source = BandSource(path, DataConfig(image_mode="RGB"))
        bands = every_band(source)
    except FcnsegError as error:
        assert "odd.tif" in str(error) and "accepted" in str(error)
    else:
        assert bands.shape == (source.height, source.width, 3) and bands.dtype == np.uint8


def test_a_12000_square_png_is_decoded_whole_without_warnings(tmp_path: Path):
    # 144 M pixels: over Pillow's default limit (89 M), within fcnseg's (268 M).
    path = tmp_path / "big.png"
    with PngWriter(path, 12000, 12000) as writer:
        band = np.zeros((3000, 12000), np.uint8)
        band[:, ::7] = 200
        for _ in range(4):
            writer.write(band)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = BandSource(path, DataConfig(image_mode="L"))
        assert source.rows(5000, 5002)[:, :8, 0].tolist() == [[200, 0, 0, 0, 0, 0, 0, 200]] * 2
    assert not source.streamed and (source.height, source.width) == (12000, 12000)
    assert [str(warning.message) for warning in caught] == []
