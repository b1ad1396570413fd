"""How the Predictor runs a network over images: whole or tiled, test-time augmentation, precision.

These are the `fcnseg evaluate` / `fcnseg predict` flags (--mode, --tile-size, --overlap, --blend,
--memory-budget, --flip, --scales, --precision, --crf), checked once here, in the flags' own words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from fcnseg.config import CRFParameters, apply_override, from_dict
from fcnseg.errors import FcnsegError

MODES = ("auto", "whole", "tiled")
MIN_TILE = 1  # pixels; the Predictor also refuses tiles smaller than its model's stride
# Peak activation memory of a forward pass, as a share of the sum of all layer outputs: measured
# 0.25-0.40 at 1024x1024 for U-Net, U-Net/ResNet-34, LinkNet and DeepLabv3+ (eager, CPU).


@dataclass(frozen=True)
class InferenceOptions:
    """How the Predictor runs a network over images; the defaults suit validation and `predict`."""

    mode: str = "auto"  # "auto": tiles when whole-image inference would exceed the budget
    tile_size: int = 512  # tiles are tile_size x tile_size (cut to the image if it is smaller)
    overlap: float = 0.25  # share of a tile that neighbouring tiles have in common
    blend: str = "gaussian"  # "gaussian" or "linear" weighting of overlapping tiles' logits
    tile_batch: int = 4  # tiles per forward pass
    memory_budget_mb: float = 2048  # auto: the most a whole-image pass may take
    flip: bool = False  # test-time augmentation: also the horizontally flipped image
    scales: tuple[float, ...] = (1.0,)  # test-time augmentation: image scales to average
    precision: str = "fp32"  # "fp32" or "bf16" (autocast; torch modules only)
    crf: CRFParameters | None = None  # a dense CRF on the scores (fcnseg.models.crf); None: none

    def __post_init__(self) -> None:
        """Refuse options that cannot work, in the words of the command-line flags."""
        if self.mode not in MODES:
            raise FcnsegError(f"inference mode '{self.mode}' is not one of {', '.join(MODES)}.")
        if not self.scales or not all(math.isfinite(s) and s > 0 for s in self.scales):
            raise FcnsegError(
                f"--scales must be positive numbers such as 0.75 1 1.25, got {list(self.scales)}."
            )
        if self.precision not in ("fp32", "bf16"):
            raise FcnsegError(f"precision '{self.precision}' is not one of fp32, bf16.")
        if self.tile_size < MIN_TILE:
            raise FcnsegError(
                f"--tile-size is {self.tile_size}; a tile is a positive number of pixels, at "
                "least the model's stride (512 is a good start)."
            )
        if not 0 <= self.overlap < 1:
            raise FcnsegError(
                f"--overlap is {self.overlap}; it is the share of a tile that neighbours have in "
                "common: a number from 0 up to (not including) 1, such as 0.25."
            )
        if not self.memory_budget_mb > 0 or self.tile_batch < 1:
            raise FcnsegError(
                f"--memory-budget must be a number of megabytes > 0 and tile_batch >= 1, got "
                f"{self.memory_budget_mb} and {self.tile_batch}."
            )

    @property
    def augmented(self) -> bool:
        return self.flip or tuple(self.scales) != (1.0,)

    def at_scale(self, scale: float) -> InferenceOptions:
        """These options for a model trained on images scaled by `scale` (data.inference_scale):
        every view, test-time scales included, is scaled by it as well."""
        if not scale > 0:
            raise FcnsegError(
                f"data.inference_scale must be a positive number (1.0: images as they are, 0.5: "
                f"half resolution), got {scale}."
            )
        return replace(self, scales=tuple(view * scale for view in self.scales))


def crf_parameters(saved: Any, overrides: Sequence[str] = ()) -> CRFParameters:
    """The settings of `--crf`: a checkpoint config's `inference.crf` (a plain mapping; None: the
    defaults) with each `--crf-set key=value` applied, checked like a config file's."""
    settings = dict(saved or {})
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or not key.strip() or "." in key:
            raise FcnsegError(
                f"--crf-set expects key=value, such as appearance_weight=5, got '{override}'."
            )
        apply_override(settings, override)
    return from_dict(CRFParameters, settings, "inference.crf.")
