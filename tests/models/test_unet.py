"""U-Net on a VGG / ResNet backbone: decoder widths from the backbone's channels."""

from __future__ import annotations

import pytest
import torch

from fcnseg import FcnsegError
from fcnseg.models import build_model


def test_resnet34_unet_decodes_to_stride_2_halving_the_width_at_each_stage() -> None:
    model = build_model("unet", 2, backbone="resnet34").eval()
    up_widths = [(up.in_channels, up.out_channels) for up in model.decoder.up]
    assert up_widths == [(512, 256), (256, 128), (128, 64), (64, 32)]  # to strides 16, 8, 4, 2
    fuse_widths = [fuse[-1][0].out_channels for fuse in model.decoder.fuse]
    assert fuse_widths == [256, 128, 64, 32]
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, 64, 96))
        decoded = model.decoder(features)
        logits = model(torch.randn(1, 3, 97, 131))
    assert decoded.shape == (1, 32, 32, 48)
    assert logits.shape == (1, 2, 97, 131)


def test_the_classic_unet_stages_are_as_wide_as_their_skips() -> None:
    model = build_model("unet", 2, base_width=8)
    fuse_inputs = [fuse[0][0].in_channels for fuse in model.decoder.fuse]
    assert fuse_inputs == [64 + 64, 32 + 32, 16 + 16, 8 + 8]  # the paper's U, at width 8


def test_the_classic_encoder_has_no_pretrained_weights() -> None:
    with pytest.raises(FcnsegError, match="no pretrained weights"):
        build_model("unet", 2, backbone_weights="imagenet.pth")


def test_decoder_widths_set_each_stage() -> None:
    model = build_model("unet", 2, backbone="resnet34", decoder_widths=(256, 128, 64, 64)).eval()
    fuse_inputs = [fuse[0][0].in_channels for fuse in model.decoder.fuse]
    assert fuse_inputs == [256 + 256, 128 + 128, 64 + 64, 64 + 64]  # own width + the skip's
    with torch.no_grad():
        assert model(torch.randn(1, 3, 45, 61)).shape == (1, 2, 45, 61)
    with pytest.raises(FcnsegError, match="needs 4 widths"):
        build_model("unet", 2, backbone="resnet34", decoder_widths=(256, 128))
