"""What the instance model tests share: a target with two touching squares."""

from __future__ import annotations

import torch


def squares_target(height: int = 45, width: int = 61, batch: int = 2) -> torch.Tensor:
    """(N, 2, H, W): two touching squares (IDs 1 and 2, classes 1 and 2) and a void strip."""
    target = torch.zeros(batch, 2, height, width, dtype=torch.int64)
    target[:, 0, 8:24, 8:24], target[:, 1, 8:24, 8:24] = 1, 1
    target[:, 0, 8:24, 24:40], target[:, 1, 8:24, 24:40] = 2, 2
    target[:, 1, -2:] = 255
    return target
