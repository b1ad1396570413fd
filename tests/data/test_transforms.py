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
    assert {"none", "light", "dihedral", "strong"} <= set(AUGMENTATIONS)
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


@pytest.mark.parametrize("crop_size", [(24, 24), (24, 36)])
def test_dihedral_gives_every_orientation_the_crop_allows(crop_size):
    """A 24 x 24 crop of an asymmetric picture, without rescaling: the outputs are the crop's
    8 symmetries (4 on a non-square crop: flips only), image and mask turned together. The 4
    also show that the steps draw independently: with one seed per step, the horizontal and the
    vertical flip (both p=0.5) came together or not at all."""
    rng = np.random.default_rng(1)
    mask = rng.integers(0, 3, (24, crop_size[1]))
    image = np.repeat((mask * 80).astype(np.uint8)[..., None], 3, axis=2)
    transform = build_transform("dihedral", MEAN, STD, 3, crop_size=crop_size)
    transform.compose.transforms = [  # drop the rescaling: orientations alone
        step for step in transform.compose.transforms if type(step).__name__ != "Affine"
    ]
    seen = set()
    for seed in range(64):
        out_image, out_mask = transform(image, mask, seed=seed)
        dark = (0 / 255 - MEAN[0]) / STD[0]  # where the mask is 0
        assert torch.equal(out_image[0] > dark + 0.1, out_mask > 0)  # turned together
        seen.add(out_mask.numpy().tobytes() + bytes(out_mask.shape))
    square = crop_size[0] == crop_size[1]
    orientations = [np.rot90(m, k) for m in (mask, mask[:, ::-1]) for k in range(4)]
    if not square:
        orientations = [mask, mask[::-1], mask[:, ::-1], mask[::-1, ::-1]]
    wanted = {np.ascontiguousarray(m).tobytes() + bytes(m.shape) for m in orientations}
    assert seen == wanted


def test_train_scale_doubles_images_and_repeats_mask_pixels():
    image, mask = sample(20, 30)
    out_image, out_mask = build_transform("none", MEAN, STD, 3, scale=2.0)(image, mask)
    assert out_image.shape == (3, 40, 60)
    assert np.array_equal(out_mask.numpy(), np.kron(mask, np.ones((2, 2), np.int64)))


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
