"""DeepLab: ASPP's branches and rates at output stride 16 and 8, image pooling, and v3+'s
48-channel low-level projection from stride 4."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcnseg import FcnsegError
from fcnseg.models import build_model
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
