"""Joint image + mask transforms with albumentations.

Masks are always resampled nearest-neighbour (albumentations' default for masks) and padded with
the ignore index, so that augmentation never invents labels. Each call takes a seed: the trainer
derives it from (run seed, epoch, item), so a resumed run sees exactly the pixels it would have.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

# albumentations asks the network for a newer version on import unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A
import cv2

from fcnseg.errors import FcnsegError
from fcnseg.registry import lookup

Pair = tuple[torch.Tensor, torch.Tensor]


def _no_augmentation(crop_size: tuple[int, int] | None, ignore_index: int) -> list:
    return []


def _light(crop_size: tuple[int, int] | None, ignore_index: int) -> list:
    """Flips and mild rescaling (size kept, borders filled with ignore), then an optional crop."""
    steps: list = [
        A.HorizontalFlip(p=0.5),
        A.Affine(
            scale=(0.8, 1.25),
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=ignore_index,
            p=0.5,
        ),
    ]
    if crop_size is not None:
        height, width = crop_size
        steps += [
            A.PadIfNeeded(
                height, width, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=ignore_index
            ),
            A.RandomCrop(height, width),
        ]
    return steps


AUGMENTATIONS = {"none": _no_augmentation, "light": _light}


class JointTransform:
    """(image uint8 (H, W, C), mask int (H, W)) -> (float32 (C, H, W) normalised, int64 (H, W))."""

    def __init__(self, steps: list, mean: Sequence[float], std: Sequence[float]) -> None:
        # Normalisation uses max_pixel_value=255: uint8 images map to (x/255 - mean) / std.
        self.compose = A.Compose([*steps, A.Normalize(mean=mean, std=std)])

    def __call__(self, image: np.ndarray, mask: np.ndarray, seed: int | None = None) -> Pair:
        if seed is not None:
            self.compose.set_random_seed(seed)
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
) -> JointTransform:
    """The named augmentation preset followed by normalisation with per-channel mean and std."""
    if len(mean) != channels or len(std) != channels:
        raise FcnsegError(
            f"data.mean and data.std need one value per image channel ({channels}), got "
            f"mean={list(mean)} std={list(std)}; for greyscale use e.g. mean: [0.5], std: [0.25]."
        )
    steps = lookup(AUGMENTATIONS, augment, "augmentation")(crop_size, ignore_index)
    return JointTransform(steps, mean, std)
