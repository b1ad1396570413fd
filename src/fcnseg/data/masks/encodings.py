"""Mask encodings: from what a mask file stores to raw labels, and which encoding a dataset uses.

    index    one channel, each value a raw label: 8- or 16-bit PNG/TIFF (also RGB with R = G = B)
    binary   one channel holding 0 and 255 (or 0 and 1): 0 -> 0, 255 -> 1; the ignore values
             (data.ignore_index, data.ignore_labels) other than these stay, to be ignored
    palette  a palette ("P") PNG: each pixel's palette index is its raw label; the palette gives
             the classes' colours
    rgb      colour masks: each colour is looked up in the class table's colours

`detect_codec` picks one from a few sample masks (data.mask_encoding overrides it) and describes
it in words. A codec marks the pixels it cannot decode with -1 (a colour in no table, a grey edge
in a binary mask) and `explain` says what those values are, so that they are reported with their
file and count rather than silently mapped to a class. Raw labels come back as integer arrays
(the file's own unsigned array where nothing can be undecodable). A mask of the wrong kind
altogether (colour where one channel is expected) raises at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcnseg.data.decoding import open_image
from fcnseg.data.masks.classes import ClassTable
from fcnseg.errors import FcnsegError

ENCODINGS = ("auto", "index", "binary", "palette", "rgb")
BITS = {"1": "1-bit", "L": "8-bit", "P": "8-bit", "I": "32-bit", "F": "32-bit float"}


@dataclass(frozen=True)
class StoredMask:
    array: np.ndarray  # (H, W) values or (H, W, 3) colours, as the file stores them
    mode: str  # Pillow's mode of the file: "L", "P", "I;16", "RGB", ...
    palette: np.ndarray | None = None  # (N, 3) uint8 for palette masks


def read_stored_mask(path: Path) -> StoredMask:
    """The mask file's own values; alpha is dropped, "1" (bilevel) masks read as 0 and 1.
    The header is checked first (fcnseg.data.decoding: pixel limit, stored bytes)."""
    with open_image(path, "mask") as image:
        mode = image.mode
        palette = None
        if mode in ("P", "PA"):
            palette = np.asarray(image.getpalette("RGB") or [], np.uint8).reshape(-1, 3)
            image = image.convert("P") if mode == "PA" else image
        elif mode in ("RGBA", "CMYK", "YCbCr", "LA"):
            image = image.convert("L" if mode == "LA" else "RGB")
        array = np.asarray(image)
    if array.ndim not in (2, 3):
        raise FcnsegError(
            f"mask {path} holds {mode} values of shape {array.shape}; accepted: one channel of "
            "labels or RGB colours: save it as such a PNG."
        )
    return StoredMask(array.astype(np.uint8) if array.dtype == bool else array, mode, palette)


def _single_channel(mask: StoredMask, path: Path, encoding: str) -> np.ndarray:
    """The one channel of a mask; RGB masks are accepted when R = G = B (greyscale saved as RGB)."""
    array = mask.array
    if array.ndim == 3:
        if not (array == array[..., :1]).all():
            raise FcnsegError(
                f"mask {path} holds colours ({mask.mode}) but the masks are read as {encoding} "
                "values; give a colour table (classes.txt, data.classes or data.colors) and set "
                "data.mask_encoding: rgb."
            )
        array = array[..., 0]
    return array


class IndexCodec:
    """Each value is a raw label; non-integer float values are undecodable."""

    name = "index"

    def __init__(self, description: str) -> None:
        self.description = description
        self.colours: np.ndarray | None = None  # the classes' colours, where the masks give them

    def decode(self, mask: StoredMask, path: Path) -> np.ndarray:
        array = _single_channel(mask, path, self.name)
        if array.dtype.kind == "f":
            return np.where(np.floor(array) == array, array, -1).astype(np.int64)
        # Unsigned values are raw labels as they are; no copy (masks are read by the thousand).
        return array if array.dtype.kind == "u" else array.astype(np.int64)

    def explain(self, values: np.ndarray) -> str:
        return ""


class PaletteCodec(IndexCodec):
    """Palette indices are raw labels; the palette of the first mask colours the classes."""

    name = "palette"

    def __init__(self, description: str, palette: np.ndarray | None) -> None:
        super().__init__(description)
        self.colours = palette


class BinaryCodec(IndexCodec):
    """0 -> 0 and 255 (or 1) -> 1; the `kept` values (those to ignore) stay as they are, for
    the label map to ignore; any other value is undecodable (an anti-aliased edge)."""

    name = "binary"

    def __init__(self, description: str, kept: Sequence[int] = ()) -> None:
        super().__init__(description)
        self.kept = sorted(set(kept) - {0, 1, 255})  # 255 is foreground here, never ignored

    def decode(self, mask: StoredMask, path: Path) -> np.ndarray:
        array = _single_channel(mask, path, self.name)
        raw = np.full(array.shape, -1, np.int64)
        raw[array == 0] = 0
        raw[(array == 255) | (array == 1)] = 1
        if self.kept:
            kept = np.isin(array, self.kept)
            raw[kept] = array[kept]
        return raw

    def explain(self, values: np.ndarray) -> str:
        return (
            " Grey values between 0 and 255 come from anti-aliased drawing, resizing with "
            "interpolation or JPEG compression: save binary masks as PNG with only 0 and 255."
        )


class ColourCodec:
    """Colours -> raw labels through the class table; colours in no table are undecodable."""

    name = "rgb"

    def __init__(self, description: str, table: ClassTable) -> None:
        self.description, self.table_name = description, table.source
        self.colours = np.array([entry.colour for entry in table.entries], np.int64)
        keys = _colour_keys(self.colours)
        order = np.argsort(keys)
        self.keys = keys[order]
        self.values = np.array([entry.value for entry in table.entries], np.int64)[order]

    def decode(self, mask: StoredMask, path: Path) -> np.ndarray:
        array = mask.array if mask.palette is None else _palette_colours(mask)
        if array.ndim != 3:
            raise FcnsegError(
                f"mask {path} has one channel ({mask.mode}) but the masks are read as RGB "
                "colours; set data.mask_encoding: index if its values are class numbers."
            )
        keys = _colour_keys(array)
        position = np.searchsorted(self.keys, keys).clip(max=len(self.keys) - 1)
        return np.where(self.keys[position] == keys, self.values[position], -1)

    def explain(self, values: np.ndarray) -> str:
        if values.ndim != 2 or values.shape[1] != 3:  # palette indices, not colours
            return f" Give these palette entries colours of {self.table_name}, or fix the masks."
        colours = unique_rows(values)[0]
        blends = blended(colours, self.colours)
        if not blends.any():
            return f" Add these colours to {self.table_name}, or fix the masks."
        return (
            f" {int(blends.sum())} of these {len(colours)} colours are blends of two table "
            "colours, i.e. anti-aliased edges: draw masks without anti-aliasing and resize them "
            "with nearest-neighbour interpolation."
        )


def _palette_colours(mask: StoredMask) -> np.ndarray:
    """(H, W, 3) int64 colours of a palette mask; an index past the end of a damaged or short
    palette has no colour: (-1, -1, -1), which no table holds, so it is reported undecodable."""
    palette = np.full((256, 3), -1, np.int64)
    stored = np.asarray(mask.palette, np.int64).reshape(-1, 3)[:256]
    palette[: len(stored)] = stored
    return palette[mask.array]  # palette indices are uint8: always inside the 256 rows


def unique_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values (N,) or colours (N, 3) and the count of each, sorted. A colour is
    packed into one integer first: np.unique(axis=0) takes seconds on a large image's pixels."""
    if values.ndim == 1:
        return np.unique(values, return_counts=True)
    wide = values.astype(np.int64)
    if wide.shape[1] != 3 or wide.min(initial=0) < 0 or wide.max(initial=0) >= 2**21:
        return np.unique(values, axis=0, return_counts=True)
    keys = (wide[:, 0] << 42) | (wide[:, 1] << 21) | wide[:, 2]
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    return values[first], counts


def _colour_keys(colours: np.ndarray) -> np.ndarray:
    """One integer per colour (r * 65536 + g * 256 + b), for fast lookups."""
    colours = np.asarray(colours, np.int64)
    return (colours[..., 0] << 16) | (colours[..., 1] << 8) | colours[..., 2]


def blended(colours: np.ndarray, table: np.ndarray, tolerance: float = 6.0) -> np.ndarray:
    """For each colour, whether it lies (within `tolerance`) between two table colours."""
    colours, table = colours[:256].astype(np.float64), table.astype(np.float64)
    first, second = np.triu_indices(len(table), k=1)
    start, step = table[first], table[second] - table[first]  # (P, 3): one segment per pair
    offset = colours[:, None, :] - start[None]  # (C, P, 3)
    along = (offset * step).sum(-1) / np.maximum((step * step).sum(-1), 1e-12)
    inside = (along > 0.05) & (along < 0.95)  # strictly between the two, not one of them
    distance = np.linalg.norm(offset - along[..., None] * step[None], axis=-1)
    return ((distance <= tolerance) & inside).any(axis=1)


def _bits(mode: str) -> str:
    return "16-bit" if mode.startswith("I;16") else BITS.get(mode, "8-bit")


def detect_codec(
    requested: str,
    samples: list[StoredMask],
    table: ClassTable | None,
    num_classes: int | None,
    ignored: Sequence[int] = (),
) -> IndexCodec | ColourCodec:
    """The codec for masks like `samples`: data.mask_encoding, or guessed (see _guess).
    `ignored` are the raw values to ignore, which binary masks may hold besides 0 and 255."""
    if requested not in ENCODINGS:
        raise FcnsegError(f"data.mask_encoding is '{requested}'; accepted: {', '.join(ENCODINGS)}.")
    encoding = _guess(samples, table, num_classes) if requested == "auto" else requested
    how = "detected" if requested == "auto" else "set by data.mask_encoding"
    first = samples[0]
    if encoding == "rgb":
        if table is None or not table.has_colours:
            raise FcnsegError(
                f"the masks are RGB colour images ({first.mode}) but there is no colour table; "
                "add classes.txt ('index name r,g,b' per line) to the data folder, or set "
                "data.classes or data.colors."
            )
        count = len(table.entries)
        description = f"RGB colour masks, looked up in {table.source} ({count} colours), {how}"
        return ColourCodec(description, table)
    if encoding == "binary":
        description = f"binary masks ({_bits(first.mode)}, 0 and 255 -> 0 and 1), {how}"
        return BinaryCodec(description, ignored)
    if encoding == "palette":
        description = f"palette masks (mode P): the palette index is the class, {how}"
        return PaletteCodec(description, first.palette)
    layout = "saved as RGB with R = G = B" if first.array.ndim == 3 else f"mode {first.mode}"
    return IndexCodec(f"index masks ({_bits(first.mode)}, {layout}): values are classes, {how}")


def _guess(samples: list[StoredMask], table: ClassTable | None, num_classes: int | None) -> str:
    """Palette files are palette masks; colour files rgb (or index when R = G = B and no table
    colour matches); one channel of (almost) only 0 and 255 is binary when two classes are
    declared, or one output (a binary model), or none (as for `fcnseg inspect`), else index."""
    first = samples[0]
    if first.mode in ("P", "PA"):
        return "palette"
    if first.array.ndim == 3:
        grey = all((mask.array == mask.array[..., :1]).all() for mask in samples)
        has_colours = table is not None and table.has_colours
        return "index" if grey and not (has_colours and _colours_match(samples, table)) else "rgb"
    pixels = np.concatenate([mask.array.ravel() for mask in samples])
    values = set(np.unique(pixels).tolist())
    # Black and white with a few greys is a binary mask with anti-aliased edges (to report).
    black_and_white = np.mean((pixels == 0) | (pixels == 255)) > 0.95 and 1 not in values
    if black_and_white and (num_classes in (1, 2) or (num_classes is None and 255 in values)):
        return "binary"
    return "index"


def _colours_match(samples: list[StoredMask], table: ClassTable) -> bool:
    """Whether most sampled pixels have a colour of the table."""
    codec = ColourCodec("", table)
    decoded = [codec.decode(mask, Path()) for mask in samples]
    return np.mean([np.mean(raw >= 0) for raw in decoded]) > 0.5
