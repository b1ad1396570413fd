"""Backbones: features keyed by stride with the declared widths, and dilated ResNets that compute
exactly the strided ResNet's features, only densely."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcnseg import FcnsegError
from fcnseg.models.backbones import BACKBONES, build_backbone

# torchvision's ImageNet classifiers without their head (torchvision's published counts minus
# the final Linear layer), in millions.
PARAMETERS_WITHOUT_HEAD = {
    "vgg16": 14.715,
    "resnet18": 11.690 - 0.513,
    "resnet34": 21.798 - 0.513,
    "resnet50": 25.557 - 2.049,
    "resnet101": 44.549 - 2.049,
}


@pytest.mark.parametrize("name", BACKBONES)
def test_features_are_keyed_by_stride_with_the_declared_widths(name: str) -> None:
    backbone = build_backbone(name, in_channels=4).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 4, 64, 96))
    assert set(features) == {2, 4, 8, 16, 32} == set(backbone.channels)
    for stride, feature in features.items():
        assert feature.shape == (1, backbone.channels[stride], 64 // stride, 96 // stride)


@pytest.mark.parametrize("name", PARAMETERS_WITHOUT_HEAD)
def test_parameter_counts_match_torchvision(name: str) -> None:
    count = sum(p.numel() for p in build_backbone(name).parameters())
    assert count / 1e6 == pytest.approx(PARAMETERS_WITHOUT_HEAD[name], abs=0.002)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_dilated_resnet_is_the_strided_one_computed_densely(name: str, output_stride: int) -> None:
    """Dilating instead of striding keeps every value of the strided network: sampling the
    dilated features every 32 / output_stride pixels gives the stride-32 features exactly."""
    strided = build_backbone(name).eval()
    dilated = build_backbone(name, output_stride=output_stride).eval()
    dilated.load_state_dict(strided.state_dict())  # the same weights: dilation adds none
    image = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        coarse = strided(image)[32]
        dense = dilated(image)
    assert set(dense) == {s for s in (2, 4, 8, 16) if s <= output_stride}
    step = 32 // output_stride
    sampled = dense[output_stride][..., ::step, ::step]
    torch.testing.assert_close(sampled, coarse, atol=1e-5 * coarse.abs().max(), rtol=1e-5)


def test_dilation_of_each_3x3_convolution_at_output_stride_8() -> None:
    backbone = build_backbone("resnet50", output_stride=8)
    dilations = {
        layer: [block.conv2.dilation[0] for block in getattr(backbone, layer)]
        for layer in ("layer3", "layer4")
    }
    # The first block of a dilated stage keeps the dilation of the stage before it.
    assert dilations == {"layer3": [1, 2, 2, 2, 2, 2], "layer4": [2, 4, 4]}
    assert all(block.conv2.stride == (1, 1) for block in backbone.layer4)


@pytest.mark.parametrize("in_channels", [1, 4])
def test_in_channels_other_than_three(in_channels: int) -> None:
    for name in ("vgg16", "resnet18"):
        backbone = build_backbone(name, in_channels)
        first_conv = next(m for m in backbone.modules() if isinstance(m, nn.Conv2d))
        assert first_conv.in_channels == in_channels


def test_bad_names_and_strides_are_errors() -> None:
    with pytest.raises(FcnsegError, match=r"unknown backbone 'resnet35'\. Did you mean 'resnet"):
        build_backbone("resnet35")
    with pytest.raises(FcnsegError, match="output_stride must be 8, 16 or 32"):
        build_backbone("resnet18", output_stride=4)
    with pytest.raises(FcnsegError, match="'vgg16' has output_stride 32 only"):
        build_backbone("vgg16", output_stride=16)
