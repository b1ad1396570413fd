"""Joint image + mask transforms with albumentations, chosen by name (data.augment).

    none      nothing: the evaluation preset (validation, `evaluate` and `predict` use it)
    light     horizontal flip, mild rescaling (0.8-1.25, size kept), optional crop
    dihedral  light in every orientation, for images with no "up" (microscopy, satellite):
              with a square crop, all 8 flips and quarter turns; otherwise both flips
    strong    horizontal flip, random scale over data.scale_range (0.5-2.0 by default), crop
              to data.crop_size (or, without one, back to the input's size), colour jitter

Masks are always resampled nearest-neighbour and padded with the ignore index, so augmentation
never invents labels. Training images can first be resized (data.train_resize, e.g. half
resolution) or rescaled by a factor (data.train_scale, e.g. 2 for small objects). Each call
takes a seed: the trainer derives it from (run seed, epoch, item), so a resumed run sees exactly
the pixels it would have.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

# albumentations asks the network for a newer version on import unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A
import cv2

from fcnseg.errors import FcnsegError
from fcnseg.registry import lookup

Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class AugmentOptions:
    crop_size: tuple[int, int] | None = None  # (H, W) of training crops, padded with ignore
    ignore_index: int = 255
    scale_range: tuple[float, float] = (0.5, 2.0)
    channels: int = 3


def _filled(ignore_index: int) -> dict:
    """Constant borders: black image, ignored mask."""
    return {"border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": ignore_index}


def _crop(options: AugmentOptions) -> list:
    if options.crop_size is None:
        return []
    height, width = options.crop_size
    padding = _filled(options.ignore_index)
    return [A.RandomCrop(height, width, pad_if_needed=True, pad_position="random", **padding)]


def _no_augmentation(options: AugmentOptions) -> list:
    return []


def _light(options: AugmentOptions) -> list:
    """Flips and mild rescaling (size kept, borders filled with ignore), then an optional crop."""
    rescale = A.Affine(scale=(0.8, 1.25), p=0.5, **_filled(options.ignore_index))
    return [A.HorizontalFlip(p=0.5), rescale, *_crop(options)]


def _dihedral(options: AugmentOptions) -> list:
    """Mild rescaling and the crop, then any of the square's 8 symmetries (flips and quarter
    turns): turns only on a square crop, as they swap height and width (batches need one size)."""
    rescale = A.Affine(scale=(0.8, 1.25), p=0.5, **_filled(options.ignore_index))
    size = options.crop_size
    if size is not None and size[0] == size[1]:
        return [rescale, *_crop(options), A.SquareSymmetry(p=1.0)]
    return [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), rescale, *_crop(options)]


def _strong(options: AugmentOptions) -> list:
    """Scale 0.5-2.0, crop (padding with ignore), flip and colour jitter, as DeepLab trains."""
    low, high = options.scale_range
    if not 0 < low <= high:
        raise FcnsegError(
            f"data.scale_range is {list(options.scale_range)}; give [low, high] with "
            "0 < low <= high, e.g. [0.5, 2.0]."
        )
    if options.crop_size is None:
        # No crop size to return to: zoom about a random point, keeping the input's size.
        padding = _filled(options.ignore_index)
        scaling = [A.Affine(scale=(low, high), translate_percent=(-0.2, 0.2), p=1.0, **padding)]
    else:
        scaling = [A.RandomScale(scale_limit=(low - 1, high - 1), p=1.0), *_crop(options)]
    if options.channels == 3:
        colour = A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.03, p=0.8)
    else:  # saturation and hue need exactly three colour channels
        colour = A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.8)
    return [*scaling, A.HorizontalFlip(p=0.5), colour]


AUGMENTATIONS = {
    "none": _no_augmentation,
    "light": _light,
    "dihedral": _dihedral,
    "strong": _strong,
}


class JointTransform:
    """(image uint8 (H, W, C), mask int (H, W)) -> (float32 (C, H, W) normalised, int64 (H, W))."""

    def __init__(self, steps: list, mean: Sequence[float], std: Sequence[float]) -> None:
        # Normalisation uses max_pixel_value=255: uint8 images map to (x/255 - mean) / std.
        self.compose = A.Compose([*steps, A.Normalize(mean=mean, std=std)])

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed: int | None = None) -> Pair:
        if seed is not None:
            # One generator for all steps, drawn from in turn. Compose.set_random_seed would
            # give every step its own generator with the same seed: identical draws, so that a
            # flip at p=0.5 and a rescale at p=0.5 would always happen together.
            self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        out = self.compose(image=image, mask=mask)
        image_tensor = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1)))
        return image_tensor, torch.from_numpy(np.asarray(out["mask"], dtype=np.int64))


def build_transform(
    augment: str,
    mean: Sequence[float],
    std: Sequence[float],
    channels: int,
    crop_size: tuple[int, int] | None = None,
    ignore_index: int = 255,
    scale_range: tuple[float, float] = (0.5, 2.0),
    resize: tuple[int, int] | None = None,
    scale: float = 1.0,
) -> JointTransform:
    """Optional resize (to a size) or rescaling (by a factor), the named augmentation preset,
    then per-channel normalisation."""
    if len(mean) != channels or len(std) != channels:
        raise FcnsegError(
            f"data.mean and data.std need one value per image channel ({channels}), got "
            f"mean={list(mean)} std={list(std)}; for greyscale use e.g. mean: [0.5], std: [0.25]."
        )
    preset = lookup(AUGMENTATIONS, augment, "augmentation")
    steps = preset(AugmentOptions(crop_size, ignore_index, tuple(scale_range), channels))
    if scale != 1.0:  # bilinear for images, nearest for masks (albumentations' default)
        steps.insert(0, A.RandomScale(scale_limit=(scale - 1, scale - 1), p=1.0))
    if resize is not None:  # area averaging: the right filter for shrinking, nearest for masks
        steps.insert(0, A.Resize(resize[0], resize[1], interpolation=cv2.INTER_AREA))
    return JointTransform(steps, mean, std)
