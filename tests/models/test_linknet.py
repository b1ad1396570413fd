"""LinkNet: the paper's parameter count, decoder widths that follow the encoder, and links by
addition to the input of each encoder stage."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcnseg.models import build_model


def block_widths(model: nn.Module) -> list[tuple[int, int, int]]:
    """(in, middle, out) channels of each decoder block, deepest first."""
    blocks = [*model.decoder.blocks, model.decoder.block1]
    widths = []
    for block in blocks:
        convs = [m for m in block.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        widths.append((convs[0].in_channels, convs[1].in_channels, convs[-1].out_channels))
    return widths


def test_parameter_count_is_the_papers_11_5_million() -> None:
    model = build_model("linknet", num_classes=12)  # CamVid's classes
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(11.5e6, rel=0.01)


@pytest.mark.parametrize(
    ("backbone", "expected"),
    [
        ("resnet18", [(512, 128, 256), (256, 64, 128), (128, 32, 64), (64, 16, 64)]),
        ("resnet50", [(2048, 512, 1024), (1024, 256, 512), (512, 128, 256), (256, 64, 64)]),
    ],
)
def test_decoder_widths_follow_the_encoder(backbone: str, expected: list) -> None:
    # Block m -> n narrows to m / 4 inside; each ends at the width of the link it is added to.
    assert block_widths(build_model("linknet", 2, backbone=backbone)) == expected


def test_first_decoder_block_adds_the_stems_max_pool_output() -> None:
    model = build_model("linknet", 2).eval()
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = model.backbone(image)
        stem = model.backbone.bn1(model.backbone.conv1(image)).relu()
        encoder_input = nn.functional.max_pool2d(stem, 3, stride=2, padding=1)  # layer1's input
        decoded = model.decoder(features)
        x = features[32]
        for stride, block in zip([16, 8, 4], model.decoder.blocks, strict=True):
            x = block(x) + features[stride]
        expected = model.decoder.block1(x) + encoder_input
    torch.testing.assert_close(decoded, expected)
    assert decoded.shape == (1, 64, 16, 16)
