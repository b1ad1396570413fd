"""Backbones: an image -> its features keyed by output stride, `{2: ..., 4: ..., ..., 32: ...}`.

- VGG-16 (Simonyan and Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image
  Recognition"), optionally with batch norm. Its features are the outputs of the five max pools.
  With `fully_convolutional=True` its classifier's fc6 / fc7 follow pool5 as a 7x7 and a 1x1
  convolution, as in FCN (Long et al. 2015); fc7's output is then the stride-32 feature.
- ResNet-18/34/50/101 (He et al. 2016, "Deep Residual Learning for Image Recognition") with
  `output_stride` 32, 16 or 8: below 32 the last stages keep their resolution and dilate their
  3x3 convolutions instead, as in DeepLab (Chen et al. 2017).

Every backbone declares `channels: dict[int, int]` (stride -> width). When a dilated stage keeps
the stride of the stage before it, the dict holds the deepest feature of that stride.

Module names follow torchvision's layout (ResNet exactly; VGG through a fixed renaming), so that
ImageNet weights load from a local file: see `pretrained.py`. No weights are downloaded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.errors import FcnsegError
from fcnseg.models.pretrained import load_backbone_weights
from fcnseg.registry import lookup

# VGG-16, configuration D: the widths of the 3x3 convolutions of each stage; a 2x2 max pool ends
# each stage.
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(nn.Module):
    """VGG-16: five stages of 3x3 conv(-BN)-ReLU layers, each followed by a 2x2 max pool.

    `stages[s][j]` is one conv(-BN)-ReLU layer; the pools are in `forward` (SegNet reuses the
    stages with pools that return indices).
    """

    def __init__(
        self, in_channels: int = 3, batch_norm: bool = False, fully_convolutional: bool = False
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        width = in_channels
        for widths in VGG16_STAGES:
            layers = []
            for out_channels in widths:
                layers.append(vgg_layer(width, out_channels, batch_norm))
                width = out_channels
            self.stages.append(nn.Sequential(*layers))
        self.channels = {2: 64, 4: 128, 8: 256, 16: 512, 32: 512}
        self.fully_convolutional = fully_convolutional
        if fully_convolutional:
            # fc6 saw the 7x7 pool5 map of a 224x224 image: as a 7x7 convolution, padded so that
            # the stride-32 map keeps its size for every input (FCN pads the image by 100 instead).
            self.fc6 = nn.Conv2d(512, 4096, kernel_size=7, padding=3)
            self.fc7 = nn.Conv2d(4096, 4096, kernel_size=1)
            self.dropout = nn.Dropout(0.5)  # VGG's classifier dropout, kept by FCN
            self.channels[32] = 4096
        initialise_he(self)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        features = {}
        stride = 1
        for stage in self.stages:
            stride *= 2
            x = F.max_pool2d(stage(x), kernel_size=2)  # (N, C_s, H/s, W/s)
            features[stride] = x
        if self.fully_convolutional:
            x = self.dropout(F.relu(self.fc6(x), inplace=True))  # (N, 4096, H/32, W/32)
            x = self.dropout(F.relu(self.fc7(x), inplace=True))  # (N, 4096, H/32, W/32)
            features[32] = x
        return features

    # torchvision's VGG keeps its classifier under this prefix: fc6, fc7 and the ImageNet layer.
    imagenet_head = "classifier."

    def torchvision_key_map(self) -> dict[str, str]:
        """torchvision's name -> ours, for every tensor we have.

        torchvision numbers the modules of one flat `features` list: conv, [BN,] ReLU per layer
        and a max pool per stage. Its fc6 / fc7 are `classifier.0` / `classifier.3`.
        """
        names = {}
        index = 0
        for s, stage in enumerate(self.stages):
            for j, layer in enumerate(stage):
                for k, module in enumerate(layer):  # conv, [BN,] ReLU
                    for key in module.state_dict():
                        names[f"features.{index}.{key}"] = f"stages.{s}.{j}.{k}.{key}"
                    index += 1
            index += 1  # the max pool
        if self.fully_convolutional:
            for key in ("weight", "bias"):
                names[f"classifier.0.{key}"] = f"fc6.{key}"
                names[f"classifier.3.{key}"] = f"fc7.{key}"
        return names


def vgg_layer(in_channels: int, out_channels: int, batch_norm: bool) -> nn.Sequential:
    """3x3 conv -> [BN ->] ReLU; the conv keeps its bias before BN, as torchvision's VGG does."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
    if batch_norm:
        return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
    return nn.Sequential(conv, nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet-18/34's block: two 3x3 convolutions and a shortcut.

    `entry_dilation` is the dilation of the first 3x3, the one that strides: in a stage dilated
    instead of strided it still reads its input's spacing; every 3x3 after it reads `dilation`.
    """

    expansion = 1

    def __init__(
        self, in_channels: int, width: int, stride: int, dilation: int, entry_dilation: int
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = conv3x3(in_channels, width, stride, entry_dilation)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, out_channels, 1, dilation)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        out += identity  # in place: one (N, C, H, W) allocation fewer per block
        return F.relu(out, inplace=True)


class Bottleneck(nn.Module):
    """ResNet-50/101's block: 1x1 reduce, 3x3 (strided, as in torchvision's "v1.5"), 1x1 expand.

    Its one 3x3 is the strided one, so it takes `entry_dilation` (see BasicBlock); `dilation`
    is accepted for the common signature and has nothing to apply to.
    """

    expansion = 4

    def __init__(
        self, in_channels: int, width: int, stride: int, dilation: int, entry_dilation: int
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, entry_dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        out += identity
        return F.relu(out, inplace=True)


def conv3x3(in_channels: int, out_channels: int, stride: int, dilation: int) -> nn.Conv2d:
    """3x3 convolution, padded by its dilation so that only the stride changes the size."""
    return nn.Conv2d(
        in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, bias=False
    )


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """The projection shortcut (1x1 conv + BN) where the shape changes; the identity otherwise."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


ResNetBlock = type[BasicBlock] | type[Bottleneck]

RESNET_DEPTHS: dict[str, tuple[ResNetBlock, tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Module):
    """ResNet without its classifier: a 7x7 stride-2 stem, a max pool, four stages of blocks.

    Stages 2-4 each halve the resolution, until `output_stride` is reached; from then on a stage
    keeps the resolution and doubles the dilation instead. Its first 3x3 convolution (the one
    that would have strided) keeps the previous dilation, all later ones use the new one: the
    dilated network then computes exactly the values of the strided one, at every position
    instead of every other one.
    """

    def __init__(
        self,
        block: ResNetBlock,
        depths: tuple[int, int, int, int],
        in_channels: int = 3,
        output_stride: int = 32,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise FcnsegError(f"ResNet output_stride must be 8, 16 or 32, got {output_stride}.")
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.channels = {2: 64}
        self.strides = []  # output stride of each stage
        stride, dilation, width_in = 4, 1, 64
        for index, (width, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            layer_stride, previous_dilation = (1 if index == 0 else 2), dilation
            if layer_stride == 2 and stride == output_stride:
                layer_stride, dilation = 1, dilation * 2
            stride *= layer_stride
            blocks = [block(width_in, width, layer_stride, dilation, previous_dilation)]
            width_in = width * block.expansion
            blocks += [block(width_in, width, 1, dilation, dilation) for _ in range(depth - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
            self.strides.append(stride)
            self.channels[stride] = width_in  # a dilated stage replaces the one before it
        initialise_he(self)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)  # (N, 64, H/2, W/2)
        features = {2: x}
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)  # (N, 64, H/4, W/4)
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        for stage, stride in zip(stages, self.strides, strict=True):
            x = stage(x)  # (N, C_s, H/s, W/s)
            features[stride] = x
        return features

    imagenet_head = "fc."  # torchvision's ImageNet classifier, which we do not have

    def torchvision_key_map(self) -> dict[str, str]:
        """torchvision's name -> ours: the same, as the modules are named as in torchvision."""
        return {key: key for key in self.state_dict()}


def initialise_he(module: nn.Module) -> None:
    """He et al.'s initialisation for training from scratch: N(0, 2/fan_out) for convolutions."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


BACKBONES = ("vgg16", "vgg16_bn", *RESNET_DEPTHS)


def build_backbone(
    name: str,
    in_channels: int = 3,
    output_stride: int = 32,
    weights: str | None = None,
    choices: tuple[str, ...] = BACKBONES,
    fully_convolutional: bool = False,
) -> VGG16 | ResNet:
    """A backbone by name, with ImageNet weights from the local file `weights` if given.

    `choices` narrows the names a model accepts; an unknown name is an error listing them.
    `fully_convolutional` adds VGG's fc6 / fc7 as convolutions (VGG only, for FCN).
    """
    lookup(dict.fromkeys(choices), name, "backbone")
    if name in RESNET_DEPTHS:
        backbone = ResNet(*RESNET_DEPTHS[name], in_channels, output_stride)
    elif output_stride != 32:
        raise FcnsegError(f"backbone '{name}' has output_stride 32 only, got {output_stride}.")
    else:
        backbone = VGG16(in_channels, name == "vgg16_bn", fully_convolutional)
    if weights is not None:
        load_backbone_weights(backbone, weights)
    return backbone
