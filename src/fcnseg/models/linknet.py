"""LinkNet (Chaurasia and Culurciello 2017, "LinkNet: Exploiting Encoder Representations for
Efficient Semantic Segmentation").

A ResNet-18 encoder; the input of each encoder stage is added to the output of the decoder block
that mirrors it (addition, not concatenation: the decoder stays as narrow as the encoder):

    stem: 7x7/2 conv, 3x3/2 max pool  e0 (N, 64, H/4)     decoder block (m -> n):
    layer1                            e1 (N, 64, H/4)       1x1 conv m -> m/4
    layer2                            e2 (N, 128, H/8)      3x3 transposed conv, stride 2
    layer3                            e3 (N, 256, H/16)     1x1 conv m/4 -> n
    layer4                            e4 (N, 512, H/32)     (each with BN and ReLU)

    d4 = block(512 -> 256)(e4) + e3                        (N, 256, H/16, W/16)
    d3 = block(256 -> 128)(d4) + e2                        (N, 128, H/8, W/8)
    d2 = block(128 -> 64)(d3) + e1                         (N, 64, H/4, W/4)
    d1 = block(64 -> 64, no upsampling)(d2) + e0           (N, 64, H/4, W/4)
    head: 3x3 transposed conv /2 (64 -> 32), 3x3 conv (32), 2x2 transposed conv /2 (32 -> K)

About 11.5 M parameters, as in the paper. Decoder widths follow the encoder's `channels`, so
other ResNets work too.

One deliberate deviation: the paper's figure downsamples in every encoder block, but ResNet-18's
first stage keeps the stem's stride 4, so the first decoder block does not upsample either (as
the common PyTorch implementations of LinkNet do). Its link, the stem's max-pool output, is
recomputed from the stride-2 feature, since the backbone exposes only the deepest feature of
each stride.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.models.backbones import RESNET_DEPTHS, build_backbone
from fcnseg.models.base import SegmentationModel
from fcnseg.models.blocks import ConvBNReLU


class LinkNetDecoderBlock(nn.Sequential):
    """1x1 conv (m -> m/4), 3x3 transposed conv (stride 2, or a 3x3 conv), 1x1 conv (m/4 -> n)."""

    def __init__(self, in_channels: int, out_channels: int, upsample: bool = True) -> None:
        width = in_channels // 4
        if upsample:  # output_padding 1 makes the output exactly twice the input
            middle = nn.ConvTranspose2d(
                width, width, 3, stride=2, padding=1, output_padding=1, bias=False
            )
        else:
            middle = nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False)
        super().__init__(
            ConvBNReLU(in_channels, width, kernel_size=1),
            middle,
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            ConvBNReLU(width, out_channels, kernel_size=1),
        )


class LinkNetDecoder(nn.Module):
    """One block per encoder stage, from the deepest up, each added to that stage's input."""

    def __init__(self, channels: dict[int, int]) -> None:
        super().__init__()
        # The links: e3, e2, e1 are the stride-16, 8, 4 features; e0 has the stem's width.
        self.link_strides = [16, 8, 4]
        widths = [channels[32]] + [channels[stride] for stride in self.link_strides]
        self.blocks = nn.ModuleList(
            LinkNetDecoderBlock(deep, shallow) for deep, shallow in pairwise(widths)
        )
        self.block1 = LinkNetDecoderBlock(channels[4], channels[2], upsample=False)
        self.out_channels = channels[2]

    def forward(self, features: dict[int, torch.Tensor]) -> torch.Tensor:
        x = features[32]  # e4 (N, C_32, H/32, W/32)
        for stride, block in zip(self.link_strides, self.blocks, strict=True):
            x = block(x) + features[stride]  # d4, d3, d2 (N, C_s, H/s, W/s)
        stem = F.max_pool2d(features[2], kernel_size=3, stride=2, padding=1)  # e0 (N, 64, H/4)
        return self.block1(x) + stem  # d1 (N, 64, H/4, W/4)


class LinkNetHead(nn.Sequential):
    """The paper's final block: full (transposed) convolutions back to the input's resolution."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(
                in_channels, 32, 3, stride=2, padding=1, output_padding=1, bias=False
            ),  # (N, 32, H/2, W/2)
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            ConvBNReLU(32, 32),
            nn.ConvTranspose2d(32, num_classes, kernel_size=2, stride=2),  # (N, K, H, W)
        )


class LinkNet(SegmentationModel):
    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        backbone: str = "resnet18",
        backbone_weights: str | None = None,
    ) -> None:
        encoder = build_backbone(
            backbone, in_channels, weights=backbone_weights, choices=tuple(RESNET_DEPTHS)
        )
        decoder = LinkNetDecoder(encoder.channels)
        head = LinkNetHead(decoder.out_channels, num_classes)
        super().__init__(encoder, decoder, head, size_divisor=32)
