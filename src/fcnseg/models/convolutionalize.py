"""Turn a classifier into a fully convolutional network (Long et al. 2015, section 3.1).

A classifier built for H0 x W0 images ends in Linear layers over its flattened (C, h, w) feature
map. The first Linear is a convolution with an h x w kernel evaluated at one position; the later
ones are 1x1 convolutions. Written as convolutions (the same weights, reshaped, not retrained) the
network takes any image of at least H0 x W0 and returns a map of class scores:

    classifier: features (N, C, h, w) -> flatten -> Linear(C*h*w, n1) -> ... -> Linear(., K)
    converted:  features (N, C, h', w') -> Conv(C, n1, (h, w)) -> ... -> Conv1x1(., K)
                                                                  => (N, K, h' - h + 1, w' - w + 1)

Position (i, j) of the map is the classifier's score for the H0 x W0 crop at (i * s, j * s), s
being the features' total stride: for a VGG-like net (stride 32) at 224 x 224, one pass over a
384 x 384 image gives the 6 x 6 scores of its 36 crops at stride 32, sharing all the work where
the crops overlap.

Caveat, padded convolutions: "exactly the crop's score" holds when the features use unpadded
(valid) convolutions. With padding, a crop sees zeros beyond its border where the large image
sees its neighbouring pixels, so features near the crop's border differ, and with them the class
scores; they agree only away from crop borders (where a feature's receptive field stays inside
the crop). The converted net is then the better-informed of the two, not a replica.

Accepted classifiers: an `nn.Sequential` with an `nn.Flatten` between features and head, or a
module with `features`, an optional adaptive average pool `avgpool` and a `classifier` (VGG's
layout). An adaptive pool that is the identity at H0 x W0 is dropped; one to 1 x 1 becomes a
sliding average over an h x w window. Anything else is an error that names the layer.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

from fcnseg.errors import FcnsegError

# Layers that act on each feature (or each vector of class scores) alone: kept as they are.
POINTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Dropout,
    nn.Identity,
)
ADAPTIVE_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def convolutionalize(
    classifier: nn.Module, input_size: tuple[int, int] = (224, 224)
) -> nn.Sequential:
    """The fully convolutional equivalent of `classifier`, built for `input_size` = (H0, W0)."""
    features, pool, head = split_classifier(classifier)
    features = copy.deepcopy(features)  # the classifier itself stays untouched
    reject_in_features(features)
    channels, height, width = feature_shape(features, input_size)
    layers: OrderedDict[str, nn.Module] = OrderedDict(features=features)
    window = None if pool is None else convert_pool(pool, height, width)
    if window is not None:  # global pooling, now over every h x w window
        layers["pool"] = window
        height = width = 1
    layers["head"] = convert_head(head, channels, height, width)
    converted = nn.Sequential(layers)
    return converted.train(classifier.training)


def split_classifier(
    classifier: nn.Module,
) -> tuple[nn.Module, tuple[str, nn.Module] | None, list[tuple[str, nn.Module]]]:
    """(features, (name, adaptive pool) or None, [(name, head layer)]) of either layout."""
    if isinstance(classifier, nn.Sequential):
        named = list(classifier.named_children())
        flatten = [i for i, (_, layer) in enumerate(named) if isinstance(layer, nn.Flatten)]
        if not flatten:
            raise FcnsegError("convolutionalize: this nn.Sequential has no nn.Flatten.")
        body, head = named[: flatten[0]], named[flatten[0] + 1 :]
        pool = None
        if body and isinstance(body[-1][1], ADAPTIVE_POOLS):
            pool, body = body[-1], body[:-1]
        return nn.Sequential(OrderedDict(body)), pool, head
    if hasattr(classifier, "features") and hasattr(classifier, "classifier"):
        avgpool = getattr(classifier, "avgpool", None)
        pool = None if avgpool is None else ("avgpool", avgpool)
        head = classifier.classifier
        if isinstance(head, nn.Sequential):
            named = [(f"classifier.{name}", layer) for name, layer in head.named_children()]
        else:
            named = [("classifier", head)]
        return classifier.features, pool, named
    raise FcnsegError(
        f"convolutionalize: cannot convert a {type(classifier).__name__}; expected an "
        "nn.Sequential with an nn.Flatten, or a module with `features` and `classifier`."
    )


def reject_in_features(features: nn.Module) -> None:
    """Layers in the feature part that would not slide over a larger image."""
    for name, layer in features.named_modules():
        if isinstance(layer, (nn.Linear, nn.Flatten, *ADAPTIVE_POOLS)):
            raise FcnsegError(
                f"convolutionalize: cannot convert layer '{name}' ({type(layer).__name__}) in "
                "the feature part: it depends on the input's size."
            )


def feature_shape(features: nn.Module, input_size: tuple[int, int]) -> tuple[int, int, int]:
    """(C, h, w) of the features of one native-size image."""
    convs = [layer for layer in features.modules() if isinstance(layer, nn.Conv2d)]
    if not convs:
        raise FcnsegError("convolutionalize: the feature part has no nn.Conv2d.")
    was_training = features.training
    with torch.no_grad():
        probe = torch.zeros(1, convs[0].in_channels, *input_size)
        shape = features.eval()(probe).shape[1:]
    features.train(was_training)
    return tuple(shape)


def convert_pool(named_pool: tuple[str, nn.Module], height: int, width: int) -> nn.Module | None:
    """None for an identity pool; a sliding window for a global one; otherwise an error."""
    name, pool = named_pool
    native = (height, width)
    size = pool.output_size
    size = (size, size) if isinstance(size, int) else size
    size = tuple(n if s is None else s for s, n in zip(size, native, strict=True))  # None: keep
    if size == native:
        return None
    if size == (1, 1):
        window = nn.AvgPool2d if isinstance(pool, nn.AdaptiveAvgPool2d) else nn.MaxPool2d
        return window(kernel_size=(height, width), stride=1)
    raise FcnsegError(
        f"convolutionalize: cannot convert layer '{name}' ({type(pool).__name__}): it pools a "
        f"{height}x{width} map to {size[0]}x{size[1]}, neither the identity nor global pooling."
    )


def convert_head(
    head: list[tuple[str, nn.Module]], channels: int, height: int, width: int
) -> nn.Sequential:
    """Linear layers -> convolutions (the first with an h x w kernel), pointwise layers kept."""
    layers = []
    kernel = (height, width)
    for name, layer in head:
        if isinstance(layer, nn.Linear):
            if layer.in_features != channels * kernel[0] * kernel[1]:
                raise FcnsegError(
                    f"convolutionalize: layer '{name}' takes {layer.in_features} inputs, but "
                    f"the features give {channels}x{kernel[0]}x{kernel[1]}."
                )
            layers.append(linear_to_conv(layer, channels, kernel))
            channels, kernel = layer.out_features, (1, 1)
        elif isinstance(layer, (nn.Softmax, nn.LogSoftmax)) and layer.dim in (1, -1):
            layers.append(type(layer)(dim=1))  # over the classes, now dimension 1
        elif isinstance(layer, POINTWISE):
            layers.append(copy.deepcopy(layer))
        else:
            raise FcnsegError(
                f"convolutionalize: cannot convert layer '{name}' ({type(layer).__name__}) in "
                "the head; it converts Linear layers and pointwise activations / dropout."
            )
    return nn.Sequential(*layers)


def linear_to_conv(linear: nn.Linear, channels: int, kernel: tuple[int, int]) -> nn.Conv2d:
    """The Linear as a convolution: nn.Flatten orders inputs as (C, h, w), hence the view."""
    conv = nn.Conv2d(channels, linear.out_features, kernel, bias=linear.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(linear.weight.view(linear.out_features, channels, *kernel))
        if linear.bias is not None:
            conv.bias.copy_(linear.bias)
    return conv
