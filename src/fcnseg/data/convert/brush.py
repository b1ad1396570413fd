"""Label Studio's brush masks: its own run-length encoding (thi.ng's rle-pack), decoded here.

A brush region's `rle` is a list of bytes, read as one bit stream, most significant bit first:

    32 bits   n, the number of values: height x width x 4 (the region drawn as RGBA pixels)
     5 bits   the word size w, minus one (8 in every export seen)
     4 x 4    the four run-length field sizes s0..s3, each minus one (3, 4, 8, 16)
    then blocks until n values are out:
     1 bit    1: a run of one value repeated, 0: a sequence of distinct values
     2 bits   which field size s follows
     s bits   the block's length, minus one
     w bits   the repeated value, or one w-bit word for each value of the sequence

The mask is the alpha channel (every fourth value): a pixel belongs to the region where its
alpha is above 0, as Label Studio's own converter decides (label_studio_converter.brush).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class _Bits:
    """A big-endian bit reader over bytes."""

    def __init__(self, data: bytes) -> None:
        self.data, self.position = data, 0

    def read(self, count: int) -> int:
        end = self.position + count
        if end > len(self.data) * 8:
            raise ValueError(f"the data ends after {len(self.data) * 8} bits, in mid-block")
        first, last = self.position // 8, (end + 7) // 8
        window = int.from_bytes(self.data[first:last], "big")  # at most 5 bytes for 32 bits
        self.position = end
        return (window >> (last * 8 - end)) & ((1 << count) - 1)


def decode_values(rle: Sequence[int]) -> np.ndarray:
    """The flat values the stream encodes (uint8 for word sizes up to 8, else wider)."""
    if not all(isinstance(byte, int) and 0 <= byte < 256 for byte in rle):
        raise ValueError("the rle list must hold whole numbers 0-255 (bytes)")
    bits = _Bits(bytes(rle))
    count, word = bits.read(32), bits.read(5) + 1
    sizes = [bits.read(4) + 1 for _ in range(4)]
    out = np.zeros(count, np.uint8 if word <= 8 else np.uint32)
    index = 0
    while index < count:
        repeated = bits.read(1)
        end = index + 1 + bits.read(sizes[bits.read(2)])
        if end > count:
            raise ValueError(f"a block runs to value {end}, past the {count} the header declares")
        if repeated:
            out[index:end] = bits.read(word)
        else:
            out[index:end] = [bits.read(word) for _ in range(end - index)]
        index = end
    return out


def decode_brush(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of one brush region of an image of `height` x `width` pixels."""
    values = decode_values(rle)
    if values.size != height * width * 4:
        raise ValueError(
            f"it holds {values.size} values, not 4 x {height} x {width} = {height * width * 4} "
            "(RGBA pixels of the original image)"
        )
    return values.reshape(height, width, 4)[:, :, 3] > 0
