"""Attention modules against hand-computed values and explicit loops (fcnseg.models.attention)."""

from __future__ import annotations

import math

import pytest
import torch

from fcnseg import FcnsegError
from fcnseg.models.attention import AttentionGate, ChannelAttention, PositionAttention


def set_gate(gate: AttentionGate, w_x: float, w_g: float, b_g: float, psi: float, b_psi: float):
    """Give a gate with F_int = 1 scalar weights: every tap of W_x (and of W_g) is w_x (w_g)."""
    with torch.no_grad():
        gate.skip_projection.weight.fill_(w_x)
        gate.gating_projection.weight.fill_(w_g)
        gate.gating_projection.bias.fill_(b_g)
        gate.psi.weight.fill_(psi)
        gate.psi.bias.fill_(b_psi)


def test_gate_by_hand_on_one_cell() -> None:
    gate = AttentionGate(skip_channels=1, gating_channels=1, inter_channels=1)
    set_gate(gate, w_x=0.5, w_g=2.0, b_g=-3.0, psi=0.5, b_psi=-1.0)
    skip = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    gating = torch.ones(1, 1, 1, 1)
    # theta = 0.5 * (1 + 2 + 3 + 4) = 5; phi = 2 * 1 - 3 = -1; ReLU(5 - 1) = 4;
    # q = 0.5 * 4 - 1 = 1; alpha = sigmoid(1) on the whole 2x2 skip.
    alpha = 1 / (1 + math.exp(-1))
    torch.testing.assert_close(gate(skip, gating), skip * alpha)
    # The ReLU: with b_g = -9, theta + phi = -2 is cut to 0 and alpha = sigmoid(-1).
    set_gate(gate, w_x=0.5, w_g=2.0, b_g=-9.0, psi=0.5, b_psi=-1.0)
    torch.testing.assert_close(gate(skip, gating), skip * (1 - alpha))


def test_gate_resamples_the_coefficients_bilinearly_to_the_skip() -> None:
    gate = AttentionGate(skip_channels=2, gating_channels=1, inter_channels=1)
    set_gate(gate, w_x=0.0, w_g=1.0, b_g=0.0, psi=1.0, b_psi=0.0)  # q = ReLU(g)
    gating = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 1, 2, 2)
    coarse = torch.sigmoid(gating[0, 0])
    # Bilinear 2 -> 4, half-pixel centres: weights (1, 0), (3/4, 1/4), (1/4, 3/4), (0, 1).
    up = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    expected_alpha = up @ coarse @ up.T  # (4, 4)
    skip = torch.arange(32.0).view(1, 2, 4, 4)
    gate.keep_coefficients = True
    torch.testing.assert_close(gate(skip, gating), skip * expected_alpha)
    torch.testing.assert_close(gate.coefficients, expected_alpha.view(1, 1, 4, 4))


def test_gate_keeps_no_coefficients_unless_asked() -> None:
    gate = AttentionGate(4, 6, 2)
    gate(torch.randn(1, 4, 8, 8), torch.randn(1, 6, 4, 4))
    assert gate.coefficients is None


def test_gamma_zero_makes_both_dual_attention_modules_the_identity() -> None:
    x = torch.randn(2, 16, 5, 7)
    assert torch.equal(PositionAttention(16)(x), x)
    assert torch.equal(ChannelAttention()(x), x)


def naive_position_attention(module: PositionAttention, x: torch.Tensor) -> torch.Tensor:
    """The paper's eq. 2 position by position: E_j = A_j + gamma sum_i softmax_i(q_j.k_i) v_i."""
    n, channels, height, width = x.shape
    flat = x.flatten(2)  # (N, C, P)

    def project(conv: torch.nn.Conv2d) -> torch.Tensor:  # 1x1 conv as a matrix product
        return conv.weight[:, :, 0, 0] @ flat + conv.bias[:, None]

    query, key, value = project(module.query), project(module.key), project(module.value)
    out = flat.clone()
    for image in range(n):
        for j in range(height * width):
            energies = torch.stack(
                [query[image, :, j] @ key[image, :, i] for i in range(height * width)]
            )
            weights = torch.exp(energies - energies.max())
            weights = weights / weights.sum()
            out[image, :, j] += module.gamma * (value[image] * weights).sum(dim=1)
    return out.view(n, channels, height, width)


@pytest.mark.parametrize("gradients", [True, False], ids=["whole (training)", "chunked"])
def test_position_attention_equals_the_explicit_sum(gradients: bool) -> None:
    torch.manual_seed(0)
    module = PositionAttention(16)
    with torch.no_grad():
        module.gamma.fill_(0.7)
    x = torch.randn(2, 16, 5, 7)  # 35 positions
    # 3 queries per chunk: 12 chunks, the last one of 2 (2 images x 35 keys x 4 bytes a query).
    module.chunk_mb = 3 * 2 * 35 * 4 / 2**20
    with torch.set_grad_enabled(gradients):
        found = module(x)
    with torch.no_grad():
        expected = naive_position_attention(module, x)
    torch.testing.assert_close(found, expected, atol=1e-5, rtol=1e-5)


def test_chunked_position_attention_equals_the_whole_one() -> None:
    torch.manual_seed(0)
    module = PositionAttention(8)
    with torch.no_grad():
        module.gamma.fill_(1.0)
        x = torch.randn(3, 8, 9, 11)
        whole = module(x)  # default chunk: everything in one
        module.chunk_mb = 40 * 3 * 99 * 4 / 2**20  # 40 queries a chunk: 40, 40 and 19
        chunked = module(x)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-5)


def test_channel_attention_equals_the_explicit_sum() -> None:
    torch.manual_seed(0)
    module = ChannelAttention()
    with torch.no_grad():
        module.beta.fill_(0.5)
    x = 0.2 * torch.randn(2, 4, 3, 5)  # small: a softmax that is not one-hot
    flat = x.flatten(2)
    expected = flat.clone()
    for image in range(2):
        for j in range(4):
            energies = torch.stack([flat[image, j] @ flat[image, i] for i in range(4)])
            weights = torch.softmax(energies, dim=0)
            expected[image, j] += 0.5 * sum(weights[i] * flat[image, i] for i in range(4))
    with torch.no_grad():
        torch.testing.assert_close(module(x), expected.view_as(x))


def test_training_refuses_attention_over_budget_naming_sizes_and_fixes() -> None:
    module = PositionAttention(8, max_training_mb=1.0)
    x = torch.randn(2, 8, 20, 30)  # 600 positions: 2 x 600^2 x 4 bytes = 2.7 MB
    with pytest.raises(FcnsegError) as raised:
        module(x)
    message = str(raised.value)
    for expected in ("20x30 feature map", "600 positions", "3 MB", "max_attention_mb=1", "crop"):
        assert expected in message, message
    with torch.no_grad():  # inference is not limited: it chunks
        assert module(x).shape == x.shape
    assert module(x[:1, :, :10]).shape == (1, 8, 10, 30)  # 0.3 MB: trains
