"""The model contract: backbone -> decoder -> head, logits at the input's own size.

    x (N, C_in, H, W)
      -> pad bottom/right to a multiple of `size_divisor`        (N, C_in, H', W')
      -> backbone: features keyed by output stride              {s: (N, C_s, H'/s, W'/s)}
      -> decoder: one fused map at some stride s0               (N, C_d, H'/s0, W'/s0)
      -> head: per-pixel class scores                           (N, K, H'/s0, W'/s0)
      -> bilinear upsampling to (H', W') when s0 > 1, crop back  (N, K, H, W)

Padding to the deepest stride is what lets every architecture take any input size: skip
connections then meet at exactly matching shapes, and the crop removes the padding again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SegmentationModel(nn.Module):
    """Every fcnseg model: a backbone returning `{stride: features}`, a decoder and a head.

    Backbones declare `channels: dict[int, int]` (stride -> width), so that decoders take their
    widths from the backbone instead of hard-coding them.
    """

    def __init__(
        self, backbone: nn.Module, decoder: nn.Module, head: nn.Module, size_divisor: int
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.head = head
        self.size_divisor = size_divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, self.size_divisor)  # (N, C_in, H', W')
        features = self.backbone(x)  # {stride: (N, C_s, H'/s, W'/s)}
        logits = self.head(self.decoder(features))  # (N, K, H'/s0, W'/s0)
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :height, :width]  # (N, K, H, W)


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float = 0.0) -> torch.Tensor:
    """Zero-pad the bottom and right of (N, C, H, W) so that H and W are multiples of `multiple`.

    Inputs are normalised, so zero is the mean colour: the least surprising thing to pad with.
    """
    pad_h = -x.shape[-2] % multiple
    pad_w = -x.shape[-1] % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), value=value)
