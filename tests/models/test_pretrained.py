"""Loading ImageNet weights in torchvision's key layout, from a file each test writes itself.

The layouts below are written out by hand from torchvision's module structure (no torchvision
needed). Each tensor holds its own constant, stored as a 1-element expanded view so that the
files stay tiny; fc6 holds a pattern that also shows where each element went.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcnseg import FcnsegError
from fcnseg.models import build_model
from fcnseg.models.backbones import build_backbone
from fcnseg.models.pretrained import adapt_rgb_filters, load_backbone_weights

VGG16_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
# Index of each conv in torchvision's `features`: conv, ReLU (, BN) per layer, a pool per stage.
VGG16_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
VGG16_BN_CONVS = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]


def batch_norm(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    shapes = {f"{prefix}.{n}": (channels,) for n in ("weight", "bias", "running_mean")}
    return {**shapes, f"{prefix}.running_var": (channels,), f"{prefix}.num_batches_tracked": ()}


def torchvision_resnet(depths: tuple[int, ...], bottleneck: bool) -> dict[str, tuple[int, ...]]:
    shapes = {"conv1.weight": (64, 3, 7, 7), **batch_norm("bn1", 64)}
    in_channels = 64
    for stage, (width, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True), 1):
        for index in range(depth):
            p = f"layer{stage}.{index}"
            if bottleneck:
                out = 4 * width
                convs = [(width, in_channels, 1), (width, width, 3), (out, width, 1)]
            else:
                out = width
                convs = [(width, in_channels, 3), (width, width, 3)]
            for number, (o, i, k) in enumerate(convs, 1):
                shapes[f"{p}.conv{number}.weight"] = (o, i, k, k)
                shapes.update(batch_norm(f"{p}.bn{number}", o))
            if index == 0 and (stage > 1 or in_channels != out):
                shapes[f"{p}.downsample.0.weight"] = (out, in_channels, 1, 1)
                shapes.update(batch_norm(f"{p}.downsample.1", out))
            in_channels = out
    return {**shapes, "fc.weight": (1000, in_channels), "fc.bias": (1000,)}


def torchvision_vgg16(batch_norm_layers: bool) -> dict[str, tuple[int, ...]]:
    shapes = {}
    in_channels = 3
    convs = VGG16_BN_CONVS if batch_norm_layers else VGG16_CONVS
    for index, width in zip(convs, VGG16_WIDTHS, strict=True):
        shapes[f"features.{index}.weight"] = (width, in_channels, 3, 3)
        shapes[f"features.{index}.bias"] = (width,)
        if batch_norm_layers:
            shapes.update(batch_norm(f"features.{index + 1}", width))
        in_channels = width
    for index, (o, i) in zip((0, 3, 6), [(4096, 25088), (4096, 4096), (1000, 4096)], strict=True):
        shapes[f"classifier.{index}.weight"] = (o, i)
        shapes[f"classifier.{index}.bias"] = (o,)
    return shapes


def fc6_pattern() -> torch.Tensor:
    """(4096, 25088) with element (o, k) = o + k, from a 29184-element storage."""
    base = torch.arange(4096 + 25088, dtype=torch.float32)
    return base.as_strided((4096, 25088), (1, 1))


def write_state(path: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """A state dict with a distinct constant per tensor (fc6: the pattern), saved to `path`."""
    state = {}
    for number, (key, shape) in enumerate(shapes.items()):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(number)
        else:
            state[key] = torch.tensor(float(number) + 1).expand(shape)
    if "classifier.0.weight" in state:
        state["classifier.0.weight"] = fc6_pattern()
    torch.save(state, path)
    return state


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_weights_land_on_torchvisions_names(tmp_path: Path, name: str) -> None:
    depths = {"resnet18": (2, 2, 2, 2), "resnet50": (3, 4, 6, 3)}[name]
    state = write_state(tmp_path / "w.pth", torchvision_resnet(depths, name == "resnet50"))
    own = build_backbone(name, weights=str(tmp_path / "w.pth")).state_dict()
    assert set(own) == {key for key in state if not key.startswith("fc.")}
    for key, value in own.items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn"])
def test_vgg_weights_land_on_the_matching_layers(tmp_path: Path, name: str) -> None:
    batch_norm_layers = name == "vgg16_bn"
    state = write_state(tmp_path / "w.pth", torchvision_vgg16(batch_norm_layers))
    backbone = build_backbone(name, weights=str(tmp_path / "w.pth"))
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    indices = VGG16_BN_CONVS if batch_norm_layers else VGG16_CONVS
    assert len(convs) == len(indices) and len(norms) == (13 if batch_norm_layers else 0)
    for conv, index in zip(convs, indices, strict=True):
        assert torch.equal(conv.weight, state[f"features.{index}.weight"])
        assert torch.equal(conv.bias, state[f"features.{index}.bias"])
    for norm, index in zip(norms, indices if batch_norm_layers else [], strict=True):
        assert torch.equal(norm.running_var, state[f"features.{index + 1}.running_var"])


def test_vgg_fc6_and_fc7_load_as_convolutions(tmp_path: Path) -> None:
    state = write_state(tmp_path / "w.pth", torchvision_vgg16(False))
    model = build_model("fcn32s", 2, backbone_weights=str(tmp_path / "w.pth"))
    # The Linear's input k is nn.Flatten's (c, i, j) of pool5's 512x7x7: k = 49 c + 7 i + j.
    k = torch.arange(25088, dtype=torch.float32).view(512, 7, 7)
    for o in (0, 1, 2047, 4095):  # the pattern's element (o, k) is o + k
        assert torch.equal(model.backbone.fc6.weight[o], o + k)
    assert torch.equal(model.backbone.fc7.weight[..., 0, 0], state["classifier.3.weight"])
    assert torch.equal(model.backbone.fc6.bias, state["classifier.0.bias"])


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path) -> None:
    shapes = torchvision_resnet((2, 2, 2, 2), bottleneck=False)
    del shapes["layer2.1.conv2.weight"]
    shapes["layer5.0.conv1.weight"] = (1, 1, 1, 1)
    write_state(tmp_path / "w.pth", shapes)
    message = r"missing keys \(1\): layer2\.1\.conv2\.weight\n.*unexpected keys \(1\): layer5"
    with pytest.raises(FcnsegError, match=message):
        build_backbone("resnet18", weights=str(tmp_path / "w.pth"))


def test_another_depths_weights_are_an_error(tmp_path: Path) -> None:
    write_state(tmp_path / "w.pth", torchvision_resnet((3, 4, 6, 3), bottleneck=False))  # 34
    with pytest.raises(FcnsegError, match=r"unexpected keys \(\d+\): layer1\.2\."):
        build_backbone("resnet18", weights=str(tmp_path / "w.pth"))


def test_a_wrong_shape_is_an_error(tmp_path: Path) -> None:
    shapes = torchvision_resnet((2, 2, 2, 2), bottleneck=False)
    shapes["layer3.0.conv1.weight"] = (256, 128, 5, 5)
    write_state(tmp_path / "w.pth", shapes)
    with pytest.raises(FcnsegError, match=r"'layer3\.0\.conv1\.weight' has shape \(256, 128"):
        build_backbone("resnet18", weights=str(tmp_path / "w.pth"))


def test_old_checkpoints_without_batch_counters_load(tmp_path: Path) -> None:
    shapes = torchvision_resnet((2, 2, 2, 2), bottleneck=False)
    shapes = {k: v for k, v in shapes.items() if not k.endswith("num_batches_tracked")}
    write_state(tmp_path / "w.pth", shapes)
    build_backbone("resnet18", weights=str(tmp_path / "w.pth"))


@pytest.mark.parametrize("in_channels", [1, 2, 4])
def test_rgb_filters_are_adapted_to_other_in_channels(in_channels: int) -> None:
    rgb = torch.randn(64, 3, 7, 7)
    adapted = adapt_rgb_filters(rgb, in_channels)
    assert adapted.shape == (64, in_channels, 7, 7)
    image = torch.randn(1, 3, 32, 32)
    if in_channels < 3:  # a grey image gets the RGB filters' response to it
        grey = image[:, :1]
        expected = F.conv2d(grey.expand(-1, 3, -1, -1), rgb)
        response = F.conv2d(grey.expand(-1, in_channels, -1, -1), adapted)
    else:  # the RGB channels keep their filters, the extra ones start out ignored
        expected = F.conv2d(image, rgb)
        extra = torch.randn(1, in_channels - 3, 32, 32)
        response = F.conv2d(torch.cat([image, extra], dim=1), adapted)
    torch.testing.assert_close(response, expected, atol=1e-4, rtol=1e-4)


def test_first_convolution_is_adapted_when_loading(tmp_path: Path) -> None:
    state = write_state(tmp_path / "w.pth", torchvision_resnet((2, 2, 2, 2), bottleneck=False))
    backbone = build_backbone("resnet18", in_channels=1, weights=str(tmp_path / "w.pth"))
    expected = state["conv1.weight"].sum(dim=1, keepdim=True)  # 3 x the mean RGB filter
    torch.testing.assert_close(backbone.conv1.weight, expected)


def test_models_take_backbone_weights(tmp_path: Path) -> None:
    state = write_state(tmp_path / "w.pth", torchvision_resnet((2, 2, 2, 2), bottleneck=False))
    for name in ("deeplabv3plus", "linknet", "unet"):
        model = build_model(name, 2, backbone="resnet18", backbone_weights=str(tmp_path / "w.pth"))
        loaded = model.backbone.layer4[1].bn2.running_var
        assert torch.equal(loaded, state["layer4.1.bn2.running_var"]), name


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FcnsegError, match="does not exist"):
        load_backbone_weights(build_backbone("resnet18"), tmp_path / "nothing.pth")
