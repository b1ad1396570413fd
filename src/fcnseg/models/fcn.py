"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer, Darrell 2015, "Fully Convolutional Networks for
Semantic Segmentation").

VGG-16 with its classifier turned into convolutions (fc6 a 7x7, fc7 a 1x1) scores every stride-32
position. FCN-32s upsamples these scores 32x in one step. FCN-16s first upsamples them 2x and adds
scores computed from pool4 (stride 16); FCN-8s does the same once more with pool3 (stride 8):

    pool5 -> fc6 -> fc7 -> score_fr                                 (N, K, H/32, W/32)
      -> 2x up + score_pool4(pool4)                                 (N, K, H/16, W/16)  16s, 8s
      -> 2x up + score_pool3(pool3)                                 (N, K, H/8, W/8)    8s
      -> 32x / 16x / 8x up                                          (N, K, H, W)

Every upsampling is a transposed convolution initialised to bilinear interpolation and then
learned. Every score layer (score_fr and the skip scores) starts at zero, weights and biases, as
in the paper's reference Caffe code: a fresh FCN of any kind outputs exactly zero logits, and
training moves them away from zero through the gradients of the score layers' weights (the
backbone's gradients are zero on the first step only).

The paper trains in stages, FCN-16s initialised from a trained FCN-32s and FCN-8s from that
FCN-16s. Loaded that way (every weight but the final upsampling, whose kernel differs in size),
an FCN-16s starts out computing the FCN-32s's stride-32 scores upsampled 2x and then 16x, since
its pool4 scores are zero. That is close to, but not the same as, its FCN-32s's single 32x
upsampling: two bilinear steps weigh the scores differently from one.

Deliberate deviation, for any input size: the paper pads the image by 100 pixels and crops each
fused map at hand-computed offsets. Here the image is padded (bottom/right) to a multiple of 32,
fc6 is padded by 3 so that it keeps the stride-32 map's size, and each upsampling by f uses
padding f/2; then every map is exactly f times its input, aligned like `F.interpolate(...,
align_corners=False)`, and the only crop left is removing the padding at the end.
"""

from __future__ import annotations

import torch
from torch import nn

from fcnseg.errors import FcnsegError
from fcnseg.models.backbones import build_backbone
from fcnseg.models.base import SegmentationModel
from fcnseg.models.blocks import bilinear_upsampling


class FCNDecoder(nn.Module):
    """Score the stride-32 features, then fuse skip scores down to `finest_stride`."""

    def __init__(self, channels: dict[int, int], num_classes: int, finest_stride: int) -> None:
        super().__init__()
        if finest_stride not in (8, 16, 32):
            raise FcnsegError(f"FCN fuses down to stride 8, 16 or 32, not {finest_stride}.")
        self.score_fr = zero_score_layer(channels[32], num_classes)
        self.skip_strides = [stride for stride in (16, 8) if stride >= finest_stride]
        # score_pool4, score_pool3 and the 2x upsamplings before them (upscore2, upscore_pool4)
        self.score_skips = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for stride in self.skip_strides:
            self.score_skips.append(zero_score_layer(channels[stride], num_classes))
            self.upsample.append(bilinear_upsampling(num_classes, factor=2))

    def forward(self, features: dict[int, torch.Tensor]) -> torch.Tensor:
        scores = self.score_fr(features[32])  # (N, K, H/32, W/32)
        for stride, up, score_skip in zip(
            self.skip_strides, self.upsample, self.score_skips, strict=True
        ):
            scores = up(scores) + score_skip(features[stride])  # (N, K, H/s, W/s)
        return scores


def zero_score_layer(in_channels: int, num_classes: int) -> nn.Conv2d:
    """A 1x1 score layer with zero weights and bias, as the paper's reference code has them."""
    score = nn.Conv2d(in_channels, num_classes, kernel_size=1)
    nn.init.zeros_(score.weight)
    nn.init.zeros_(score.bias)
    return score


class FCN(SegmentationModel):
    """FCN on VGG-16; `finest_stride` 32, 16 or 8 gives FCN-32s, FCN-16s or FCN-8s."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        finest_stride: int = 8,
        backbone: str = "vgg16",
        backbone_weights: str | None = None,
    ) -> None:
        encoder = build_backbone(
            backbone,
            in_channels,
            weights=backbone_weights,
            choices=("vgg16", "vgg16_bn"),
            fully_convolutional=True,
        )
        decoder = FCNDecoder(encoder.channels, num_classes, finest_stride)
        # The last upsampling, to the input's resolution, is the model's head.
        head = bilinear_upsampling(num_classes, factor=finest_stride)
        super().__init__(encoder, decoder, head, size_divisor=32)


def fcn32s(
    num_classes: int,
    in_channels: int = 3,
    backbone: str = "vgg16",
    backbone_weights: str | None = None,
) -> FCN:
    """FCN-32s: stride-32 scores, upsampled 32x."""
    return FCN(num_classes, in_channels, 32, backbone, backbone_weights)


def fcn16s(
    num_classes: int,
    in_channels: int = 3,
    backbone: str = "vgg16",
    backbone_weights: str | None = None,
) -> FCN:
    """FCN-16s: stride-32 scores fused with pool4's, upsampled 16x."""
    return FCN(num_classes, in_channels, 16, backbone, backbone_weights)


def fcn8s(
    num_classes: int,
    in_channels: int = 3,
    backbone: str = "vgg16",
    backbone_weights: str | None = None,
) -> FCN:
    """FCN-8s: stride-32 scores fused with pool4's and pool3's, upsampled 8x."""
    return FCN(num_classes, in_channels, 8, backbone, backbone_weights)
