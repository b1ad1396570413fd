"""Image/mask datasets on disk, in any layout (layouts.py) and mask encoding (encodings.py).

Opening a split finds every pair and checks every image/mask size from file headers only, so a run
fails in its first second rather than after an epoch. The masks' encoding and class table are
settled then too, from a few sample masks. Each mask's values are checked as it is read (all at
once by `check_labels`, and with every other check by the label doctor, inspect.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fcnseg.config import DataConfig
from fcnseg.data.images import IMAGE_SUFFIXES, image_channels, open_image, read_image
from fcnseg.data.layouts import find_pairs, resolve_layout
from fcnseg.data.masks.labels import LabelReader, build_label_map, detect_format
from fcnseg.errors import FcnsegError

__all__ = ["IMAGE_SUFFIXES", "FolderDataset", "image_channels", "read_image"]


def _check_sizes(pairs: list[tuple[Path, Path]]) -> None:
    """Image and mask sizes must agree; headers only, so this is fast even for big sets."""
    for image_path, mask_path in pairs:
        with open_image(image_path) as image, open_image(mask_path, "mask") as mask:
            image_size, mask_size = image.size, mask.size
        if image_size != mask_size:
            raise FcnsegError(
                f"mask {mask_path} is {mask_size[0]}x{mask_size[1]} (width x height) but its "
                f"image {image_path} is {image_size[0]}x{image_size[1]}; they must match."
            )


class FolderDataset:
    """One split of a dataset on disk: `load(index)` -> (image uint8 (H, W, C), mask int64 (H, W)).

    `class_names` and `palette` (colour of each training label) come from the dataset's class
    table or palette when it has one; `mask_format.codec.description` says how masks were read.
    """

    def __init__(self, config: DataConfig, split: str) -> None:
        if config.root is None:
            raise FcnsegError("data.kind is 'folder' but data.root is not set; give the folder.")
        self.config, self.root, self.split = config, Path(config.root), split
        self.layout = resolve_layout(self.root, config.layout)
        self.pairs = find_pairs(self.root, split, self.layout)
        self.names = [image.stem for image, _ in self.pairs]
        _check_sizes(self.pairs)
        masks = [mask for _, mask in self.pairs]
        self.mask_format = detect_format(
            config, self.root, self.layout.name, masks, config.num_classes
        )
        label_map = build_label_map(self.mask_format, config.num_classes, config.ignore_index)
        self.labels = LabelReader(self.mask_format, label_map, config.class_names)
        self.class_names, self.palette = self.labels.class_names, self.labels.palette

    def __len__(self) -> int:
        return len(self.pairs)

    def read_image(self, path: Path) -> np.ndarray:
        config = self.config
        return read_image(
            path,
            config.image_mode,
            config.image_alpha,
            config.image_bit_depth,
            config.image_scaling,
        )

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[index]
        return self.read_image(image_path), self.labels.read(mask_path)

    def check_labels(self) -> None:
        """Read every mask once and stop at the first with values that fit no class."""
        for _, mask_path in self.pairs:
            self.labels.read(mask_path)
