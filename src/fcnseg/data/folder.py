"""Folder datasets: `<root>/<split>/images/*` and `<root>/<split>/masks/*`, matched by file stem.

Masks hold class indices (one channel, each pixel's value is its class; 255 = ignore). Every
pairing and size problem is found when the dataset is opened, from file headers only, so that a
run fails in its first second rather than after an epoch; label values are checked as each mask
is read (and all at once by `check_labels`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fcnseg.errors import FcnsegError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
INDEX_MASK_MODES = ("L", "P", "I;16", "I", "1")


def _listing(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def find_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, mask) paths of one split, or an error saying what is missing and where."""
    if not root.is_dir():
        raise FcnsegError(f"data folder {root} does not exist; pass the folder holding {split}/.")
    image_dir, mask_dir = root / split / "images", root / split / "masks"
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise FcnsegError(
                f"{folder} does not exist; a folder dataset needs {root}/{split}/images and "
                f"{root}/{split}/masks (masks named like their images)."
            )
    images = _listing(image_dir)
    if not images:
        raise FcnsegError(
            f"{image_dir} holds no images; accepted suffixes: {', '.join(IMAGE_SUFFIXES)}."
        )
    masks = {p.stem: p for p in _listing(mask_dir)}
    unmatched = [image for image in images if image.stem not in masks]
    if unmatched:
        more = f" ({len(unmatched) - 1} more images have none either)" if len(unmatched) > 1 else ""
        raise FcnsegError(
            f"image {unmatched[0]} has no mask: expected {mask_dir}/{unmatched[0].stem}.png "
            f"(masks are matched to images by file name without suffix){more}."
        )
    return [(image, masks[image.stem]) for image in images]


def read_image(path: Path, mode: str = "RGB") -> np.ndarray:
    """(H, W, C) uint8 in `mode` ("RGB" or "L"), or an error naming the unreadable file."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert(mode))
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise FcnsegError(f"cannot read image {path}: {error}") from None
    return array[..., None] if array.ndim == 2 else array


def read_mask(path: Path) -> np.ndarray:
    """(H, W) int64 class indices from a one-channel mask."""
    try:
        with Image.open(path) as image:
            if image.mode not in INDEX_MASK_MODES:
                raise FcnsegError(
                    f"mask {path} is a {image.mode} image; index masks are accepted (one "
                    f"channel whose values are class numbers: modes {', '.join(INDEX_MASK_MODES)})."
                    " Convert colour masks to class indices first."
                )
            return np.asarray(image, dtype=np.int64)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise FcnsegError(f"cannot read mask {path}: {error}") from None


def check_label_values(
    mask: np.ndarray, num_classes: int, ignore_index: int, path: Path | str
) -> None:
    """Every label in [0, num_classes) or the ignore index, else an error naming the values."""
    values = np.unique(mask)
    bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_index)]
    if bad.size:
        raise FcnsegError(
            f"mask {path} has labels {bad.tolist()[:10]} outside [0, {num_classes}) that are not "
            f"the ignore index {ignore_index}; set data.num_classes, or map them to "
            f"{ignore_index} to ignore them."
        )


class FolderDataset:
    """A folder split: `load(index)` -> (image uint8 (H, W, C), mask int64 (H, W))."""

    def __init__(
        self,
        root: str | Path,
        split: str,
        num_classes: int,
        ignore_index: int = 255,
        image_mode: str = "RGB",
        class_names: list[str] | None = None,
    ) -> None:
        self.root, self.split = Path(root), split
        self.num_classes, self.ignore_index, self.image_mode = num_classes, ignore_index, image_mode
        self.pairs = find_pairs(self.root, split)
        self.names = [image.stem for image, _ in self.pairs]
        self.class_names = class_names or [f"class {i}" for i in range(num_classes)]
        self._check_sizes()

    def __len__(self) -> int:
        return len(self.pairs)

    def _check_sizes(self) -> None:
        """Image and mask sizes must agree; headers only, so this is fast even for big sets."""
        for image_path, mask_path in self.pairs:
            try:
                with Image.open(image_path) as image, Image.open(mask_path) as mask:
                    image_size, mask_size = image.size, mask.size
            except (OSError, UnidentifiedImageError) as error:
                raise FcnsegError(f"cannot read {image_path} or {mask_path}: {error}") from None
            if image_size != mask_size:
                raise FcnsegError(
                    f"mask {mask_path} is {mask_size[0]}x{mask_size[1]} (width x height) but its "
                    f"image {image_path} is {image_size[0]}x{image_size[1]}; they must match."
                )

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[index]
        mask = read_mask(mask_path)
        check_label_values(mask, self.num_classes, self.ignore_index, mask_path)
        return read_image(image_path, self.image_mode), mask

    def check_labels(self) -> None:
        """Read every mask once and stop at the first with labels that do not fit."""
        for _, mask_path in self.pairs:
            check_label_values(read_mask(mask_path), self.num_classes, self.ignore_index, mask_path)
