"""U-Net (Ronneberger, Fischer, Brox 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation"): a contracting path of double 3x3 convolutions and 2x2 max pools, an expanding
path of 2x2 up-convolutions, each followed by concatenation with the skip of the same stride and
a double convolution, and a 1x1 convolution to class scores.

Differences from the paper, both now standard: convolutions are padded (the paper's valid
convolutions shrink the output and force tiling with overlap) and followed by batch norm.

`backbone` swaps the classic contracting path for a VGG or ResNet (e.g. "resnet34", the usual
pairing in practice): the decoder starts from the width the backbone declares for its deepest
features and ends at the backbone's shallowest stride (2 for these), from where the class scores
are upsampled bilinearly. Each up-convolution halves the width, as in the paper: on the classic
encoder each stage is then as wide as its skip; on ResNet-18/34 and VGG-16 the stages are 256,
128, 64, 32; on ResNet-50/101 (2048 deep) 1024, 512, 256, 128.

`attention=True` makes it an Attention U-Net (Oktay et al. 2018, "Attention U-Net: Learning Where
to Look for the Pancreas", MIDL): every skip passes an additive attention gate
(`fcnseg.models.attention.AttentionGate`) before the concatenation, its gating signal the decoder
features one level coarser, the ones about to be up-convolved:

    x (coarser, N, C, H/s', W/s') --up-conv------------------------> concat -> double conv
    skip (N, C_s, H/s, W/s) --gate(skip, g = x): skip * alpha --------^

`UNet.attention_maps(images)` returns the coefficients alpha of every gate for a look at where
the network attends; ordinary forward passes keep none of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.errors import FcnsegError
from fcnseg.models.attention import AttentionGate
from fcnseg.models.backbones import BACKBONES, build_backbone
from fcnseg.models.base import SegmentationModel
from fcnseg.models.blocks import DoubleConv


class UNetEncoder(nn.Module):
    """The contracting path: five levels of double convolutions, widths w, 2w, 4w, 8w, 16w."""

    def __init__(self, in_channels: int, base_width: int = 64) -> None:
        super().__init__()
        w = base_width
        self.level1 = DoubleConv(in_channels, w)
        self.level2 = DoubleConv(w, 2 * w)
        self.level3 = DoubleConv(2 * w, 4 * w)
        self.level4 = DoubleConv(4 * w, 8 * w)
        self.bottom = DoubleConv(8 * w, 16 * w)
        self.channels = {1: w, 2: 2 * w, 4: 4 * w, 8: 8 * w, 16: 16 * w}

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x1 = self.level1(x)  # (N, w, H, W)
        x2 = self.level2(F.max_pool2d(x1, 2))  # (N, 2w, H/2, W/2)
        x3 = self.level3(F.max_pool2d(x2, 2))  # (N, 4w, H/4, W/4)
        x4 = self.level4(F.max_pool2d(x3, 2))  # (N, 8w, H/8, W/8)
        x5 = self.bottom(F.max_pool2d(x4, 2))  # (N, 16w, H/16, W/16)
        return {1: x1, 2: x2, 4: x3, 8: x4, 16: x5}


class UNetDecoder(nn.Module):
    """The expanding path, built from the backbone's declared `channels` (stride -> width).

    From the deepest feature upwards: a 2x2 up-convolution, concatenation with the skip of that
    stride, and a double convolution. It ends at the shallowest stride. Each stage is half as
    wide as the one below it (the paper's up-convolution "halves the number of feature
    channels"), or takes the next of `widths`, deepest first. With `attention`, each skip is
    first weighted by an attention gate whose gating signal is the coarser decoder feature.
    """

    def __init__(
        self,
        channels: dict[int, int],
        widths: Sequence[int] | None = None,
        attention: bool = False,
    ) -> None:
        super().__init__()
        strides = sorted(channels, reverse=True)  # e.g. [16, 8, 4, 2, 1]
        self.skip_strides = strides[1:]
        if widths is None:
            deepest = channels[strides[0]]
            widths = [max(1, deepest // 2**level) for level in range(1, len(strides))]
        if len(widths) != len(self.skip_strides):
            raise FcnsegError(
                f"U-Net decoder_widths needs {len(self.skip_strides)} widths, one per skip "
                f"(strides {self.skip_strides}), got {list(widths)}."
            )
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        # No gates without attention: a plain U-Net keeps its modules and state-dict keys.
        self.gates: nn.ModuleList | None = nn.ModuleList() if attention else None
        width = channels[strides[0]]
        for stride, out_width in zip(self.skip_strides, widths, strict=True):
            if self.gates is not None:
                # F_int = half the skip's width, as in the authors' code.
                inter = max(1, channels[stride] // 2)
                self.gates.append(AttentionGate(channels[stride], width, inter))
            self.up.append(nn.ConvTranspose2d(width, out_width, kernel_size=2, stride=2))
            self.fuse.append(DoubleConv(out_width + channels[stride], out_width))
            width = out_width
        self.out_channels = width

    def forward(self, features: dict[int, torch.Tensor]) -> torch.Tensor:
        x = features[max(features)]  # the bottom of the U
        for level, stride in enumerate(self.skip_strides):
            skip = features[stride]  # (N, C_s, H/s, W/s)
            if self.gates is not None:
                skip = self.gates[level](skip, x)  # skip * alpha, alpha from x at H/2s, W/2s
            up = self.up[level](x)  # (N, C', H/s, W/s)
            x = self.fuse[level](torch.cat([up, skip], dim=1))  # (N, C', H/s, W/s)
        return x


class UNet(SegmentationModel):
    """U-Net; `backbone` "classic" (the paper's encoder, `base_width` 64) or a VGG / ResNet name.

    `decoder_widths` (deepest first) overrides the halving widths; e.g. (256, 128, 64, 64) on
    "resnet34" makes each stage as wide as its skip. `attention` gates every skip (Attention
    U-Net, Oktay et al. 2018).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        base_width: int = 64,
        backbone: str = "classic",
        backbone_weights: str | None = None,
        decoder_widths: Sequence[int] | None = None,
        attention: bool = False,
    ) -> None:
        if backbone == "classic":
            if backbone_weights is not None:
                raise FcnsegError("the classic U-Net encoder has no pretrained weights.")
            encoder = UNetEncoder(in_channels, base_width)
        else:
            encoder = build_backbone(
                backbone, in_channels, weights=backbone_weights, choices=("classic", *BACKBONES)
            )
        decoder = UNetDecoder(encoder.channels, decoder_widths, attention)
        head = nn.Conv2d(decoder.out_channels, num_classes, kernel_size=1)
        super().__init__(encoder, decoder, head, size_divisor=max(encoder.channels))

    def attention_maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every gate's coefficients for `images` (N, C, H, W), from one forward pass without
        gradients in the model's current mode: {"stride s": alpha (N, 1, ceil(H/s), ceil(W/s))},
        values in [0, 1], deepest gate first, the padding cropped. Empty without attention.
        """
        gates = self.decoder.gates
        if gates is None:
            return {}
        for gate in gates:
            gate.keep_coefficients = True
        try:
            with torch.no_grad():
                self(images)
            coefficients = [gate.coefficients for gate in gates]  # (N, 1, H'/s, W'/s) padded
        finally:
            for gate in gates:
                gate.keep_coefficients, gate.coefficients = False, None
        height, width = images.shape[-2:]
        maps: dict[str, torch.Tensor] = {}
        for stride, alpha in zip(self.decoder.skip_strides, coefficients, strict=True):
            rows, columns = math.ceil(height / stride), math.ceil(width / stride)
            maps[f"stride {stride}"] = alpha[..., :rows, :columns]
        return maps
