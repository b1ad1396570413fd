"""InferenceOptions refuse what cannot work, in the words of the command-line flags."""

from __future__ import annotations

import math

import pytest
import torch

from fcnseg import FcnsegError, build_model
from fcnseg.cli import main
from fcnseg.inference.options import InferenceOptions
from fcnseg.inference.predictor import Predictor


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tile_size": 0}, "--tile-size is 0"),
        ({"tile_size": -64}, "--tile-size is -64"),
        ({"overlap": 1.0}, "--overlap is 1.0"),
        ({"overlap": -0.1}, "--overlap is -0.1"),
        ({"overlap": math.nan}, "--overlap is nan"),
        ({"scales": (1.0, math.nan)}, "--scales must be positive numbers"),
        ({"scales": (0.0,)}, "--scales must be positive numbers"),
        ({"scales": ()}, "--scales must be positive numbers"),
        ({"memory_budget_mb": 0}, "--memory-budget"),
        ({"mode": "sliding"}, "inference mode 'sliding'"),
    ],
)
def test_impossible_options_are_refused(options: dict, message: str):
    with pytest.raises(FcnsegError, match=message.replace("(", r"\(")):
        InferenceOptions(**options)


def test_a_tile_smaller_than_the_models_stride_is_refused():
    """A model that pads to a multiple of 64 cannot be run in 48-pixel tiles."""
    model = build_model("unet", 3, base_width=4)
    model.size_divisor = 64
    predictor = Predictor(model, options=InferenceOptions(mode="tiled", tile_size=48))
    with pytest.raises(FcnsegError, match="below the model's stride 64"):
        predictor.logits(torch.randn(1, 3, 70, 90))
    model.size_divisor = 32
    assert predictor.logits(torch.randn(1, 3, 70, 90)).shape == (1, 3, 70, 90)


@pytest.mark.parametrize("flags", [["--overlap", "1.0"], ["--tile-size", "0"], ["--scales", "nan"]])
def test_the_cli_says_so_in_one_line(tmp_path, capsys, flags: list[str]):
    """No traceback: exit status 2 and the flag's name, before any file is read."""
    argv = ["predict", str(tmp_path / "missing.pt"), str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*argv, *flags]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and flags[0] in error
