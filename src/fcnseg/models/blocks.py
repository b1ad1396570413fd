"""Small building blocks shared by the architectures."""

from __future__ import annotations

import torch
from torch import nn

from fcnseg.models.atrous import atrous_conv3x3


class ConvBNReLU(nn.Sequential):
    """Conv (no bias: batch norm has one) -> BatchNorm -> ReLU; 'same' padding for odd kernels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        atrous_shortcuts: bool = True,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        if kernel_size == 3 and stride == 1 and dilation > 1:
            conv = atrous_conv3x3(in_channels, out_channels, dilation, shortcuts=atrous_shortcuts)
        else:
            conv = nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, dilation, bias=False
            )
        super().__init__(
            conv,
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """U-Net's unit: two 3x3 conv-BN-ReLU layers (padded, so the size is kept)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels)
        )


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise 3x3 (atrous) conv -> pointwise 1x1 conv -> BN -> ReLU (DeepLabv3+'s atrous
    separable convolution): about 9 / (9 + C_out) of the multiply-adds of a full 3x3 conv."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dilation: int = 1,
        atrous_shortcuts: bool = True,
    ) -> None:
        depthwise = atrous_conv3x3(
            in_channels, in_channels, dilation, groups=in_channels, shortcuts=atrous_shortcuts
        )
        super().__init__(
            depthwise,
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def bilinear_upsampling(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A transposed convolution that starts out as bilinear upsampling by an even `factor`.

    Kernel 2 * factor, stride factor, padding factor / 2: output size exactly factor * input.
    Output pixel p then takes input pixel i with weight 1 - |(p + 0.5) / factor - 0.5 - i|, the
    weight of `F.interpolate(mode="bilinear", align_corners=False)` (the two differ only at the
    border, where interpolate repeats the edge and this sees zeros). Each channel is upsampled on
    its own; the cross-channel weights start at zero and may be learned.
    """
    if factor < 2 or factor % 2:
        raise ValueError(f"bilinear_upsampling needs an even factor, got {factor}.")
    layer = nn.ConvTranspose2d(
        channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False
    )
    center = factor - 0.5  # the kernel's centre, between its two middle taps
    taps = 1 - (torch.arange(2 * factor) - center).abs() / factor  # (2f,)
    with torch.no_grad():
        layer.weight.zero_()
        for channel in range(channels):
            layer.weight[channel, channel] = torch.outer(taps, taps)
    return layer
