"""The data contract and its plumbing.

A raw dataset (folder, generated, ...) has `names`, `class_names`, `__len__` and
`load(index) -> (image uint8 (H, W, C), mask int64 (H, W))`, and may have `palette` (a colour
per class, from the dataset's own class table). `SegmentationDataset` turns it into the contract
every model and loss relies on:

    item  = (image float32 (C, H, W) normalised, mask int64 (H, W)), labels in [0, K) or ignore
    batch = (image float32 (N, C, H, W), mask int64 (N, H, W))
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from fcnseg.config import DataConfig
from fcnseg.data.folder import FolderDataset
from fcnseg.data.images import image_channels
from fcnseg.data.synthetic import ShapesDataset
from fcnseg.data.transforms import JointTransform, build_transform
from fcnseg.errors import FcnsegError
from fcnseg.palette import PALETTE


class RawDataset(Protocol):
    names: list[str]
    class_names: list[str]

    def __len__(self) -> int: ...
    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]: ...


class SegmentationDataset(torch.utils.data.Dataset):
    """A raw dataset with a joint transform seeded by (seed, epoch, index)."""

    def __init__(self, source: RawDataset, transform: JointTransform, seed: int = 0) -> None:
        self.source, self.transform, self.seed = source, transform, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.source)

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def palette(self) -> np.ndarray:
        """(256, 3) uint8 colour of each label: the dataset's own, else fcnseg's fixed palette."""
        return getattr(self.source, "palette", PALETTE)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.source.load(index)
        seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        return self.transform(image, mask, seed=seed)


def open_split(config: DataConfig, split: str) -> RawDataset:
    """The raw dataset of one split, as the config describes it."""
    if config.kind == "synthetic":
        count = config.synthetic_train if split == config.train_split else config.synthetic_val
        offset = 0 if split == config.train_split else 1000  # train and val never share items
        return ShapesDataset(count, config.synthetic_size, seed=offset)
    if config.kind == "folder":
        return FolderDataset(config, split)
    raise FcnsegError(f"unknown data.kind '{config.kind}'; choices: folder, synthetic.")


def make_dataset(config: DataConfig, split: str, train: bool, seed: int = 0) -> SegmentationDataset:
    """A split with the training augmentation (train=True) or the evaluation preset."""
    return SegmentationDataset(open_split(config, split), dataset_transform(config, train), seed)


def dataset_transform(config: DataConfig, train: bool) -> JointTransform:
    """The data config's augmentation preset, crop and resize for training (train=True), or
    normalisation alone for evaluation; the same for both tasks."""
    return build_transform(
        config.augment if train else "none",
        config.mean,
        config.std,
        image_channels(config.image_mode, config.image_alpha),
        crop_size=config.crop_size if train else None,
        ignore_index=config.ignore_index,
        scale_range=config.scale_range,
        resize=config.train_resize if train else None,
        scale=config.train_scale if train else 1.0,
    )


def make_loader(
    dataset: SegmentationDataset,
    batch_size: int,
    train: bool,
    seed: int = 0,
    num_workers: int = 0,
    world_size: int = 1,
    rank: int = 0,
) -> DataLoader:
    """A loader whose order depends on (seed, epoch) only: call `loader.sampler.set_epoch(e)`.

    The same sampler serves one process and many (DDP): each rank takes its share.
    """
    sampler = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=train, seed=seed, drop_last=train
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=train,
        persistent_workers=False,  # workers must pick up each epoch's augmentation seed
    )
