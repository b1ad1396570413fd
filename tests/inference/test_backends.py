"""The backend line tells the truth about what was done to the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from fcnseg import build_model
from fcnseg.cli import build_parser
from fcnseg.inference.backends import select_backend


def test_the_backend_line_counts_the_folded_batch_norms(tmp_path: Path):
    unet = build_model("unet", 3, base_width=4)
    batch_norms = sum(isinstance(module, nn.BatchNorm2d) for module in unet.modules())
    _, description = select_backend(unet, tmp_path / "none.pt", "torch")
    assert description.startswith(f"torch ({batch_norms} batch norms folded, channels-last")
    plain = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1))  # nothing to fold
    network, description = select_backend(plain, tmp_path / "none.pt", "torch")
    assert "no batch norm to fold" in description and "batch norms folded" not in description
    image = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(network(image), plain(image))


def test_export_has_no_flag_that_does_nothing():
    """--format was parsed and never read; with one format there is nothing to choose."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["export", "best.pt", "--format", "onnx"])
