"""FCN: which strides each variant fuses, zero-initialised skips, bilinear transposed convs,
VGG's fc6 / fc7 as convolutions, and the paper's parameter count."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from fcnseg import FcnsegError
from fcnseg.models import build_model
from fcnseg.models.blocks import bilinear_upsampling
from fcnseg.models.fcn import FCNDecoder

from .conftest import cached_model

FUSED_STRIDES = {"fcn32s": {32}, "fcn16s": {32, 16}, "fcn8s": {32, 16, 8}}
CHANNELS = {8: 256, 16: 512, 32: 4096}  # pool3, pool4, fc7


def random_features(size: int = 64) -> dict[int, torch.Tensor]:
    return {s: torch.randn(1, c, size // s, size // s) for s, c in CHANNELS.items()}


def depends_on(decoder: FCNDecoder, stride: int) -> bool:
    """Does the decoder's output change when the features of one stride change?"""
    features = random_features()
    changed = {s: (torch.randn_like(f) if s == stride else f) for s, f in features.items()}
    with torch.no_grad():
        return not torch.equal(decoder(features), decoder(changed))


@pytest.mark.parametrize(("name", "fused"), FUSED_STRIDES.items())
def test_each_variant_fuses_its_strides(name: str, fused: set[int]) -> None:
    decoder = copy.deepcopy(cached_model(name).decoder)  # small: fc6 / fc7 are the backbone's
    with torch.no_grad():
        scores = decoder(random_features())
        assert scores.shape[-1] == 64 // min(fused)  # it stops at the finest fused stride
        for score in [decoder.score_fr, *decoder.score_skips]:  # zero at first: see through them
            score.weight.normal_()
    used = {stride for stride in CHANNELS if depends_on(decoder, stride)}
    assert used == fused
    assert len([m for m in decoder.modules() if isinstance(m, torch.nn.Conv2d)]) == len(fused)


@pytest.mark.parametrize("name", FUSED_STRIDES)
def test_every_score_layer_starts_at_zero_so_a_fresh_fcn_outputs_zero(name: str) -> None:
    model = cached_model(name)
    scores = [model.decoder.score_fr, *model.decoder.score_skips]
    assert len(scores) == len(FUSED_STRIDES[name])
    assert all(not score.weight.any() and not score.bias.any() for score in scores)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 70, 90))
    assert logits.shape == (2, 21, 70, 90)
    assert not logits.any()  # exactly zero, as the paper's reference code starts


def test_a_zero_score_layer_still_learns() -> None:
    decoder = FCNDecoder(CHANNELS, num_classes=3, finest_stride=8)
    scores = decoder(random_features())
    (scores * torch.randn_like(scores)).sum().backward()
    for score in [decoder.score_fr, *decoder.score_skips]:
        assert score.weight.grad.abs().sum() > 0 and score.bias.grad.abs().sum() > 0


def test_fcn16s_loaded_from_a_trained_fcn32s_starts_as_its_scores_upsampled_2x_then_16x() -> None:
    fcn32s = build_model("fcn32s", num_classes=3).eval()
    with torch.no_grad():  # "trained": scores that are no longer zero
        fcn32s.decoder.score_fr.weight.normal_(std=0.01)
        fcn32s.decoder.score_fr.bias.normal_()
    fcn16s = build_model("fcn16s", num_classes=3).eval()
    # The final upsampling (32x against 16x) is the only weight whose shape differs.
    state = {key: value for key, value in fcn32s.state_dict().items() if key != "head.weight"}
    missing, unexpected = fcn16s.load_state_dict(state, strict=False)
    assert sorted(missing) == [
        "decoder.score_skips.0.bias",
        "decoder.score_skips.0.weight",
        "decoder.upsample.0.weight",
        "head.weight",
    ]
    assert unexpected == []
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        stride_32_scores = fcn32s.decoder.score_fr(fcn32s.backbone(x)[32])  # (1, 3, 3, 4)
        two_steps = bilinear_upsampling(3, 16)(bilinear_upsampling(3, 2)(stride_32_scores))
        one_step = fcn32s(x)
        started = fcn16s(x)
    torch.testing.assert_close(started, two_steps)
    # Close to, but not the same as, the FCN-32s's own single 32x upsampling.
    assert not torch.allclose(started, one_step, rtol=1e-3, atol=1e-3 * one_step.abs().max())


@pytest.mark.parametrize("factor", [2, 8, 16, 32])
def test_bilinear_transposed_conv_matches_interpolate_on_the_interior(factor: int) -> None:
    x = torch.randn(2, 3, 6, 7)
    with torch.no_grad():
        upsampled = bilinear_upsampling(3, factor)(x)
    expected = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert upsampled.shape == expected.shape
    # interpolate clamps at the border, the transposed conv sees zeros: factor/2 pixels differ
    border = factor // 2
    inner = (..., slice(border, -border), slice(border, -border))
    torch.testing.assert_close(upsampled[inner], expected[inner], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(upsampled, expected, atol=1e-3)  # the border does differ


def test_fcn8s_upsamples_its_stride_8_scores_bilinearly() -> None:
    model = cached_model("fcn8s")
    scores = torch.randn(1, 21, 8, 8)
    with torch.no_grad():
        upsampled = model.head(scores)
    expected = F.interpolate(scores, scale_factor=8, mode="bilinear", align_corners=False)
    torch.testing.assert_close(upsampled[..., 4:-4, 4:-4], expected[..., 4:-4, 4:-4])


def test_fc6_and_fc7_are_7x7_and_1x1_convolutions() -> None:
    backbone = cached_model("fcn8s").backbone
    assert backbone.fc6.weight.shape == (4096, 512, 7, 7)
    assert backbone.fc7.weight.shape == (4096, 4096, 1, 1)
    assert backbone.channels[32] == 4096


def test_fcn8s_has_the_papers_134_million_parameters() -> None:
    count = sum(p.numel() for p in cached_model("fcn8s").parameters())  # 21 classes
    assert count == pytest.approx(134e6, rel=0.01)


def test_fcn_takes_only_vgg_backbones() -> None:
    with pytest.raises(FcnsegError, match=r"unknown backbone 'resnet50'.*vgg16"):
        build_model("fcn8s", num_classes=2, backbone="resnet50")
