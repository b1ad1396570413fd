"""Class weights from the training masks: median frequency balancing (Eigen & Fergus 2015)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np
import torch

from fcnseg.config import LossConfig
from fcnseg.errors import FcnsegError


def median_frequency_weights(
    masks: Iterable[np.ndarray | torch.Tensor], num_classes: int, ignore_index: int = 255
) -> list[float]:
    """Eigen & Fergus 2015: weight_c = median(freq) / freq_c.

    freq_c is class c's pixel count over the labelled pixels of the images where c appears.
    Classes that never appear get weight 1.
    """
    pixels = np.zeros(num_classes, dtype=np.int64)
    pixels_of_images_with = np.zeros(num_classes, dtype=np.int64)
    for mask in masks:
        labels = np.asarray(mask).ravel()
        labels = labels[labels != ignore_index]
        counts = np.bincount(labels, minlength=num_classes)[:num_classes]
        pixels += counts
        pixels_of_images_with += np.where(counts > 0, labels.size, 0)
    present = pixels > 0
    if not present.any():
        return [1.0] * num_classes
    frequency = pixels[present] / pixels_of_images_with[present]
    weights = np.ones(num_classes)
    weights[present] = np.median(frequency) / frequency
    return weights.tolist()


def resolve_class_weights(
    config: LossConfig,
    masks: Callable[[], Iterable[np.ndarray]],
    num_classes: int,
    ignore_index: int,
) -> LossConfig:
    """The loss config with `class_weights: median_frequency` replaced by the numbers.

    `masks` is called only when needed: counting reads every training mask once.
    """
    if not isinstance(config.class_weights, str):
        return config
    if config.class_weights != "median_frequency":
        raise FcnsegError(
            f"loss.class_weights must be a list of numbers or 'median_frequency', "
            f"got '{config.class_weights}'."
        )
    weights = median_frequency_weights(masks(), num_classes, ignore_index)
    return dataclasses.replace(config, class_weights=weights)
