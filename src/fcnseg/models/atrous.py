"""Atrous (dilated) 3x3 convolution, computed by the cheapest exact route.

DeepLab's ASPP applies 3x3 filters at rates up to 18 (36 at output stride 8) to small maps: a
256x256 training crop gives a 16x16 map at output stride 16. Three rewrites make that cheap, and
all give the plain convolution's values and gradients (up to float rounding):

1. **Taps in the padding are dropped.** A tap offset by the rate r reads only zeros once r is at
   least the map's size in that direction, so those rows / columns of the kernel are cut off,
   down to the 1x1 centre filter that DeepLabv3 describes (section 3.3, Fig. 4: the degeneration
   that made it add image pooling). Any device, any groups.
2. **Depthwise filters run on sub-grids (CPU).** A depthwise filter of rate r only ever combines
   pixels that are a multiple of r apart, so the map splits into interleaved sub-grids, each
   convolved at a rate r / block ("space to batch", the way TensorFlow computes atrous
   convolution). oneDNN's depthwise forward kernel is fast up to rate 6 and over 15x slower
   beyond, so the block is the smallest that brings the rate to 6 or less.
3. **Depthwise gradients avoid oneDNN's dilated backward kernels (CPU)**, which are about 10x
   slower at any rate above 1 than at rate 1: the input's gradient is a forward convolution by
   the routes above, the kernel's gradient nine sums of products (`DepthwiseAtrousFunction`).

`benchmarks/atrous_speed.py` measures the kernels' cliffs and each route.

The shortcuts are on by default because they are what makes DeepLab fast on CPU: ASPP's three
depthwise convolutions take 5.3 ms instead of 17.1 ms at 360x480, and 23 ms instead of 157 ms
forward and backward in a 4x256x256 training step, and DeepLabv3+ runs at 0.94 / 0.96-0.98 of
segmentation-models-pytorch's eval / training time with them, 0.99 / 1.03 without them
(README.md and docs/models.md, "Atrous convolution on CPU"). `atrous_conv3x3(...,
shortcuts=False)`, the DeepLab models' `atrous_shortcuts=False`, builds the plain `nn.Conv2d`
instead: the same parameters and state-dict keys, for comparing against or ruling the shortcuts
out.

While a model is traced or compiled (`torch.jit.trace`, `torch.export`, ONNX export,
`torch.compile`), the plain convolution is used, so that the exported graph holds one
convolution that is right at every input size. `torch.jit.script` and `torch.fx.symbolic_trace`
cannot follow the size-dependent routes and are not supported.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

# The largest rate at which oneDNN's depthwise forward kernel keeps its fast path, measured with
# torch 2.13 on an AVX-512 AMD EPYC (benchmarks/atrous_speed.py). On other CPUs the cliff may sit
# elsewhere; the routes stay exact either way, only their speed changes.
FAST_FORWARD_RATE = 6


def atrous_conv3x3(
    in_channels: int, out_channels: int, rate: int, groups: int = 1, shortcuts: bool = True
) -> nn.Conv2d:
    """A bias-free 3x3 convolution at dilation `rate`, size kept: an `AtrousConv2d`, or with
    `shortcuts=False` the plain `nn.Conv2d` it stands in for (same parameters and keys)."""
    if shortcuts:
        return AtrousConv2d(in_channels, out_channels, rate, groups=groups)
    return nn.Conv2d(
        in_channels, out_channels, 3, padding=rate, dilation=rate, groups=groups, bias=False
    )


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

    @property
    def rate(self) -> int:
        return self.dilation[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or torch.compiler.is_compiling() or not self.is_atrous_3x3():
            return super().forward(x)
        # (Under autocast, autograd through `convolve` keeps the dtypes right.)
        custom_backward = not torch.is_autocast_enabled("cpu") and self.needs_grad(x)
        if custom_backward and self.is_depthwise_on_cpu(x):
            return DepthwiseAtrousFunction.apply(x, self.weight, self.bias, self)
        return self.convolve(x, self.weight, self.bias)

    def convolve(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """This layer's convolution of `x` with `weight`, by the route `plan` picks."""
        keep_rows, keep_columns, block = self.plan(x)
        weight = weight[
            :,
            :,
            slice(None) if keep_rows else slice(1, 2),
            slice(None) if keep_columns else slice(1, 2),
        ]  # (C_out, C_in / groups, 3 or 1, 3 or 1)
        # A direction left with one tap has dilation 1 and no padding; on a sub-grid the
        # rate is rate / block.
        dilation = (
            self.rate // block if keep_rows else 1,
            self.rate // block if keep_columns else 1,
        )
        padding = (dilation[0] if keep_rows else 0, dilation[1] if keep_columns else 0)
        if block == 1:
            return F.conv2d(x, weight, bias, 1, padding, dilation, self.groups)
        subgrids = space_to_batch(x, block)  # (N * block^2, C, H / block, W / block)
        y = F.conv2d(subgrids, weight, bias, 1, padding, dilation, self.groups)
        y = batch_to_space(y, block, *x.shape[-2:])  # (N, C_out, H, W), channels-last
        return y if is_channels_last(x) else y.contiguous()

    def plan(self, x: torch.Tensor) -> tuple[bool, bool, int]:
        """How to convolve `x`: whether the kernel keeps its rows and its columns of off-centre
        taps (they see the map only if the rate is below its size), and the block of the
        sub-grids to convolve instead of `x` (1: convolve `x` itself)."""
        height, width = x.shape[-2:]
        keep_rows, keep_columns = self.rate < height, self.rate < width
        if not (keep_rows or keep_columns) or not self.is_depthwise_on_cpu(x):
            return keep_rows, keep_columns, 1
        # The smallest block that brings the rate within the forward kernel's fast path.
        block = min(
            block
            for block in range(1, self.rate + 1)
            if self.rate % block == 0 and self.rate // block <= FAST_FORWARD_RATE
        )
        return keep_rows, keep_columns, block

    def is_atrous_3x3(self) -> bool:
        """Still what __init__ built (the routes assume it): stride 1, padding = dilation."""
        return (
            self.stride == (1, 1)
            and self.dilation[0] == self.dilation[1]
            and self.padding == self.dilation
            and self.padding_mode == "zeros"
        )

    def is_depthwise_on_cpu(self, x: torch.Tensor) -> bool:
        depthwise = self.groups == self.in_channels == self.out_channels
        return depthwise and x.device.type == "cpu"

    def needs_grad(self, x: torch.Tensor) -> bool:
        parameters = (self.weight, self.bias) if self.bias is not None else (self.weight,)
        wanted = x.requires_grad or any(p.requires_grad for p in parameters)
        return torch.is_grad_enabled() and wanted


class DepthwiseAtrousFunction(torch.autograd.Function):
    """A depthwise AtrousConv2d whose backward pass avoids oneDNN's dilated backward kernels.

    The input's gradient is the same convolution, applied to the output's gradient with the
    kernel turned by 180 degrees, so it takes the fast forward routes too. The kernel's gradient
    at each tap is the sum, over the positions where the tap sees the map, of the output's
    gradient times the input shifted by the tap's offset: nine sums of products, most of them
    over small overlaps when the rate is large against the map. Differentiable once (no
    `create_graph=True` through it).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        layer: AtrousConv2d,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.layer, ctx.has_bias = layer, bias is not None
        return layer.convolve(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        needs_input, needs_weight, needs_bias, _ = ctx.needs_input_grad
        grad_input = ctx.layer.convolve(grad, weight.flip(-2, -1), None) if needs_input else None
        grad_weight = tap_gradients(x, grad, ctx.layer.rate) if needs_weight else None
        grad_bias = grad.sum(dim=(0, 2, 3)) if ctx.has_bias and needs_bias else None
        return grad_input, grad_weight, grad_bias, None


def tap_gradients(x: torch.Tensor, grad: torch.Tensor, rate: int) -> torch.Tensor:
    """The gradient of a depthwise 3x3 kernel at dilation `rate`: (C, 1, 3, 3)."""
    height, width = x.shape[-2:]
    x, grad = x.permute(0, 2, 3, 1), grad.permute(0, 2, 3, 1)  # (N, H, W, C): views if NHWC
    taps = x.new_zeros(x.shape[-1], 3, 3)
    for row in range(3):
        dy = (row - 1) * rate  # the tap reads the input dy rows below the output pixel
        top, bottom = max(0, -dy), min(height, height - dy)  # output rows where it sees the map
        for column in range(3):
            dx = (column - 1) * rate
            left, right = max(0, -dx), min(width, width - dx)
            if top < bottom and left < right:
                overlap = (
                    grad[:, top:bottom, left:right]
                    * x[:, top + dy : bottom + dy, left + dx : right + dx]
                )
                taps[:, row, column] = overlap.sum(dim=(0, 1, 2))
    return taps.unsqueeze(1)


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


def is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
