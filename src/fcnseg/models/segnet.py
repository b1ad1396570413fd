"""SegNet (Badrinarayanan, Kendall, Cipolla 2017, "SegNet: A Deep Convolutional Encoder-Decoder
Architecture for Image Segmentation").

The encoder is VGG-16's 13 convolutions with batch norm, without its classifier. Each 2x2 max pool
remembers where each maximum came from; the mirrored decoder stage puts every value back at that
position (max-unpooling, zeros elsewhere) and densifies the sparse map with 3x3 convolutions:

    encoder stage s: convs -> 2x2 max pool, keep indices     (N, C_s, H/2^s, W/2^s)
    decoder stage s: max-unpool with stage s's indices -> convs, mirrored widths
    last decoder conv: 3x3, 64 -> K                           (N, K, H, W)

No skip features are stored, only the indices: that is the memory saving the paper is about.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.models.backbones import build_backbone
from fcnseg.models.base import SegmentationModel, pad_to_multiple
from fcnseg.models.blocks import ConvBNReLU

# The decoder's 3x3 convolutions, deepest stage first: VGG-16's stages mirrored, each ending at
# the width of the stage above it. The last one, 64 -> K, is the head.
SEGNET_DECODER_STAGES = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64,))


class SegNetDecoder(nn.Module):
    """Stages of 3x3 conv-BN-ReLU; SegNet.forward max-unpools before each."""

    def __init__(self, in_channels: int = 512) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        width = in_channels
        for widths in SEGNET_DECODER_STAGES:
            layers = []
            for out_channels in widths:
                layers.append(ConvBNReLU(width, out_channels))
                width = out_channels
            self.stages.append(nn.Sequential(*layers))
        self.out_channels = width


class SegNet(SegmentationModel):
    """SegNet; `backbone` "vgg16_bn" (the paper's) or "vgg16"."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        backbone: str = "vgg16_bn",
        backbone_weights: str | None = None,
    ) -> None:
        encoder = build_backbone(
            backbone, in_channels, weights=backbone_weights, choices=("vgg16_bn", "vgg16")
        )
        decoder = SegNetDecoder(encoder.channels[32])
        head = nn.Conv2d(decoder.out_channels, num_classes, kernel_size=3, padding=1)
        super().__init__(encoder, decoder, head, size_divisor=32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Overrides the generic forward: the pools' indices travel from encoder to decoder.
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, self.size_divisor)  # (N, C_in, H', W')
        indices = []
        for stage in self.backbone.stages:
            x, where = F.max_pool2d(stage(x), kernel_size=2, return_indices=True)
            indices.append(where)  # (N, C_s, H'/2^s, W'/2^s)
        for stage, where in zip(self.decoder.stages, reversed(indices), strict=True):
            x = stage(F.max_unpool2d(x, where, kernel_size=2))  # (N, C, 2h, 2w)
        return self.head(x)[..., :height, :width]  # (N, K, H, W)
