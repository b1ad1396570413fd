"""Optimizers and learning-rate schedules.

Weight decay applies to convolution and linear weights only: decaying batch-norm scales and
biases pulls them towards zero for no regularising benefit (the usual practice since Goyal et al.
2017). Schedules are pure functions of training progress p in [0, 1], where p is the larger of
steps done / planned steps and minutes spent / budget: one rule serves epoch and time budgets,
and a resumed run needs no scheduler state beyond the step and the elapsed time.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from fcnseg.config import TrainConfig
from fcnseg.registry import lookup


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: multi-dimensional weights (decayed), and norms and biases (not decayed)."""
    decayed, plain = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decayed if parameter.ndim > 1 else plain).append(parameter)
    return [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.weight_decay)
    makers: dict[str, Callable[[], torch.optim.Optimizer]] = {
        "adamw": lambda: torch.optim.AdamW(groups, lr=config.lr),
        "sgd": lambda: torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum),
    }
    return lookup(makers, config.optimizer, "optimizer")()


def _poly(progress: float) -> float:
    return (1.0 - progress) ** 0.9  # DeepLab's "poly" policy


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _constant(progress: float) -> float:
    return 1.0


SCHEDULES: dict[str, Callable[[float], float]] = {
    "poly": _poly,
    "cosine": _cosine,
    "constant": _constant,
}


def learning_rate(config: TrainConfig, progress: float) -> float:
    """The learning rate at training progress p in [0, 1]: linear warmup, then the schedule."""
    progress = min(max(progress, 0.0), 1.0)
    decay = lookup(SCHEDULES, config.schedule, "schedule")
    if progress < config.warmup_fraction:
        return config.lr * (progress + 1e-3) / (config.warmup_fraction + 1e-3)
    span = max(1.0 - config.warmup_fraction, 1e-8)
    return config.lr * decay((progress - config.warmup_fraction) / span)
