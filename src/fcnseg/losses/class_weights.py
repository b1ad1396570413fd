"""Class weights from the training masks: median frequency balancing (Eigen & Fergus 2015).

`loss.class_weights` names one of WEIGHTINGS: "median_frequency" (rare classes weigh up to
median/frequency, e.g. 4-10x on CamVid's poles and signs), or "sqrt_median_frequency", its
square root: the same order with a gentler spread, for data where the full weights make the
model paint rare classes over common ones (on CamVid: buildings sprinkled with poles).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np
import torch

from fcnseg.config import LossConfig
from fcnseg.errors import FcnsegError
from fcnseg.registry import suggest


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


WEIGHTINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "median_frequency": lambda weights: weights,
    "sqrt_median_frequency": np.sqrt,
}


def resolve_class_weights(
    config: LossConfig,
    masks: Callable[[], Iterable[np.ndarray]],
    num_classes: int,
    ignore_index: int,
) -> LossConfig:
    """The loss config with a named `class_weights` (see WEIGHTINGS) replaced by the numbers.

    `masks` is called only when needed: counting reads every training mask once.
    """
    if not isinstance(config.class_weights, str):
        return config
    if config.class_weights not in WEIGHTINGS:
        raise FcnsegError(
            f"loss.class_weights must be a list of numbers, one per class, or one of "
            f"{', '.join(WEIGHTINGS)}; got '{config.class_weights}'."
            + suggest(config.class_weights, list(WEIGHTINGS))
        )
    weights = np.asarray(median_frequency_weights(masks(), num_classes, ignore_index))
    weights = WEIGHTINGS[config.class_weights](weights)
    return dataclasses.replace(config, class_weights=weights.tolist())
