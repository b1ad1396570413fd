"""Augmentation presets: no label invented, padding ignored, each item a function of its seed."""

import numpy as np
import pytest
import torch

from fcnseg import FcnsegError
from fcnseg.data.transforms import AUGMENTATIONS, build_transform

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def sample(height: int = 40, width: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = np.zeros((height, width), np.int64)
    mask[:, width // 3 :] = 1
    mask[height // 2 :, 2 * width // 3 :] = 2
    image = (mask[..., None] * 70 + rng.integers(0, 30, (height, width, 3))).astype(np.uint8)
    return image, mask


def test_presets_are_named():
    assert {"none", "light", "strong"} <= set(AUGMENTATIONS)
    with pytest.raises(FcnsegError, match=r"unknown augmentation 'strang'\. Did you mean 'strong'"):
        build_transform("strang", MEAN, STD, 3)


@pytest.mark.parametrize("crop_size", [(32, 48), None])
def test_strong_keeps_labels_and_pads_with_ignore(crop_size):
    image, mask = sample()
    transform = build_transform("strong", MEAN, STD, 3, crop_size=crop_size, ignore_index=255)
    shapes, padded = set(), 0
    for seed in range(40):
        out_image, out_mask = transform(image, mask, seed=seed)
        shapes.add((tuple(out_image.shape), tuple(out_mask.shape)))
        values = set(torch.unique(out_mask).tolist())
        assert values <= {0, 1, 2, 255}  # nearest-neighbour: no label is invented
        padded += 255 in values
    size = crop_size or (40, 60)
    assert shapes == {((3, *size), size)}  # one size, so batches can be made
    assert 0 < padded < 40  # scales below 1 leave borders, which are ignored


def test_same_seed_same_pixels_different_seed_different():
    image, mask = sample()
    transform = build_transform("strong", MEAN, STD, 3, crop_size=(32, 48))
    first, again = transform(image, mask, seed=7), transform(image, mask, seed=7)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], transform(image, mask, seed=8)[0])


def test_train_resize_then_crop_and_greyscale_jitter():
    image, mask = sample(80, 120)
    transform = build_transform("strong", (0.5,), (0.25,), 1, crop_size=(40, 60), resize=(40, 60))
    out_image, out_mask = transform(image[..., :1], mask, seed=3)
    assert out_image.shape == (1, 40, 60) and out_mask.shape == (40, 60)
    halved = build_transform("none", MEAN, STD, 3, resize=(40, 60))(image, mask)[1]
    assert torch.equal(halved, torch.from_numpy(mask[::2, ::2]))  # nearest: every other pixel


def test_scale_range_is_checked():
    with pytest.raises(FcnsegError, match=r"data\.scale_range is \[2\.0, 0\.5\]"):
        build_transform("strong", MEAN, STD, 3, scale_range=(2.0, 0.5))
