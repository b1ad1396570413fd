"""DeepLabv3 (Chen, Papandreou, Schroff, Adam 2017, "Rethinking Atrous Convolution for Semantic
Image Segmentation") and DeepLabv3+ (Chen, Zhu, Papandreou, Schroff, Adam 2018, "Encoder-Decoder
with Atrous Separable Convolution for Semantic Image Segmentation").

A ResNet with dilated last stages (output stride 16 or 8) feeds Atrous Spatial Pyramid Pooling:

    features (N, C, H/os, W/os)
      -> [1x1 | 3x3 rate r1 | 3x3 rate r2 | 3x3 rate r3 | image pooling]   5 x (N, 256, H/os, W/os)
      -> concat -> 1x1 projection                                         (N, 256, H/os, W/os)

with rates 6, 12, 18 at output stride 16 and twice that at 8 (the same field of view in pixels).
DeepLabv3 scores that directly (1x1 conv) and upsamples bilinearly. DeepLabv3+ adds a decoder:

    ASPP, bilinear 4x (to stride 4)                                       (N, 256, H/4, W/4)
      + concat 1x1 projection of the stride-4 features to 48 channels     (N, 304, H/4, W/4)
      -> two 3x3 convs (256) -> 1x1 scores -> bilinear 4x                 (N, K, H, W)

`separable=True` (DeepLabv3+'s default, as in its paper) makes the atrous 3x3 convolutions of
ASPP and the decoder depthwise separable. Deviations: no multi-grid rates inside the last ResNet
stage and no dropout after the projection (neither is needed for the architecture; both are
training refinements).

The 3x3 convolutions of ASPP and of v3+'s decoder are `AtrousConv2d`s, which compute the plain
convolution's values and gradients by exact CPU shortcuts (`fcnseg.models.atrous`).
`atrous_shortcuts=False` builds plain `nn.Conv2d`s instead, with the same parameters and
state-dict keys, so that checkpoints load either way. The default is on because of what the
shortcuts were measured to save (README.md, docs/models.md): ASPP's three depthwise convolutions
take 5.3 ms instead of 17.1 ms at 360x480 and 23 ms instead of 157 ms forward and backward in a
training step, and DeepLabv3+'s eval / training time against segmentation-models-pytorch's is
0.94 / 0.96-0.98 with them and 0.99 / 1.03 without them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.errors import FcnsegError
from fcnseg.models.backbones import RESNET_DEPTHS, build_backbone
from fcnseg.models.base import SegmentationModel
from fcnseg.models.blocks import ConvBNReLU, SeparableConvBNReLU

RESNETS = tuple(RESNET_DEPTHS)


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling: four convolution branches and image pooling, projected."""

    def __init__(
        self,
        in_channels: int,
        output_stride: int,
        out_channels: int = 256,
        separable: bool = False,
        atrous_shortcuts: bool = True,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise FcnsegError(f"ASPP needs output_stride 8 or 16, got {output_stride}.")
        self.rates = tuple(rate * 16 // output_stride for rate in (6, 12, 18))
        atrous = SeparableConvBNReLU if separable else ConvBNReLU
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_channels, out_channels, kernel_size=1)]
            + [
                atrous(in_channels, out_channels, dilation=rate, atrous_shortcuts=atrous_shortcuts)
                for rate in self.rates
            ]
        )
        # Image pooling: the global context that a rate-18 3x3 filter on a small map, mostly
        # reaching into padding, no longer provides.
        self.image_pooling = ConvBNReLU(in_channels, out_channels, kernel_size=1)
        self.project = ConvBNReLU(5 * out_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pooled = self.image_pooling(x.mean(dim=(2, 3), keepdim=True))  # (N, 256, 1, 1)
        # Upsampling a 1x1 map bilinearly is a broadcast: expand it instead of interpolating.
        branches = [branch(x) for branch in self.branches]  # 4 x (N, 256, H, W)
        branches.append(pooled.expand(-1, -1, height, width))
        return self.project(torch.cat(branches, dim=1))  # (N, 256, H, W)


class DeepLabV3Decoder(nn.Module):
    """DeepLabv3: ASPP on the deepest features, scored at the output stride."""

    def __init__(
        self,
        channels: dict[int, int],
        *,
        output_stride: int,
        separable: bool,
        atrous_shortcuts: bool,
    ) -> None:
        super().__init__()
        self.aspp = ASPP(
            channels[output_stride],
            output_stride,
            separable=separable,
            atrous_shortcuts=atrous_shortcuts,
        )
        self.out_channels = 256

    def forward(self, features: dict[int, torch.Tensor]) -> torch.Tensor:
        return self.aspp(features[max(features)])  # (N, 256, H/os, W/os)


class DeepLabV3PlusDecoder(nn.Module):
    """DeepLabv3+: ASPP, upsampled to stride 4 and refined with the stride-4 features."""

    def __init__(
        self,
        channels: dict[int, int],
        *,
        output_stride: int,
        separable: bool,
        atrous_shortcuts: bool,
    ) -> None:
        super().__init__()
        self.aspp = ASPP(
            channels[output_stride],
            output_stride,
            separable=separable,
            atrous_shortcuts=atrous_shortcuts,
        )
        # 48 channels: few enough that the low-level features do not outweigh ASPP's 256.
        self.low_level = ConvBNReLU(channels[4], 48, kernel_size=1)
        refine = SeparableConvBNReLU if separable else ConvBNReLU
        self.refine = nn.Sequential(
            refine(256 + 48, 256, atrous_shortcuts=atrous_shortcuts),
            refine(256, 256, atrous_shortcuts=atrous_shortcuts),
        )
        self.separable = separable
        self.out_channels = 256

    def forward(self, features: dict[int, torch.Tensor]) -> torch.Tensor:
        low_level = self.low_level(features[4])  # (N, 48, H/4, W/4)
        x = self.aspp(features[max(features)])  # (N, 256, H/os, W/os)
        x = F.interpolate(x, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([x, low_level], dim=1)  # (N, 304, H/4, W/4)
        if self.separable:
            # Depthwise convolutions on large maps run several times faster on channels-last
            # tensors (oneDNN on CPU); the copy costs far less than it saves.
            x = x.contiguous(memory_format=torch.channels_last)
        return self.refine(x)  # (N, 256, H/4, W/4)


class DeepLab(SegmentationModel):
    """DeepLabv3 or v3+ on a dilated ResNet; logits upsampled bilinearly to the input's size.

    Options by keyword only: both builders pass the same seven, and in a positional list two of
    the same type (num_classes and output_stride, say) could swap unnoticed.
    """

    def __init__(
        self,
        decoder_class: type[DeepLabV3Decoder] | type[DeepLabV3PlusDecoder],
        *,
        num_classes: int,
        in_channels: int,
        backbone: str,
        output_stride: int,
        separable: bool,
        backbone_weights: str | None,
        atrous_shortcuts: bool,
    ) -> None:
        encoder = build_backbone(backbone, in_channels, output_stride, backbone_weights, RESNETS)
        decoder = decoder_class(
            encoder.channels,
            output_stride=output_stride,
            separable=separable,
            atrous_shortcuts=atrous_shortcuts,
        )
        head = nn.Conv2d(decoder.out_channels, num_classes, kernel_size=1)
        # Padding to a multiple of the output stride keeps every map exactly 1/stride in size.
        super().__init__(encoder, decoder, head, size_divisor=output_stride)


def deeplabv3(
    num_classes: int,
    in_channels: int = 3,
    backbone: str = "resnet50",
    output_stride: int = 16,
    separable: bool = False,
    backbone_weights: str | None = None,
    atrous_shortcuts: bool = True,
) -> DeepLab:
    """DeepLabv3: dilated ResNet + ASPP, scored at the output stride."""
    return DeepLab(
        DeepLabV3Decoder,
        num_classes=num_classes,
        in_channels=in_channels,
        backbone=backbone,
        output_stride=output_stride,
        separable=separable,
        backbone_weights=backbone_weights,
        atrous_shortcuts=atrous_shortcuts,
    )


def deeplabv3plus(
    num_classes: int,
    in_channels: int = 3,
    backbone: str = "resnet50",
    output_stride: int = 16,
    separable: bool = True,
    backbone_weights: str | None = None,
    atrous_shortcuts: bool = True,
) -> DeepLab:
    """DeepLabv3+: DeepLabv3's ASPP followed by a decoder refining at stride 4."""
    return DeepLab(
        DeepLabV3PlusDecoder,
        num_classes=num_classes,
        in_channels=in_channels,
        backbone=backbone,
        output_stride=output_stride,
        separable=separable,
        backbone_weights=backbone_weights,
        atrous_shortcuts=atrous_shortcuts,
    )
