"""Attention modules for segmentation decoders and heads.

AttentionGate (Oktay et al. 2018, "Attention U-Net: Learning Where to Look for the Pancreas",
MIDL): a U-Net skip connection weighted, pixel by pixel, by coefficients in [0, 1] computed from
the skip and from a gating signal g one level coarser:

    skip x (N, C_x, H, W) --W_x: 2x2 conv, stride 2--.
                                                     +-> ReLU -> psi: 1x1 -> sigmoid = alpha
    gate g (N, C_g, H/2, W/2) --W_g: 1x1 conv + b---'      (N, 1, H/2, W/2)
    alpha, resampled bilinearly to (H, W)  ->  x * alpha   (N, C_x, H, W)

PositionAttention and ChannelAttention (Fu et al. 2019, "Dual Attention Network for Scene
Segmentation", CVPR): DANet's self-attention over all positions of a feature map and over all
its channels, each added back to its input with a learned weight that starts at 0, so that a
fresh module is the identity and the network learns how much context to mix in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.errors import FcnsegError

# Inference computes the position attention for this many megabytes of (query x position)
# weights at a time (see PositionAttention).
QUERY_CHUNK_MB = 64.0


class AttentionGate(nn.Module):
    """Oktay et al.'s additive attention gate, eq. (1)-(2): alpha = sigmoid(psi^T ReLU(W_x^T x +
    W_g^T g + b_g) + b_psi), and the skip becomes x * alpha.

    As in the authors' code (ozan-oktay/Attention-Gated-Networks), W_x is a 2x2 convolution with
    stride 2, which brings x to g's grid, and the coefficients are computed there and resampled
    to x's size; `inter_channels` is their F_int. Their code adds a 1x1 conv + BN after the
    product; the paper's x * alpha is kept here, the fusion convolution that follows in the
    decoder mixes channels anyway. The gating signal must be exactly half the skip's size: the
    U-Net pads its input to its deepest stride, which guarantees it.

    Set `keep_coefficients` to store the next forward's alpha (detached) in `coefficients`;
    off by default, so that training and inference keep nothing beyond what autograd needs.
    """

    def __init__(self, skip_channels: int, gating_channels: int, inter_channels: int) -> None:
        super().__init__()
        # W_x (no bias: b_g is the one bias before the ReLU), W_g with b_g, psi with b_psi.
        self.skip_projection = nn.Conv2d(skip_channels, inter_channels, 2, stride=2, bias=False)
        self.gating_projection = nn.Conv2d(gating_channels, inter_channels, kernel_size=1)
        self.psi = nn.Conv2d(inter_channels, 1, kernel_size=1)
        self.keep_coefficients = False
        self.coefficients: torch.Tensor | None = None

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        theta = self.skip_projection(skip)  # (N, F_int, H/2, W/2)
        phi = self.gating_projection(gating)  # (N, F_int, H/2, W/2)
        alpha = torch.sigmoid(self.psi(F.relu(theta + phi)))  # (N, 1, H/2, W/2)
        alpha = F.interpolate(alpha, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        if self.keep_coefficients:
            self.coefficients = alpha.detach()  # (N, 1, H, W)
        return skip * alpha  # (N, C_x, H, W)


class PositionAttention(nn.Module):
    """DANet's position attention module (Fu et al. 2019, section 3.2, eq. 1-2).

    Every position j of A (N, C, H, W) becomes A_j + gamma * sum_i s_ji D_i, where s_j. =
    softmax_i(B_j . C_i) compares j's query (B: 1x1 conv to C/8) with every position's key (C:
    1x1 conv to C/8), and D is a 1x1 conv to C values. gamma starts at 0.

    Memory. The weights s are (HW)^2 per image: 4 (HW)^2 bytes in float32, 1.8 MB for a 23x30
    map (a 180x240 crop at stride 8), 445 MB for 90x120 (720x960), 7.0 GB for 1440x1920. The
    softmax is over keys only, so queries can be processed in chunks with exactly the same
    result; inference (no gradients) does that, `chunk_mb` of weights at a time, which bounds
    its memory at any image size (its time still grows with (HW)^2). Training cannot chunk its
    way out: backpropagation needs every chunk's weights, so with gradients the whole matrix is
    computed at once and a batch needing more than `max_training_mb` of it is refused, naming
    the sizes and the fixes (smaller crops or batches), instead of failing in the allocator.
    """

    def __init__(
        self, channels: int, max_training_mb: float = 2048.0, chunk_mb: float = QUERY_CHUNK_MB
    ) -> None:
        super().__init__()
        reduced = max(1, channels // 8)
        self.query = nn.Conv2d(channels, reduced, kernel_size=1)  # B
        self.key = nn.Conv2d(channels, reduced, kernel_size=1)  # C
        self.value = nn.Conv2d(channels, channels, kernel_size=1)  # D
        self.gamma = nn.Parameter(torch.zeros(1))  # alpha in the paper
        self.max_training_mb = max_training_mb
        self.chunk_mb = chunk_mb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, channels, height, width = x.shape
        query = self.query(x).flatten(2).transpose(1, 2)  # (N, HW, C/8)
        key = self.key(x).flatten(2)  # (N, C/8, HW)
        value = self.value(x).flatten(2)  # (N, C, HW)
        if torch.compiler.is_compiling():  # export / compile: one graph, no size-dependent code
            context = attend(query, key, value)
        elif torch.is_grad_enabled():
            self.check_training_memory(n, height, width, x.element_size())
            context = attend(query, key, value)
        else:
            rows = max(1, int(self.chunk_mb * 2**20 // (n * height * width * x.element_size())))
            chunks = [attend(part, key, value) for part in query.split(rows, dim=1)]
            context = torch.cat(chunks, dim=2)  # (N, C, HW)
        return x + self.gamma * context.view(n, channels, height, width)

    def check_training_memory(self, count: int, height: int, width: int, itemsize: int) -> None:
        """Refuse a batch whose (HW)^2 attention weights would exceed `max_training_mb`."""
        positions = height * width
        megabytes = count * positions**2 * itemsize / 2**20
        if megabytes <= self.max_training_mb:
            return
        per_image = megabytes / count
        raise FcnsegError(
            f"DANet's position attention over a {height}x{width} feature map ({positions} "
            f"positions) needs {megabytes:.0f} MB of attention weights for {count} image(s) "
            f"({per_image:.0f} MB each) to backpropagate, above max_attention_mb="
            f"{self.max_training_mb:g}. The weights grow with the square of the crop's area: "
            "train on smaller crops (data.crop_size, e.g. [360, 480] needs 28 MB per image at "
            "stride 8) or smaller batches, or raise the model option max_attention_mb. "
            "Inference without gradients has no such limit (it chunks the queries)."
        )


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Softmax attention of (N, Q, C') queries over (N, C', P) keys -> (N, C, Q) from values
    (N, C, P): each query's weights are a softmax over all P positions."""
    weights = torch.softmax(query @ key, dim=-1)  # (N, Q, P)
    return value @ weights.transpose(1, 2)  # (N, C, Q)


class ChannelAttention(nn.Module):
    """DANet's channel attention module (Fu et al. 2019, section 3.3, eq. 3-4).

    Each channel j of A (N, C, H, W) becomes A_j + beta * sum_i x_ji A_i, with x_j. =
    softmax_i(A_j . A_i) over the C channels: no projections, so a (C, C) map whatever the
    image size. beta starts at 0. The authors' code takes the softmax of (max_i(A_j . A_i) -
    A_j . A_i) instead, which favours the least similar channels; the paper's formula is
    followed here.
    """

    def __init__(self) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, channels, height, width = x.shape
        flat = x.flatten(2)  # (N, C, HW)
        weights = torch.softmax(flat @ flat.transpose(1, 2), dim=-1)  # (N, C, C)
        context = weights @ flat  # (N, C, HW)
        return x + self.beta * context.view(n, channels, height, width)
