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


@pytest.mark.parametrize(
    ("options", "strides"),
    [({"base_width": 4}, [8, 4, 2, 1]), ({"backbone": "resnet18"}, [16, 8, 4, 2])],
    ids=["classic", "resnet18"],
)
def test_attention_unet_gates_every_skip_and_exposes_its_maps(options, strides) -> None:
    torch.manual_seed(0)
    model = build_model("unet", 2, attention=True, **options).eval()
    assert len(model.decoder.gates) == 4
    images = torch.randn(2, 3, 45, 61)  # odd: the maps are cropped to the image, not the padding
    with torch.no_grad():
        assert model(images).shape == (2, 2, 45, 61)
    maps = model.attention_maps(images)
    assert list(maps) == [f"stride {s}" for s in strides]
    for stride, alpha in zip(strides, maps.values(), strict=True):
        assert alpha.shape == (2, 1, -(-45 // stride), -(-61 // stride))
        assert alpha.min() >= 0 and alpha.max() <= 1 and alpha.std() > 0
        assert not alpha.requires_grad
    assert all(gate.coefficients is None for gate in model.decoder.gates)  # nothing kept


def test_a_plain_unet_has_no_gates_and_no_maps() -> None:
    model = build_model("unet", 2, base_width=4)
    assert model.decoder.gates is None
    assert not any("gates" in key for key in model.state_dict())  # checkpoints unchanged
    assert model.attention_maps(torch.randn(1, 3, 32, 32)) == {}


def test_gates_wide_open_give_the_plain_unet() -> None:
    """alpha = 1 everywhere: the Attention U-Net computes exactly the U-Net with its weights."""
    torch.manual_seed(0)
    gated = build_model("unet", 3, base_width=4, attention=True).eval()
    plain = build_model("unet", 3, base_width=4).eval()
    plain.load_state_dict({k: v for k, v in gated.state_dict().items() if "gates" not in k})
    images = torch.randn(2, 3, 37, 50)
    with torch.no_grad():
        for gate in gated.decoder.gates:
            gate.psi.weight.zero_()
            gate.psi.bias.fill_(40.0)  # sigmoid(40) = 1 in float32
        torch.testing.assert_close(gated(images), plain(images))
        for gate in gated.decoder.gates:
            gate.psi.bias.fill_(-40.0)  # alpha = 0: the skips are cut, so the output changes
        assert not torch.allclose(gated(images), plain(images), atol=1e-3)


def test_attention_unet_exports_to_onnx_and_matches_pytorch(tmp_path) -> None:
    pytest.importorskip("onnx", reason="the export extra: pip install 'fcnseg[export]'")
    pytest.importorskip("onnxruntime", reason="the export extra: pip install 'fcnseg[export]'")
    from fcnseg.export.onnx import check_parity, export_onnx
    from fcnseg.inference.backends import OnnxModel

    torch.manual_seed(0)
    model = build_model("unet", 3, base_width=4, attention=True).eval()
    path = export_onnx(model, tmp_path / "attention_unet.onnx", 3, {})
    parity = check_parity(model, OnnxModel(path, threads=1), 3)  # odd and aligned sizes
    assert parity.passed, parity.describe()
