"""Class weights of a single-output (binary) model: one number, the foreground's weight."""

import math

import numpy as np
import pytest
import torch

from fcnseg.config import LossConfig, LossTerm
from fcnseg.errors import FcnsegError
from fcnseg.losses import build_loss, count_class_pixels, resolve_class_weights

LN3 = math.log(3.0)
IGNORE = 255


def binary_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    """One sigmoid logit: p = 3/4, 3/4, 1/4 with truth 1, 0, 1, and an ignored 4th pixel."""
    logits = torch.tensor([LN3, LN3, -LN3, 9.0]).reshape(1, 1, 1, 4)
    return logits, torch.tensor([[[1, 0, 1, IGNORE]]])


def test_median_frequency_gives_a_binary_model_its_foreground_weight():
    masks = [np.array([[0, 0], [0, 1]]), np.array([[0, 0, 0, IGNORE], [0, 0, 0, 1]])]
    # A binary model's masks hold both labels: background 3 + 6 = 9 px in images of 4 + 7
    # labelled px, foreground 1 + 1 = 2 px in the same 11.
    pixels, presence = count_class_pixels(masks, 1, IGNORE)
    assert pixels.tolist() == [9, 2] and presence.tolist() == [11, 11]
    # Frequencies 9/11 and 2/11, median 5.5/11: weights 5.5/9 and 5.5/2, so the foreground's
    # weight relative to the background's is 9/2 = background pixels / foreground pixels.
    config = LossConfig(class_weights="median_frequency")
    resolved = resolve_class_weights(config, lambda: (pixels, presence), num_classes=1)
    assert resolved.class_weights == pytest.approx([4.5])
    gentle = LossConfig(class_weights="sqrt_median_frequency")
    resolved = resolve_class_weights(gentle, lambda: (pixels, presence), num_classes=1)
    assert resolved.class_weights == pytest.approx([math.sqrt(4.5)])
    # Without the class count, one weight per counted class, as before.
    assert len(resolve_class_weights(config, lambda: (pixels, presence)).class_weights) == 2


def test_binary_cross_entropy_takes_loss_class_weights_as_its_pos_weight():
    logits, mask = binary_pixels()
    # -ln(3/4) weighted 3 (truth 1), -ln(1/4) (truth 0), -ln(1/4) weighted 3 (truth 1).
    expected = (3 * math.log(4 / 3) + math.log(4) + 3 * math.log(4)) / 3
    config = _terms("binary_cross_entropy")
    config.class_weights = [3.0]
    assert build_loss(config, 1, IGNORE)(logits, mask).item() == pytest.approx(expected, 1e-6)
    both = _terms("binary_cross_entropy", pos_weight=2.0)
    both.class_weights = [3.0]
    with pytest.raises(FcnsegError, match=r"one foreground weight, got pos_weight 2\.0"):
        build_loss(both, 1, IGNORE)


def test_focal_weighs_a_binary_model_foreground_by_its_class_weight():
    logits, mask = binary_pixels()
    # gamma 2: p_t = 3/4 (truth 1, weight 3), 1/4 (truth 0), 1/4 (truth 1, weight 3).
    expected = (
        3 * (1 / 16) * math.log(4 / 3) + (9 / 16) * math.log(4) + 3 * (9 / 16) * math.log(4)
    ) / 3
    config = _terms("focal", gamma=2.0)
    config.class_weights = [3.0]
    assert build_loss(config, 1, IGNORE)(logits, mask).item() == pytest.approx(expected, 1e-6)


def _terms(name: str, **options) -> LossConfig:
    return LossConfig(terms=[LossTerm(name=name, options=options)])
