"""convolutionalize: the FCN paper's equivalence (one pass of the converted net = the classifier
on every crop), the padded-convolution caveat, both accepted layouts, and clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcnseg import FcnsegError
from fcnseg.models import convolutionalize

STRIDE = 32


def small_vgg(padding: int, classes: int = 10) -> nn.Sequential:
    """Five stride-2 stages for 224x224 images; with padding 0, a 5x5 feature map."""
    layers, width = [], 3
    for out in (8, 16, 16, 32, 32):
        layers += [nn.Conv2d(width, out, 3, padding=padding), nn.ReLU(), nn.MaxPool2d(2)]
        width = out
    size = 5 if padding == 0 else 7
    head = [nn.Linear(32 * size * size, 64), nn.ReLU(), nn.Dropout(), nn.Linear(64, classes)]
    return nn.Sequential(*layers, nn.Flatten(), *head).eval()


def scores_of_every_crop(classifier: nn.Module, image: torch.Tensor, crop: int = 224):
    """(N, K, rows, cols): the classifier's scores for each crop at stride 32."""
    rows = (image.shape[-2] - crop) // STRIDE + 1
    cols = (image.shape[-1] - crop) // STRIDE + 1
    crops = [
        image[..., r * STRIDE : r * STRIDE + crop, c * STRIDE : c * STRIDE + crop]
        for r in range(rows)
        for c in range(cols)
    ]
    with torch.no_grad():
        scores = torch.stack([classifier(x) for x in crops], dim=-1)  # (N, K, rows * cols)
    return scores.unflatten(-1, (rows, cols))


def test_one_pass_equals_every_224_crop_at_stride_32() -> None:
    torch.manual_seed(0)
    classifier = small_vgg(padding=0)
    converted = convolutionalize(classifier, input_size=(224, 224))
    image = torch.randn(2, 3, 384, 384)
    with torch.no_grad():
        dense = converted(image)
    assert dense.shape == (2, 10, 6, 6)
    torch.testing.assert_close(dense, scores_of_every_crop(classifier, image), atol=1e-5, rtol=1e-4)


def test_padded_convolutions_agree_only_away_from_crop_borders() -> None:
    torch.manual_seed(0)
    classifier = small_vgg(padding=1)
    converted = convolutionalize(classifier)
    image = torch.randn(1, 3, 384, 384)
    with torch.no_grad():
        dense = converted(image)  # (1, 10, 6, 6): a 12x12 feature map, a 7x7 kernel
        features = converted.features(image)  # (1, 32, 12, 12)
        crop_features = classifier[:15](image[..., 64:288, 96:320])  # crop (2, 3): (1, 32, 7, 7)
    expected = scores_of_every_crop(classifier, image)
    assert dense.shape == expected.shape == (1, 10, 6, 6)
    # Away from the crop's border the features are the same: the centre one sees only pixels
    # inside the crop (its receptive field is 63 pixels wide, the crop 224).
    torch.testing.assert_close(features[..., 2 + 3, 3 + 3], crop_features[..., 3, 3])
    # Near the border they differ (the crop sees zero padding there), and so do the scores,
    # though not by much: the border is a small part of the map.
    assert not torch.allclose(features[..., 2, 3], crop_features[..., 0, 0], atol=1e-3)
    relative = (dense - expected).norm() / expected.norm()
    assert 1e-4 < relative < 0.1  # about 0.03 for this net


class VGGLike(nn.Module):
    """torchvision's VGG layout: features, an adaptive average pool, a classifier."""

    def __init__(self, pool_size: int = 5) -> None:
        super().__init__()
        self.features = small_vgg(padding=0)[:15]
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Linear(32 * pool_size * pool_size, 64), nn.ReLU(), nn.Linear(64, 7)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def test_vgg_layout_drops_the_identity_pool() -> None:
    torch.manual_seed(0)
    classifier = VGGLike().eval()
    converted = convolutionalize(classifier)
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in converted.modules())
    image = torch.randn(1, 3, 288, 256)
    with torch.no_grad():
        dense = converted(image)
    assert dense.shape == (1, 7, 3, 2)
    torch.testing.assert_close(dense, scores_of_every_crop(classifier, image), atol=1e-5, rtol=1e-4)


def test_global_average_pooling_becomes_a_sliding_average() -> None:
    torch.manual_seed(0)
    body = small_vgg(padding=0)[:15]
    classifier = nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))
    converted = convolutionalize(classifier.eval())
    image = torch.randn(1, 3, 256, 320)
    with torch.no_grad():
        dense = converted(image)
    assert dense.shape == (1, 4, 2, 4)
    torch.testing.assert_close(dense, scores_of_every_crop(classifier, image), atol=1e-5, rtol=1e-4)


def test_the_classifier_is_left_untouched() -> None:
    classifier = small_vgg(padding=0)
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    converted = convolutionalize(classifier)
    with torch.no_grad():
        for parameter in converted.parameters():
            parameter.add_(1)
    assert all(torch.equal(v, before[k]) for k, v in classifier.state_dict().items())


@pytest.mark.parametrize(
    ("classifier", "message"),
    [
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), "has no nn.Flatten"),
        (nn.Linear(4, 2), "cannot convert a Linear"),
        (
            nn.Sequential(
                nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 222 * 222, 8), nn.BatchNorm1d(8)
            ),
            r"cannot convert layer '3' \(BatchNorm1d\) in the head",
        ),
        (VGGLike(pool_size=2), r"cannot convert layer 'avgpool' \(AdaptiveAvgPool2d\)"),
        (
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.Linear(222, 222)), nn.Flatten()),
            r"cannot convert layer '1\.0' \(Linear\) in the feature part",
        ),
        (
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(100, 2)),
            r"layer '2' takes 100 inputs, but the features give 4x222x222",
        ),
    ],
)
def test_unconvertible_layers_are_named(classifier: nn.Module, message: str) -> None:
    with pytest.raises(FcnsegError, match=message):
        convolutionalize(classifier, input_size=(224, 224))
