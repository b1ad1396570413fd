"""Seed files and their mutations for benchmarks/fuzz_readers.py (see there).

    write_seeds(folder)         {seed name: (suffix, bytes)}: small valid files, written by code
    place(folder, target, ...)  the mutated file where a reader reads it (the doctor: in a
                                dataset folder of one pair)
    mutate(name, data, rng)     (mutated bytes, what was done): one structural mutation of the
                                seed's format, plain byte mutations, or both

Structural mutations reach past the checks a decoder makes first: a PNG is taken apart into
chunks and put back with correct CRCs; a TIFF's tags are found with tifffile and one value is
overwritten in place; a JPEG's frame header and a BMP's header fields are set directly.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image

COLOURS = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]  # the four classes' colours
SEEDS = (
    "png-rgb",
    "png-palette",
    "png-grey16",
    "png-1bit",
    "png-rgb16",
    "jpeg",
    "tiff-strips",
    "tiff-tiles",
    "tiff-deflate",
    "bmp-palette",
    "webp",
)
ODD_SIZES = [0, 1, 2, 3, 255, 4096, 16000, 46341, 65535, 65536, 2**24, 2**31 - 1, 2**32 - 1]
ODD_VALUES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 17, 32, 64, 255, 256, 32773, 65535, 2**31 - 1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIFF_TAGS = (
    "ImageWidth", "ImageLength", "BitsPerSample", "Compression", "PhotometricInterpretation",
    "StripOffsets", "SamplesPerPixel", "RowsPerStrip", "StripByteCounts", "PlanarConfiguration",
    "TileWidth", "TileLength", "TileOffsets", "TileByteCounts", "SampleFormat", "Predictor",
    "ExtraSamples", "FillOrder",
)  # fmt: skip
TIFF_FORMATS = {1: "B", 3: "H", 4: "I", 8: "h", 9: "i", 16: "Q"}  # TIFF data type -> struct


def label_field() -> np.ndarray:
    """(40, 48) uint8 labels 0..3 in blocks: every seed pictures this field."""
    rows, columns = np.mgrid[0:40, 0:48]
    return ((rows // 10 + columns // 12) % 4).astype(np.uint8)


def _pillow(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _tiff(array: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def write_seeds(folder: Path) -> dict[str, tuple[str, bytes]]:
    """The seed files, also written to `folder` for a look: {name: (suffix, bytes)}."""
    labels = label_field()
    colours = np.array(COLOURS, np.uint8)[labels]  # (40, 48, 3)
    palette = Image.fromarray(labels, "L").convert("P")
    palette.putpalette(np.array(COLOURS, np.uint8).ravel().tolist())
    rgb16 = cv2.imencode(".png", (colours.astype(np.uint16) * 257)[..., ::-1])[1].tobytes()
    seeds = {
        "png-rgb": (".png", _pillow(Image.fromarray(colours), "PNG")),
        "png-palette": (".png", _pillow(palette, "PNG", transparency=0)),
        "png-grey16": (".png", _pillow(Image.fromarray(labels.astype(np.uint16)), "PNG")),
        "png-1bit": (".png", _pillow(Image.fromarray(labels > 1), "PNG")),
        "png-rgb16": (".png", rgb16),
        "jpeg": (".jpg", _pillow(Image.fromarray(colours), "JPEG", quality=90)),
        "tiff-strips": (".tif", _tiff(colours, photometric="rgb", rowsperstrip=8)),
        "tiff-tiles": (".tif", _tiff(labels.astype(np.uint16) * 1000, tile=(16, 16))),
        "tiff-deflate": (".tif", _tiff(labels, compression="zlib", rowsperstrip=8)),
        "bmp-palette": (".bmp", _pillow(palette, "BMP")),
        "webp": (".webp", _pillow(Image.fromarray(colours), "WEBP", lossless=True)),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, (suffix, data) in seeds.items():
        (folder / f"{name}{suffix}").write_bytes(data)
    return seeds


def place(folder: Path, target: str, data: bytes, suffix: str) -> Path:
    """Write the mutated file where `target` reads it; the path to give the reader."""
    if not target.startswith("inspect"):
        path = folder / f"case{suffix}"
        path.write_bytes(data)
        return path
    root = folder / target.replace(" ", "-")
    role = "images" if target.endswith("image") else "masks"
    for old in (root / "train" / role).glob("item.*"):
        old.unlink()
    (root / "train" / role / f"item{suffix}").write_bytes(data)
    return root


def prepare_inspect_folders(folder: Path, seeds: dict[str, tuple[str, bytes]]) -> None:
    """Two datasets of one pair: a good mask for the mutated image, a good image for the mask."""
    png = seeds["png-palette"][1]
    for target, other in (("inspect-as-image", "masks"), ("inspect-as-mask", "images")):
        for role in ("images", "masks"):
            (folder / target / "train" / role).mkdir(parents=True, exist_ok=True)
        (folder / target / "train" / other / "item.png").write_bytes(png)


# --- mutations ----------------------------------------------------------------------------------


def mutate(name: str, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A structural mutation (three cases in five), byte mutations (the other two, and a third
    of the structural ones as well)."""
    how = []
    if rng.random() < 0.6:
        structural = {"png": mutate_png, "tiff": mutate_tiff, "jpeg": mutate_jpeg}
        structural |= {"bmp": mutate_bmp, "webp": mutate_webp}
        mutation = structural[name.split("-")[0]]
        data, done = mutation(data, rng)
        how.append(done)
    if not how or rng.random() < 0.35:
        data, done = mutate_bytes(data, rng)
        how.append(done)
    return data, f"{name}: {'; '.join(how)}"


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One to eight bit flips, inserts, deletes or a cut, anywhere."""
    buffer, done = bytearray(data), []
    for _ in range(rng.randint(1, 8)):
        if not buffer:
            break
        position = rng.randrange(len(buffer))
        action = rng.choice(("flip", "flip", "insert", "delete", "cut"))
        if action == "flip":
            buffer[position] ^= 1 << rng.randrange(8)
        elif action == "insert":
            buffer[position:position] = rng.randbytes(rng.randint(1, 16))
        elif action == "delete":
            del buffer[position : position + rng.randint(1, 16)]
        else:
            del buffer[position:]
        done.append(f"{action}@{position}")
    return bytes(buffer), "bytes " + ",".join(done)


def png_chunks(data: bytes) -> list[list[bytes]]:
    """[[type, body], ...] of a PNG, as far as its chunk lengths hold together."""
    chunks, position = [], len(PNG_SIGNATURE)
    while position + 12 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        chunks.append([kind, data[position + 8 : position + 8 + length]])
        position += 12 + length
    return chunks


def png_bytes(chunks: list[list[bytes]]) -> bytes:
    """The chunks as a PNG, every CRC correct."""
    parts = [PNG_SIGNATURE]
    for kind, body in chunks:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        parts.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc))
    return b"".join(parts)


def mutate_png(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """An IHDR field, a duplicated or dropped chunk, a short palette, or a damaged zlib stream."""
    chunks = png_chunks(data)
    action = rng.choice(("size", "size", "ihdr", "duplicate", "drop", "palette", "idat", "body"))
    index = rng.randrange(len(chunks))
    header = bytearray(chunks[0][1])
    if action == "size":
        field = rng.choice((0, 4))
        value = rng.choice(ODD_SIZES)
        header[field : field + 4] = struct.pack(">I", value)
        chunks[0][1] = bytes(header)
        done = f"{'width' if field == 0 else 'height'}={value}"
    elif action == "ihdr":
        field, value = rng.randrange(8, 13), rng.choice((0, 1, 2, 3, 4, 6, 7, 8, 16, 255))
        header[field] = value
        chunks[0][1] = bytes(header)
        done = f"IHDR byte {field}={value}"
    elif action == "duplicate":
        chunks.insert(index, list(chunks[index]))
        done = f"{chunks[index][0].decode(errors='replace')} twice"
    elif action == "drop":
        done = f"no {chunks.pop(index)[0].decode(errors='replace')}"
    elif action == "palette":
        chunks = [[b"PLTE", b"\x00\x00\x00"] if kind == b"PLTE" else [kind, body]
                  for kind, body in chunks]  # fmt: skip
        chunks.insert(1, [b"tRNS", rng.randbytes(rng.randint(0, 300))])
        done = "one-colour PLTE, odd tRNS"
    elif action == "idat":
        return _mutate_idat(chunks, rng)
    else:
        damaged, how = mutate_bytes(chunks[index][1], rng)
        chunks[index][1] = damaged
        done = f"{chunks[index][0].decode(errors='replace')} {how}"
    return png_bytes(chunks), f"png {done}, CRCs fixed"


def _mutate_idat(chunks: list[list[bytes]], rng: random.Random) -> tuple[bytes, str]:
    """Damage the decompressed rows (filter types, lengths) and compress them again."""
    stream = b"".join(body for kind, body in chunks if kind == b"IDAT")
    try:
        rows = zlib.decompress(stream)
    except zlib.error:
        rows = stream
    if rng.random() < 0.5 and rows:
        buffer = bytearray(rows)
        for _ in range(rng.randint(1, 4)):
            buffer[rng.randrange(len(buffer))] = rng.choice((5, 6, 255))  # no such filter type
        damaged, how = bytes(buffer), "filter types"
    else:
        damaged, how = mutate_bytes(rows, rng)
    others = [chunk for chunk in chunks if chunk[0] != b"IDAT"]
    others.insert(max(len(others) - 1, 0), [b"IDAT", zlib.compress(damaged)])
    return png_bytes(others), f"png rows: {how}, recompressed"


def mutate_tiff(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One tag of the first page set to an odd value (its first value, or its count)."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            order = tiff.byteorder
            tags = [tag for tag in tiff.pages.first.tags.values() if tag.name in TIFF_TAGS]
            places = [(tag.name, tag.valueoffset, tag.offset, int(tag.dtype)) for tag in tags]
    except Exception:
        return mutate_bytes(data, rng)
    name, value_offset, entry_offset, dtype = rng.choice(places)
    buffer = bytearray(data)
    if rng.random() < 0.2:  # the count of values: where tifffile and Pillow look for them
        count = rng.choice((0, 2, 1000, 2**31 - 1))
        buffer[entry_offset + 4 : entry_offset + 8] = struct.pack(order + "I", count)
        return bytes(buffer), f"tiff {name} count={count}"
    format = TIFF_FORMATS.get(dtype, "H")
    value = rng.choice(ODD_SIZES if name.startswith(("Image", "Tile", "Rows")) else ODD_VALUES)
    bits = 8 * struct.calcsize(format)
    value %= 2**bits  # what fits the tag's type; signed types wrap to negative values
    value = value - 2**bits if format.islower() and value >= 2 ** (bits - 1) else value
    packed = struct.pack(order + format, value)
    buffer[value_offset : value_offset + len(packed)] = packed
    return bytes(buffer), f"tiff {name}={value}"


def mutate_jpeg(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """The frame header's height, width, precision or component count set to odd values."""
    frame = next((i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in
                  (0xC0, 0xC1, 0xC2)), None)  # fmt: skip
    if frame is None:
        return mutate_bytes(data, rng)
    buffer = bytearray(data)
    field = rng.choice(("height", "width", "precision", "components"))
    if field in ("height", "width"):
        value = rng.choice(ODD_SIZES) % 65536
        start = frame + (5 if field == "height" else 7)
        buffer[start : start + 2] = struct.pack(">H", value)
    else:
        value = rng.choice((0, 1, 2, 4, 12, 16, 255))
        buffer[frame + (4 if field == "precision" else 9)] = value
    return bytes(buffer), f"jpeg {field}={value}"


def mutate_bmp(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A header field: width, height (negative: top-down), bits, compression, colours used."""
    fields = {"width": (18, "<i"), "height": (22, "<i"), "bits": (28, "<H"),
              "compression": (30, "<I"), "colours": (46, "<I")}  # fmt: skip
    name = rng.choice(sorted(fields))
    offset, format = fields[name]
    pool = ODD_SIZES if name in ("width", "height") else ODD_VALUES
    value = rng.choice(pool) * rng.choice((1, -1) if format == "<i" else (1,))
    value = max(min(value, 2**31 - 1), -(2**31)) if format == "<i" else value % 2**32
    if format == "<H":
        value %= 65536
    buffer = bytearray(data)
    buffer[offset : offset + struct.calcsize(format)] = struct.pack(format, value)
    return bytes(buffer), f"bmp {name}={value}"


def mutate_webp(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A lossless WebP's width or height (14 bits each, after the 0x2f signature) set."""
    if data[12:16] != b"VP8L" or len(data) < 25:
        return mutate_bytes(data, rng)
    bits = int.from_bytes(data[21:25], "little")
    field = rng.choice(("width", "height"))
    value = rng.choice((1, 2, 255, 4096, 16000, 16384))  # 1..16384, stored as value - 1
    shift = 0 if field == "width" else 14
    bits = (bits & ~(0x3FFF << shift)) | ((value - 1) << shift)
    return data[:21] + bits.to_bytes(4, "little") + data[25:], f"webp {field}={value}"
