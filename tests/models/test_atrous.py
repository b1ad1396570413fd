"""AtrousConv2d against the plain convolution (values and gradients), the routes it takes, and
the sub-grid rearrangement against a hand-worked example."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fcnseg.models import atrous
from fcnseg.models.atrous import AtrousConv2d, batch_to_space, space_to_batch

CHANNELS = 6
# (H, W): a 1-pixel map, maps smaller than, between and larger than the rates, one of each kind
SIZES = [(1, 1), (5, 7), (16, 16), (23, 30), (13, 40)]


def reference(conv: AtrousConv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, conv.weight, conv.bias, 1, conv.rate, conv.rate, conv.groups)


@pytest.mark.parametrize("rate", [1, 2, 6, 7, 12, 18, 24])  # 7: no divisor brings it to 6
@pytest.mark.parametrize("depthwise", [True, False])
def test_values_and_gradients_are_the_plain_convolutions(rate: int, depthwise: bool) -> None:
    torch.manual_seed(rate)
    groups = CHANNELS if depthwise else 1
    conv = AtrousConv2d(CHANNELS, CHANNELS, rate, groups=groups, bias=True).double()
    for height, width in SIZES:
        for memory_format in (torch.channels_last, torch.contiguous_format):
            x = torch.randn(2, CHANNELS, height, width, dtype=torch.float64)
            x = x.contiguous(memory_format=memory_format).requires_grad_()
            expected, actual = reference(conv, x), conv(x)
            torch.testing.assert_close(actual, expected)
            upstream = torch.randn_like(expected)
            inputs = (x, conv.weight, conv.bias)
            expected_grads = torch.autograd.grad(expected, inputs, upstream)
            actual_grads = torch.autograd.grad(actual, inputs, upstream)
            for got, want in zip(actual_grads, expected_grads, strict=True):
                torch.testing.assert_close(got, want)
            with torch.inference_mode():  # the forward-only routes
                torch.testing.assert_close(conv(x.detach()), expected.detach())


Call = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def convolutions_run(
    monkeypatch: pytest.MonkeyPatch, conv: AtrousConv2d, x: torch.Tensor
) -> list[Call]:
    """(input shape, weight shape, padding, dilation) of each convolution that conv(x) runs."""
    calls = []
    plain = F.conv2d

    def spy(images, weight, bias, stride, padding, dilation, groups):
        calls.append((tuple(images.shape), tuple(weight.shape), tuple(padding), tuple(dilation)))
        return plain(images, weight, bias, stride, padding, dilation, groups)

    monkeypatch.setattr(atrous.F, "conv2d", spy)
    conv(x)
    return calls


@pytest.mark.parametrize(
    ("rate", "size", "depthwise", "grad", "expected"),
    [
        # rate >= the map both ways: the 1x1 centre filter, no padding, no dilation
        (18, (16, 16), True, False, ((2, 6, 16, 16), (6, 1, 1, 1), (0, 0), (1, 1))),
        (18, (16, 16), False, True, ((2, 6, 16, 16), (6, 6, 1, 1), (0, 0), (1, 1))),
        # rows in the padding only: a 1x3 filter, then sub-grids of block 3 at rate 6
        (18, (16, 40), True, False, ((18, 6, 6, 14), (6, 1, 1, 3), (0, 6), (1, 6))),
        (12, (12, 30), True, False, ((8, 6, 6, 15), (6, 1, 1, 3), (0, 6), (1, 6))),  # rate = height
        # forward only: the smallest block that brings the rate to 6 or less
        (12, (23, 30), True, False, ((8, 6, 12, 15), (6, 1, 3, 3), (6, 6), (6, 6))),
        (6, (23, 30), True, False, ((2, 6, 23, 30), (6, 1, 3, 3), (6, 6), (6, 6))),
        # with gradients, the same forward route (the backward has its own, tested below)
        (12, (23, 30), True, True, ((8, 6, 12, 15), (6, 1, 3, 3), (6, 6), (6, 6))),
        # a full (not depthwise) convolution is never split
        (12, (23, 30), False, False, ((2, 6, 23, 30), (6, 6, 3, 3), (12, 12), (12, 12))),
    ],
)
@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_the_route_taken(
    monkeypatch: pytest.MonkeyPatch,
    rate: int,
    size: tuple[int, int],
    depthwise: bool,
    grad: bool,
    expected: Call,
    memory_format: torch.memory_format,
) -> None:
    conv = AtrousConv2d(CHANNELS, CHANNELS, rate, groups=CHANNELS if depthwise else 1)
    conv.requires_grad_(grad)
    x = torch.randn(2, CHANNELS, *size).contiguous(memory_format=memory_format)
    assert convolutions_run(monkeypatch, conv, x) == [expected]


def test_a_depthwise_backward_convolves_the_gradient_by_the_forward_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The input's gradient is the same convolution with the kernel turned by 180 degrees (so
    it takes the same fast route); the kernel's gradient needs no convolution at all."""
    conv = AtrousConv2d(CHANNELS, CHANNELS, 12, groups=CHANNELS)
    calls = []
    plain = F.conv2d

    def spy(images, weight, bias, stride, padding, dilation, groups):
        calls.append((tuple(images.shape), weight.detach().clone(), tuple(dilation)))
        return plain(images, weight, bias, stride, padding, dilation, groups)

    monkeypatch.setattr(atrous.F, "conv2d", spy)
    x = torch.randn(2, CHANNELS, 23, 30).contiguous(memory_format=torch.channels_last)
    conv(x.requires_grad_()).sum().backward()
    (forward_shape, forward_weight, forward_rate), (backward_shape, backward_weight, rate) = calls
    assert forward_shape == backward_shape == (8, CHANNELS, 12, 15)  # split 2x2 both ways
    assert forward_rate == rate == (6, 6)
    torch.testing.assert_close(forward_weight, conv.weight.detach())
    torch.testing.assert_close(backward_weight, conv.weight.detach().flip(-2, -1))


def test_the_output_keeps_the_inputs_memory_format() -> None:
    conv = AtrousConv2d(CHANNELS, CHANNELS, 12, groups=CHANNELS)  # split 2x2 in inference
    with torch.inference_mode():
        for memory_format in (torch.channels_last, torch.contiguous_format):
            x = torch.randn(1, CHANNELS, 23, 30).contiguous(memory_format=memory_format)
            assert conv(x).is_contiguous(memory_format=memory_format)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit's own note on itself
def test_a_trace_keeps_every_tap_for_other_sizes() -> None:
    """Traced on a map smaller than the rate (where eager mode drops the off-centre taps), the
    graph must still hold the whole 3x3 convolution, right at a larger size."""
    conv = AtrousConv2d(CHANNELS, CHANNELS, 12, groups=CHANNELS).eval()
    with torch.no_grad():
        traced = torch.jit.trace(conv, torch.randn(1, CHANNELS, 8, 8))
        x = torch.randn(1, CHANNELS, 30, 30)
        torch.testing.assert_close(traced(x), reference(conv, x))


def test_under_bfloat16_autocast_the_routes_match_the_plain_convolution() -> None:
    conv = AtrousConv2d(CHANNELS, CHANNELS, 12, groups=CHANNELS, bias=True)
    for size in [(8, 8), (23, 30), (16, 40)]:  # 1x1 centre tap, split 2x2, 1x3 and split
        x = torch.randn(2, CHANNELS, *size)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual, expected = conv(x), reference(conv, x)
        assert actual.dtype == expected.dtype == torch.bfloat16
        torch.testing.assert_close(actual.float(), expected.float(), atol=0.05, rtol=0.02)


def test_a_changed_layer_falls_back_to_the_plain_convolution() -> None:
    conv = AtrousConv2d(CHANNELS, CHANNELS, 6, groups=CHANNELS)
    conv.stride = (2, 2)  # no longer the layer the routes were written for
    x = torch.randn(1, CHANNELS, 23, 30)
    expected = F.conv2d(x, conv.weight, None, 2, 6, 6, CHANNELS)
    torch.testing.assert_close(conv(x), expected)


def test_space_to_batch_by_hand() -> None:
    x = torch.arange(20.0).view(1, 1, 4, 5)  # x[r, c] = 5 r + c
    subgrids = space_to_batch(x, 2)  # (4, 1, 2, 3): sub-grid (i, j) at index 2 i + j
    assert subgrids.shape == (4, 1, 2, 3)
    assert subgrids.is_contiguous(memory_format=torch.channels_last)
    # rows 0, 2 and columns 0, 2, 4
    assert subgrids[0, 0].tolist() == [[0.0, 2.0, 4.0], [10.0, 12.0, 14.0]]
    # rows 1, 3 and columns 1, 3, then the zero that rounds the width up to 6
    assert subgrids[3, 0].tolist() == [[6.0, 8.0, 0.0], [16.0, 18.0, 0.0]]
    torch.testing.assert_close(batch_to_space(subgrids, 2, 4, 5), x)


def test_a_model_keeps_plain_convolution_parameters() -> None:
    conv = AtrousConv2d(4, 8, 6)
    plain = torch.nn.Conv2d(4, 8, 3, padding=6, dilation=6, bias=False)
    assert conv.state_dict().keys() == plain.state_dict().keys()
    assert conv.weight.shape == plain.weight.shape
