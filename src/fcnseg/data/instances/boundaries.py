"""Instance maps -> 3-class semantic masks, for the "semantic + watershed" instance baseline.

    0 background    no instance
    1 interior      instance pixels farther than `width` pixels from any other label
    2 boundary      instance pixels with another label (background or another instance) in their
                    (2 width + 1)^2 window: the inner band of every object, `width` pixels wide
    ignore_index    void pixels (neither learned nor scored)

A semantic network trained on these masks separates touching objects by their boundary band;
fcnseg.inference.watershed grows the connected interiors back over the band into instances.
The image border is not a boundary (an object cut by the border has no edge there), and a void
neighbour is not "another label" either: nothing is known beyond a void pixel.

`write_boundary_masks` turns an instance folder (data/instances/folder.py) into a semantic one
that `fcnseg train` (task semantic, data.num_classes 3) reads with no code of its own. Every
instance becomes class 1: classes of multi-class data are not kept.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from fcnseg.config import DataConfig
from fcnseg.data.images import open_image
from fcnseg.data.instances.folder import InstanceFolder
from fcnseg.errors import FcnsegError

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
BOUNDARY_CLASS_NAMES = ["background", "interior", "boundary"]


def boundary_mask(
    ids: np.ndarray,
    void: np.ndarray | None = None,
    width: int = 2,
    ignore_index: int = 255,
) -> np.ndarray:
    """(H, W) instance IDs (0 = background) -> (H, W) uint8 mask of 0/1/2, ignore_index on void."""
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise FcnsegError(f"an instance map is (H, W); got shape {ids.shape}.")
    if width < 1:
        raise FcnsegError(f"the boundary band is at least 1 pixel wide; got width {width}.")
    void = np.zeros(ids.shape, dtype=bool) if void is None else np.asarray(void, dtype=bool)
    if void.shape != ids.shape:
        raise FcnsegError(f"the void mask is {void.shape} but the instance map {ids.shape}.")
    # Edge padding repeats the border pixel: the border itself never differs from an object.
    padded_ids = np.pad(ids, width, mode="edge")
    padded_void = np.pad(void, width, mode="edge")
    height, breadth = ids.shape
    near_other = np.zeros(ids.shape, dtype=bool)
    for row in range(2 * width + 1):
        for column in range(2 * width + 1):
            neighbour = padded_ids[row : row + height, column : column + breadth]
            neighbour_void = padded_void[row : row + height, column : column + breadth]
            near_other |= (neighbour != ids) & ~neighbour_void
    mask = np.where(ids > 0, INTERIOR, BACKGROUND).astype(np.uint8)
    mask[(ids > 0) & near_other] = BOUNDARY
    mask[void] = ignore_index
    return mask


def write_boundary_masks(
    instance_root: str | Path,
    out_root: str | Path,
    splits: list[str] | tuple[str, ...] = ("train", "val"),
    width: int = 2,
    ignore_index: int = 255,
    limit: int | None = None,
    center_crop: int | None = None,
) -> dict[str, int]:
    """Write <out_root>/<split>/images (symlinks to the originals, copies where the file system
    has none) and masks (8-bit PNGs of boundary_mask) for each split of an instance folder;
    `limit` keeps the first images of each split (smoke runs). `center_crop` writes the middle
    square of that side instead (images as PNG copies), so that a split of many sizes can be
    batched: the trainer's semantic validation needs one size. Returns {split: images written}."""
    config = DataConfig(kind="folder", root=str(instance_root), layout="folder")
    written = {}
    for split in splits:
        source = InstanceFolder(config, split)
        count = len(source) if limit is None else min(limit, len(source))
        images_out = Path(out_root) / split / "images"
        masks_out = Path(out_root) / split / "masks"
        images_out.mkdir(parents=True, exist_ok=True)
        masks_out.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image_path = source.pairs[index][0]
            target = source.load_target(index)  # (2, H, W): void is ID 0, class ignore_index
            void = target[1] == source.config.ignore_index
            mask = boundary_mask(target[0], void, width, ignore_index)
            name = source.names[index]
            if center_crop is None:
                _link_or_copy(image_path, images_out / image_path.name)
            else:
                with open_image(image_path) as opened:  # checked (fcnseg.data.decoding)
                    image = np.asarray(opened)
                window = _middle(mask.shape, center_crop, image_path)
                Image.fromarray(image[window]).save(images_out / f"{name}.png")
                mask = mask[window]
            Image.fromarray(mask).save(masks_out / f"{name}.png")
        written[split] = count
    return written


def _link_or_copy(source: Path, destination: Path) -> None:
    """An absolute symlink to `source` (no second copy of the images), a copy as the fallback."""
    if destination.is_symlink() or destination.exists():
        destination.unlink()
    try:
        os.symlink(source.resolve(), destination)
    except OSError:
        shutil.copyfile(source, destination)


def _middle(shape: tuple[int, ...], side: int, path: Path) -> tuple[slice, slice]:
    """The rows and columns of the centred side x side square of an (H, W) image."""
    height, width = shape[:2]
    if min(height, width) < side:
        raise FcnsegError(f"{path} is {width}x{height}, smaller than the {side}-pixel crop asked.")
    top, left = (height - side) // 2, (width - side) // 2
    return slice(top, top + side), slice(left, left + side)
