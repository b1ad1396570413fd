"""Small building blocks shared by the architectures."""

from __future__ import annotations

from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv (no bias: batch norm has one) -> BatchNorm -> ReLU; 'same' padding for odd kernels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, dilation, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """U-Net's unit: two 3x3 conv-BN-ReLU layers (padded, so the size is kept)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels)
        )
