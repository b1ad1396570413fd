"""Optimizers and schedules: hand-computed learning rates and the weight-decay groups."""

import itertools
import math

import pytest
import torch

from fcnseg.config import TrainConfig
from fcnseg.errors import FcnsegError
from fcnseg.models import build_model
from fcnseg.training.optim import build_optimizer, learning_rate, parameter_groups


def rate(progress: float, **options) -> float:
    return learning_rate(TrainConfig(lr=0.1, **options), progress)


def test_poly_cosine_and_constant_without_warmup():
    assert rate(0.0, schedule="poly", warmup_fraction=0) == pytest.approx(0.1)
    assert rate(0.5, schedule="poly", warmup_fraction=0) == pytest.approx(0.1 * 0.5**0.9)
    assert rate(1.0, schedule="poly", warmup_fraction=0) == 0.0
    assert rate(0.5, schedule="cosine", warmup_fraction=0) == pytest.approx(0.05)
    assert rate(0.25, schedule="cosine", warmup_fraction=0) == pytest.approx(
        0.05 * (1 + math.cos(math.pi / 4))
    )
    assert rate(0.7, schedule="constant", warmup_fraction=0) == pytest.approx(0.1)


def test_linear_warmup_then_the_schedule_over_the_rest():
    # warmup 0.2: lr x (p + 0.001) / 0.201 until p = 0.2, then poly over (p - 0.2) / 0.8.
    assert rate(0.0, warmup_fraction=0.2) == pytest.approx(0.1 * 0.001 / 0.201)
    assert rate(0.1, warmup_fraction=0.2) == pytest.approx(0.1 * 0.101 / 0.201)
    assert rate(0.2, warmup_fraction=0.2) == pytest.approx(0.1)  # the peak, continuous
    assert rate(0.6, warmup_fraction=0.2) == pytest.approx(0.1 * 0.5**0.9)
    assert rate(0.6, warmup_fraction=0.2, schedule="cosine") == pytest.approx(0.05)
    # Progress past the plan (a time budget overrun) is held at the end.
    assert rate(1.7, warmup_fraction=0.2) == 0.0
    rates = [rate(p / 100, warmup_fraction=0.2) for p in range(101)]
    peak = rates.index(max(rates))
    assert peak == 20
    assert all(a < b for a, b in itertools.pairwise(rates[: peak + 1]))
    assert all(a > b for a, b in itertools.pairwise(rates[peak:]))


def test_weight_decay_skips_norms_and_biases():
    model = build_model("unet", 3, base_width=4)
    decayed, plain = parameter_groups(model, 1e-4)
    assert decayed["weight_decay"] == 1e-4 and plain["weight_decay"] == 0
    assert all(p.ndim == 4 for p in decayed["params"])  # convolution kernels
    assert all(p.ndim == 1 for p in plain["params"])  # norm scales and shifts, biases
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    plain_ids = {id(p) for p in plain["params"]}
    assert norms and all(id(m.weight) in plain_ids and id(m.bias) in plain_ids for m in norms)
    count = sum(1 for p in model.parameters())
    assert len(decayed["params"]) + len(plain["params"]) == count


def test_optimizers_by_name():
    model = build_model("unet", 3, base_width=4)
    sgd = build_optimizer(model, TrainConfig(optimizer="sgd", momentum=0.8))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.8
    assert isinstance(build_optimizer(model, TrainConfig(optimizer="adamw")), torch.optim.AdamW)
    with pytest.raises(FcnsegError, match="Did you mean 'adamw'"):
        build_optimizer(model, TrainConfig(optimizer="adamv"))
    with pytest.raises(FcnsegError, match="Did you mean 'cosine'"):
        rate(0.5, schedule="cosin")
