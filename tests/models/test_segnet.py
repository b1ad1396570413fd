"""SegNet: max-unpooling puts values back exactly where the encoder's maxima were."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from .conftest import cached_model


def test_decoder_unpools_to_the_pooled_positions() -> None:
    model = cached_model("segnet")
    before_pool, unpooled = [], []  # each encoder stage's output, each decoder stage's input
    hooks = [
        stage.register_forward_hook(lambda module, args, out: before_pool.append(out))
        for stage in model.backbone.stages
    ] + [
        stage.register_forward_pre_hook(lambda module, args: unpooled.append(args[0]))
        for stage in model.decoder.stages
    ]
    try:
        with torch.no_grad():
            model(torch.randn(1, 3, 64, 96))
    finally:
        for hook in hooks:
            hook.remove()
    for encoded, decoded in zip(reversed(before_pool), unpooled, strict=True):
        # The position of each 2x2 window's maximum (ReLU zeros may tie: they unpool to zero).
        window_max = F.interpolate(F.max_pool2d(encoded, 2), scale_factor=2, mode="nearest")
        is_max = encoded == window_max
        assert decoded.shape == encoded.shape
        assert (decoded[~is_max] == 0).all()  # nothing lands off the pooled positions
        nonzero_per_window = F.avg_pool2d((decoded != 0).float(), 2) * 4
        assert nonzero_per_window.max() <= 1
    assert (unpooled[-1] != 0).any()


def test_parameter_count_is_the_papers_29_5_million() -> None:
    count = sum(p.numel() for p in cached_model("segnet").parameters())  # 21 classes
    assert count == pytest.approx(29.5e6, rel=0.01)
