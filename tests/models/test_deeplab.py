"""DeepLab: ASPP's branches and rates at output stride 16 and 8, image pooling, and v3+'s
48-channel low-level projection from stride 4."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcnseg import FcnsegError
from fcnseg.models import build_model
from fcnseg.models.atrous import AtrousConv2d
from fcnseg.models.deeplab import ASPP


def atrous_dilations(aspp: ASPP) -> list[int]:
    """The dilation of every 3x3 convolution in ASPP's branches, in order."""
    return [
        layer.dilation[0]
        for branch in aspp.branches
        for layer in branch.modules()
        if isinstance(layer, nn.Conv2d) and layer.kernel_size == (3, 3)
    ]


@pytest.mark.parametrize(("output_stride", "rates"), [(16, [6, 12, 18]), (8, [12, 24, 36])])
@pytest.mark.parametrize("separable", [False, True])
def test_aspp_branches_and_rates(output_stride: int, rates: list[int], separable: bool) -> None:
    aspp = ASPP(64, output_stride, out_channels=16, separable=separable)
    assert len(aspp.branches) + 1 == 5  # 1x1, three atrous 3x3, image pooling
    assert isinstance(aspp.branches[0][0], nn.Conv2d) and aspp.branches[0][0].kernel_size == (1, 1)
    assert atrous_dilations(aspp) == rates
    assert aspp.project[0].in_channels == 5 * 16


def test_image_pooling_adds_the_same_context_at_every_position() -> None:
    aspp = ASPP(8, 16, out_channels=4).eval()
    x = torch.randn(2, 8, 9, 11)
    with torch.no_grad():
        expected = aspp.image_pooling(x.mean(dim=(2, 3), keepdim=True))  # (2, 4, 1, 1)
        branches = []
        aspp.project.register_forward_pre_hook(lambda module, args: branches.append(args[0]))
        aspp(x)
    pooled = branches[0][:, 16:]  # the fifth branch of the concatenation
    torch.testing.assert_close(pooled, expected.expand(-1, -1, 9, 11))


@pytest.mark.parametrize("output_stride", [16, 8])
def test_deeplabv3_scores_at_its_output_stride(output_stride: int) -> None:
    model = build_model("deeplabv3", 2, backbone="resnet18", output_stride=output_stride).eval()
    with torch.no_grad():
        scores = model.head(model.decoder(model.backbone(torch.randn(1, 3, 64, 96))))
    assert scores.shape == (1, 2, 64 // output_stride, 96 // output_stride)


def test_deeplabv3plus_projects_stride_4_features_to_48_channels() -> None:
    model = build_model("deeplabv3plus", 2, backbone="resnet50").eval()
    low_level = model.decoder.low_level[0]
    assert (low_level.in_channels, low_level.out_channels) == (256, 48)  # ResNet-50's layer1
    refine = [m for m in model.decoder.refine.modules() if isinstance(m, nn.Conv2d)]
    assert refine[0].in_channels == 256 + 48
    assert refine[0].groups == 256 + 48  # separable by default, as in the paper
    with torch.no_grad():
        refined = model.decoder(model.backbone(torch.randn(1, 3, 64, 96)))
    assert refined.shape == (1, 256, 16, 24)  # stride 4


def test_output_stride_32_is_an_error() -> None:
    with pytest.raises(FcnsegError, match="output_stride 8 or 16"):
        build_model("deeplabv3", 2, backbone="resnet18", output_stride=32)


def atrous_routes(model: nn.Module, x: torch.Tensor) -> set[str]:
    """Which shortcuts the model's AtrousConv2d layers take on `x`: 'drop' (taps that reach
    only padding cut off) and 'split' (a depthwise map convolved on sub-grids)."""
    routes: set[str] = set()

    def record(layer: AtrousConv2d, args: tuple[torch.Tensor]) -> None:
        keep_rows, keep_columns, block = layer.plan(args[0])
        if not (keep_rows and keep_columns):
            routes.add("drop")
        if block > 1:
            routes.add("split")

    hooks = [
        module.register_forward_pre_hook(record)
        for module in model.modules()
        if isinstance(module, AtrousConv2d)
    ]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return routes


@pytest.mark.parametrize(("name", "separable"), [("deeplabv3", False), ("deeplabv3plus", True)])
def test_atrous_shortcuts_off_builds_plain_convolutions_with_the_same_values_and_gradients(
    name: str, separable: bool
) -> None:
    options = {"backbone": "resnet18", "output_stride": 8, "separable": separable}
    fast = build_model(name, 3, atrous_shortcuts=True, **options).double().train()
    plain = build_model(name, 3, atrous_shortcuts=False, **options).double().train()
    assert not any(isinstance(m, AtrousConv2d) for m in plain.modules())
    # 120x136 at output stride 8: a 15x17 map, where rate 12 keeps its 3x3 kernel (split into
    # 2x2 sub-grids when depthwise) and rates 24 and 36 reach only padding with all but the centre.
    x = torch.randn(2, 3, 120, 136, dtype=torch.float64)
    routes = atrous_routes(fast, x)
    assert routes == ({"drop", "split"} if separable else {"drop"})
    plain.load_state_dict(fast.state_dict())  # the same keys: checkpoints load either way
    outputs, gradients = [], []
    for model in (fast, plain):
        image = x.clone().requires_grad_()
        logits = model(image)
        weighting = torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
        loss = (logits * weighting.double()).sum()
        gradients.append(torch.autograd.grad(loss, [image, *model.parameters()]))
        outputs.append(logits.detach())
    torch.testing.assert_close(outputs[0], outputs[1])
    for fast_gradient, plain_gradient in zip(*gradients, strict=True):
        torch.testing.assert_close(fast_gradient, plain_gradient)
