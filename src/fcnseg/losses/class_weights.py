"""Class weights from the training masks: median frequency balancing (Eigen & Fergus 2015).

`loss.class_weights` names one of WEIGHTINGS: "median_frequency" (rare classes weigh up to
median/frequency, e.g. 4-10x on CamVid's poles and signs), or "sqrt_median_frequency", its
square root: the same order with a gentler spread, for data where the full weights make the
model paint rare classes over common ones (on CamVid: buildings sprinkled with poles).

A single-output (binary) model has one weight, its foreground's relative to its background's:
the binary losses take it as BCE's pos_weight. Named weightings give it as w_1 / w_0 of the two
classes' weights, i.e. background frequency / foreground frequency.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import numpy as np
import torch

from fcnseg.config import LossConfig, scored_classes
from fcnseg.errors import FcnsegError
from fcnseg.registry import suggest


def count_class_pixels(
    masks: Iterable[np.ndarray | torch.Tensor], num_classes: int, ignore_index: int = 255
) -> tuple[np.ndarray, np.ndarray]:
    """(pixels of each class, labelled pixels of the images containing it), both (K,) int64,
    K = scored_classes(num_classes): a binary model's masks hold two classes.

    For data the label doctor does not scan (generated shapes); on a folder dataset the
    doctor's own counts (SplitScan.class_pixels, .presence_pixels) are the same numbers.
    """
    num_classes = scored_classes(num_classes)
    pixels = np.zeros(num_classes, dtype=np.int64)
    presence = np.zeros(num_classes, dtype=np.int64)
    for mask in masks:
        labels = np.asarray(mask).ravel()
        labels = labels[(labels != ignore_index) & (labels >= 0) & (labels < num_classes)]
        counts = np.bincount(labels, minlength=num_classes)[:num_classes]
        pixels += counts
        presence += np.where(counts > 0, labels.size, 0)
    return pixels, presence


def median_frequency_weights(class_pixels: np.ndarray, presence_pixels: np.ndarray) -> np.ndarray:
    """Eigen & Fergus 2015: weight_c = median(freq) / freq_c, where freq_c = pixels of class c /
    labelled pixels of the images where c appears.

    A class as frequent as the median weighs 1, rarer ones more. A class absent from training
    gets weight 1: there is nothing to weigh.
    """
    class_pixels, presence_pixels = np.asarray(class_pixels), np.asarray(presence_pixels)
    present = class_pixels > 0
    weights = np.ones(len(class_pixels))
    if present.any():
        frequency = class_pixels[present] / presence_pixels[present]
        weights[present] = np.median(frequency) / frequency
    return weights


WEIGHTINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "median_frequency": lambda weights: weights,
    "sqrt_median_frequency": np.sqrt,
}


def resolve_class_weights(
    config: LossConfig,
    counts: Callable[[], tuple[np.ndarray, np.ndarray]],
    num_classes: int | None = None,
) -> LossConfig:
    """The loss config with a named `class_weights` (see WEIGHTINGS) replaced by the numbers:
    one per class, or for a model of `num_classes` 1 the foreground's relative weight alone.

    `counts` gives (class pixels, presence pixels) of the training split, and is called only
    when needed: the label doctor's counts, or `count_class_pixels` over the masks.
    """
    if not isinstance(config.class_weights, str):
        return config
    if config.class_weights not in WEIGHTINGS:
        raise FcnsegError(
            f"loss.class_weights must be a list of numbers, one per class, or one of "
            f"{', '.join(WEIGHTINGS)}; got '{config.class_weights}'."
            + suggest(config.class_weights, list(WEIGHTINGS))
        )
    weights = median_frequency_weights(*counts())
    weights = WEIGHTINGS[config.class_weights](weights)
    if num_classes == 1:  # the binary losses weigh the foreground against the background
        weights = weights[1:2] / weights[0]
    return dataclasses.replace(config, class_weights=weights.tolist())
