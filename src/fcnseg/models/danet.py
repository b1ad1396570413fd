"""DANet (Fu, Liu, Tian, Li, Bao, Fang, Lu 2019, "Dual Attention Network for Scene
Segmentation", CVPR): a dilated ResNet whose features pass two self-attention branches, one over
positions and one over channels, summed and scored:

    features (N, C, H/8, W/8)                  ResNet, last stages dilated (output stride 8)
      -> 3x3 conv -> position attention -> 3x3 conv    (N, C/4, H/8, W/8)
       + 3x3 conv -> channel attention  -> 3x3 conv    (N, C/4, H/8, W/8)
      -> dropout 0.1 -> 1x1 scores                     (N, K, H/8, W/8)
      -> bilinear upsampling to the input size         (N, K, H, W)

The modules are in `fcnseg.models.attention`. As in the paper: output stride 8 by default, both
attention modules with their weight initialised to 0 (each branch starts as plain convolutions),
query and key at 1/8 of the head's width, sum fusion, the authors' head width of a quarter of
the backbone's (512 on ResNet-50/101's 2048, 128 on ResNet-18/34's 512), their dropout of 0.1.

Deviations: the default backbone is ResNet-50 (the paper's is ResNet-101, available) and, like
every fcnseg model, it trains from scratch unless `backbone_weights` is given; no multi-grid;
no auxiliary losses on each branch's own scores (the authors' code adds two), since a model
returns one logits map here; the channel attention follows the paper's softmax, not the code's
(see ChannelAttention). Position attention memory grows with (H/8 * W/8)^2: inference chunks
its queries and never refuses, training refuses batches above `max_attention_mb` (see
PositionAttention for the figures and the reasons).
"""

from __future__ import annotations

import torch
from torch import nn

from fcnseg.models.attention import ChannelAttention, PositionAttention
from fcnseg.models.backbones import RESNET_DEPTHS, build_backbone
from fcnseg.models.base import SegmentationModel
from fcnseg.models.blocks import ConvBNReLU

RESNETS = tuple(RESNET_DEPTHS)


class DualAttentionHead(nn.Module):
    """The two attention branches on the deepest features, fused by a sum (the paper's 3.4)."""

    def __init__(
        self, channels: dict[int, int], output_stride: int, width: int, max_attention_mb: float
    ) -> None:
        super().__init__()
        in_channels = channels[output_stride]
        self.position = nn.Sequential(
            ConvBNReLU(in_channels, width),
            PositionAttention(width, max_training_mb=max_attention_mb),
            ConvBNReLU(width, width),
        )
        self.channel = nn.Sequential(
            ConvBNReLU(in_channels, width), ChannelAttention(), ConvBNReLU(width, width)
        )
        self.dropout = nn.Dropout2d(0.1)
        self.out_channels = width

    def forward(self, features: dict[int, torch.Tensor]) -> torch.Tensor:
        x = features[max(features)]  # (N, C, H/os, W/os)
        fused = self.position(x) + self.channel(x)  # (N, width, H/os, W/os)
        return self.dropout(fused)


class DANet(SegmentationModel):
    """DANet on a dilated ResNet; logits upsampled bilinearly to the input's size.

    `head_width` None is a quarter of the backbone's deepest width. `max_attention_mb` bounds
    the position attention weights a training batch may need (inference is not limited).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        backbone: str = "resnet50",
        output_stride: int = 8,
        head_width: int | None = None,
        backbone_weights: str | None = None,
        max_attention_mb: float = 2048.0,
    ) -> None:
        encoder = build_backbone(backbone, in_channels, output_stride, backbone_weights, RESNETS)
        width = head_width or max(1, encoder.channels[output_stride] // 4)
        decoder = DualAttentionHead(encoder.channels, output_stride, width, max_attention_mb)
        head = nn.Conv2d(width, num_classes, kernel_size=1)
        # Padding to a multiple of the output stride keeps every map exactly 1/stride in size.
        super().__init__(encoder, decoder, head, size_divisor=output_stride)
