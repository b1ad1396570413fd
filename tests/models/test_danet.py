"""DANet: the dual attention head on a dilated ResNet at stride 8 (fcnseg.models.danet)."""

from __future__ import annotations

import pytest
import torch

from fcnseg import FcnsegError
from fcnseg.models import build_model
from fcnseg.models.attention import ChannelAttention, PositionAttention


def small_danet(**options: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("danet", 5, backbone="resnet18", head_width=16, **options)


def test_the_head_reads_stride_8_features_a_quarter_as_wide_as_the_backbone() -> None:
    model = build_model("danet", 2, backbone="resnet18")
    position = model.decoder.position[1]
    assert isinstance(position, PositionAttention)
    assert isinstance(model.decoder.channel[1], ChannelAttention)
    assert model.decoder.position[0][0].in_channels == 512  # ResNet-18's layer4, dilated
    assert model.decoder.out_channels == 512 // 4
    assert position.query.out_channels == position.key.out_channels == 128 // 8
    assert model.size_divisor == 8
    with torch.no_grad():
        features = model.eval().backbone(torch.randn(1, 3, 64, 96))
    assert max(features) == 8 and features[8].shape == (1, 512, 8, 12)


def test_odd_sizes_give_logits_at_the_input_size() -> None:
    model = small_danet().eval()
    with torch.no_grad():
        for size in ((33, 47), (64, 64), (9, 130)):
            assert model(torch.randn(2, 3, *size)).shape == (2, 5, *size)


def test_at_initialisation_the_branches_are_plain_convolutions() -> None:
    """gamma = beta = 0: the attention modules pass their input through, and yet they learn."""
    model = small_danet().train()
    head = model.decoder
    x = torch.randn(2, 512, 6, 7)
    position, channel = head.position, head.channel
    torch.testing.assert_close(position(x), position[2](position[0](x)))
    torch.testing.assert_close(channel(x), channel[2](channel[0](x)))
    logits = model(torch.randn(2, 3, 48, 56))
    (logits * torch.randn_like(logits)).sum().backward()
    assert position[1].gamma.grad.abs() > 0 and channel[1].beta.grad.abs() > 0


def test_training_over_the_attention_budget_is_refused_and_inference_is_not() -> None:
    model = small_danet(max_attention_mb=0.5).train()
    images = torch.randn(2, 3, 160, 160)  # 20x20 at stride 8: 2 x 400^2 x 4 bytes = 1.2 MB
    with pytest.raises(FcnsegError, match=r"20x20 feature map \(400 positions\)"):
        model(images)
    with torch.no_grad():
        assert model.eval()(images).shape == (2, 5, 160, 160)


def test_output_stride_16_is_an_option() -> None:
    model = small_danet(output_stride=16).eval()
    assert model.size_divisor == 16
    with torch.no_grad():
        assert model(torch.randn(1, 3, 50, 70)).shape == (1, 5, 50, 70)


def test_danet_exports_to_onnx_with_attention_switched_on(tmp_path) -> None:
    pytest.importorskip("onnx", reason="the export extra: pip install 'fcnseg[export]'")
    pytest.importorskip("onnxruntime", reason="the export extra: pip install 'fcnseg[export]'")
    from fcnseg.export.onnx import check_parity, export_onnx
    from fcnseg.inference.backends import OnnxModel

    model = small_danet().eval()
    with torch.no_grad():  # gamma = beta = 0 would hide both modules from the comparison
        model.decoder.position[1].gamma.fill_(0.5)
        model.decoder.channel[1].beta.fill_(0.5)
    path = export_onnx(model, tmp_path / "danet.onnx", 3, {})
    parity = check_parity(model, OnnxModel(path, threads=1), 3)  # odd and aligned sizes
    assert parity.passed, parity.describe()
