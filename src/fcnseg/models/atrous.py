"""Atrous (dilated) 3x3 convolution, computed by the cheapest exact route.

DeepLab's ASPP applies 3x3 filters at rates up to 18 (36 at output stride 8) to small maps: a
256x256 training crop gives a 16x16 map at output stride 16. Two rewrites make that cheap, and
both give the plain convolution's values and gradients (up to float rounding):

1. **Taps in the padding are dropped.** A tap offset by the rate r reads only zeros once r is at
   least the map's size in that direction, so those rows / columns of the kernel are cut off,
   down to the 1x1 centre filter that DeepLabv3 describes (section 3.3, Fig. 4: the degeneration
   that made it add image pooling). Any device, any groups.
2. **Depthwise filters run on sub-grids (CPU).** A depthwise filter of rate r only ever combines
   pixels that are a multiple of r apart, so the map splits into interleaved sub-grids, each
   convolved at a rate r / block ("space to batch", the way TensorFlow computes atrous
   convolution). oneDNN's depthwise kernels are fast at rate 1, forward and backward, and for
   the forward pass up to rate 6; beyond that they are several times slower. See
   `benchmarks/atrous_speed.py` for the measurements.

While a model is traced or compiled (ONNX export), the plain convolution is used, so that the
exported graph holds one convolution that is right at every input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The largest rate at which oneDNN's depthwise forward kernel keeps its fast path (CPU).
FAST_FORWARD_RATE = 6


class AtrousConv2d(nn.Conv2d):
    """A 3x3 convolution at dilation `rate`, padded by `rate` so the size is kept (stride 1).

    A drop-in `nn.Conv2d` (same parameters, same state-dict keys) whose forward takes the exact
    shortcuts described in this module's docstring.
    """

    def __init__(
        self, in_channels: int, out_channels: int, rate: int, groups: int = 1, bias: bool = False
    ) -> None:
        super().__init__(
            in_channels, out_channels, 3, padding=rate, dilation=rate, groups=groups, bias=bias
        )
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return super().forward(x)
        height, width = x.shape[-2:]
        rows, columns = self.rate < height, self.rate < width  # do off-centre taps see the map?
        weight = self.weight[
            :, :, slice(None) if rows else slice(1, 2), slice(None) if columns else slice(1, 2)
        ]  # (C_out, C_in / groups, 3 or 1, 3 or 1)
        # A 1-tap direction gets dilation 1 too: oneDNN's backward is slow for any dilation.
        rate = (self.rate if rows else 1, self.rate if columns else 1)
        padding = (rate[0] if rows else 0, rate[1] if columns else 0)
        block = self.subgrid_block(x) if rows or columns else 1
        if block == 1:
            return F.conv2d(x, weight, self.bias, 1, padding, rate, self.groups)
        subgrids = space_to_batch(x, block)  # (N * block^2, C, H / block, W / block)
        rate = (max(1, rate[0] // block), max(1, rate[1] // block))  # on a sub-grid
        padding = (padding[0] // block, padding[1] // block)
        y = F.conv2d(subgrids, weight, self.bias, 1, padding, rate, self.groups)
        return batch_to_space(y, block, height, width)  # (N, C_out, H, W)

    def subgrid_block(self, x: torch.Tensor) -> int:
        """The block of the sub-grids to convolve instead of `x`; 1 to convolve `x` itself."""
        depthwise = self.groups == self.in_channels == self.out_channels
        if not depthwise or x.device.type != "cpu" or self.rate == 1:
            return 1
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)
        height, width = x.shape[-2:]
        if needs_grad and min(height, width) > self.rate and max(height, width) > 2 * self.rate:
            # Rate 1 on sub-grids of at least 2x3, where the backward kernels are fast too (on
            # 2x2 sub-grids they are not).
            return self.rate
        # The smallest block that brings the rate within the forward kernel's fast path.
        return min(
            block
            for block in range(1, self.rate + 1)
            if self.rate % block == 0 and self.rate // block <= FAST_FORWARD_RATE
        )


def space_to_batch(x: torch.Tensor, block: int) -> torch.Tensor:
    """(N, C, H, W) -> (N * block^2, C, ceil(H / block), ceil(W / block)), channels-last.

    Image n's sub-grid (i, j), at index (n * block + i) * block + j, holds its pixels at rows
    i, i + block, ... and columns j, j + block, .... H and W are rounded up with zeros, which are
    exactly what the convolution's own zero padding would have read there.
    """
    n, c, height, width = x.shape
    rows, columns = -(-height // block), -(-width // block)
    x = x.permute(0, 2, 3, 1)  # (N, H, W, C): a view for a channels-last x
    x = F.pad(x, (0, 0, 0, columns * block - width, 0, rows * block - height))
    x = x.reshape(n, rows, block, columns, block, c).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n * block * block, rows, columns, c).permute(0, 3, 1, 2)


def batch_to_space(y: torch.Tensor, block: int, height: int, width: int) -> torch.Tensor:
    """The inverse of `space_to_batch`, cropped to (N, C, height, width), channels-last."""
    batch, c, rows, columns = y.shape
    y = y.permute(0, 2, 3, 1).reshape(batch // block**2, block, block, rows, columns, c)
    y = y.permute(0, 3, 1, 4, 2, 5).reshape(-1, rows * block, columns * block, c)
    return y[:, :height, :width].permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
