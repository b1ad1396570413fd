"""The instance task's dataset: raw instance data turned into the contract of
fcnseg.models.instances (not imported: models are a layer above data).

A raw instance dataset has `names`, `class_names`, `__len__` and
`load(index) -> (image uint8 (H, W, C), target int64 (2, H, W))`: target[0] the instance IDs
(0 = background and void), target[1] the class of each pixel's instance (0 = background,
ignore_index = void). `InstanceDataset` augments and normalises it:

    item  = (image float32 (C, H, W) normalised, target int64 (2, H, W))

Augmentation is data/transforms.py's, applied to the two target channels as one three-channel
mask, always resampled nearest-neighbour, so no ID or class is ever invented. The third channel
is all 0 and comes back nonzero only where a crop or a zoom out padded the picture: there the ID
becomes 0 and the class ignore_index (the transforms pad masks with one value, ignore_index,
which would be a valid ID).
"""

from __future__ import annotations

import numpy as np
import torch

from fcnseg.config import DataConfig
from fcnseg.data.dataset import SegmentationDataset, dataset_transform
from fcnseg.data.instances.coco import CocoInstances
from fcnseg.data.instances.folder import InstanceFolder
from fcnseg.data.instances.shapes import ShapesInstances
from fcnseg.data.transforms import JointTransform
from fcnseg.errors import FcnsegError

InstanceSource = InstanceFolder | CocoInstances | ShapesInstances


class InstanceDataset(SegmentationDataset):
    """A raw instance dataset with a joint transform seeded by (seed, epoch, index)."""

    def __init__(
        self, source: InstanceSource, transform: JointTransform, ignore_index: int, seed: int = 0
    ) -> None:
        super().__init__(source, transform, seed)
        self.ignore_index = ignore_index

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = self.source.load(index)  # (H, W, C) uint8, (2, H, W) int64
        padding = np.zeros_like(target[0])
        mask = np.stack([target[0], target[1], padding], axis=-1)  # (H, W, 3)
        seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        image_tensor, out = self.transform(image, mask, seed=seed)  # (C, h, w), (h, w, 3)
        padded = out[..., 2] != 0
        ids = out[..., 0].masked_fill(padded, 0)
        classes = out[..., 1].masked_fill(padded, self.ignore_index)
        return image_tensor, torch.stack([ids, classes])  # (C, h, w), (2, h, w)


def open_instance_split(config: DataConfig, split: str) -> InstanceSource:
    """The raw instance data of one split, as data.kind says."""
    if config.kind == "synthetic":
        train = split == config.train_split
        count = config.synthetic_train if train else config.synthetic_val
        offset = 0 if train else 1000  # train and val never share items
        return ShapesInstances(count, config.synthetic_size, seed=offset)
    if config.kind == "folder":
        return InstanceFolder(config, split)
    if config.kind == "coco":
        return CocoInstances(config, split)
    raise FcnsegError(f"unknown data.kind '{config.kind}'; choices: folder, coco, synthetic.")


def make_instance_dataset(
    config: DataConfig, split: str, train: bool, seed: int = 0
) -> InstanceDataset:
    """A split of instance data with the training augmentation (train=True) or none."""
    source = open_instance_split(config, split)
    return InstanceDataset(source, dataset_transform(config, train), config.ignore_index, seed)
