"""Instance data on disk in the folder layout (maps.py says what each file holds):

    <root>/<split>/images/<name>.png|jpg|tif...   the pictures
    <root>/<split>/masks/<name>.png|tif           instance IDs, 0 = background
    <root>/<split>/classes/<name>.png or .json    optional: the class of each instance
    <root>/<split>/void/<name>.png                optional: pixels neither learned nor scored

A split either has a classes folder, and then a class file for every image, or none, and then
every instance is class 1. Void masks are per image: an image without one has no void.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fcnseg.config import DataConfig
from fcnseg.data.folder import _check_sizes
from fcnseg.data.images import IMAGE_SUFFIXES, read_image
from fcnseg.data.instances.maps import (
    build_target,
    check_same_size,
    classes_from_map,
    read_class_table,
    read_id_map,
    read_void,
)
from fcnseg.data.layouts import LAYOUTS, find_pairs
from fcnseg.errors import FcnsegError


def class_names_for(config: DataConfig, num_classes: int) -> list[str]:
    """data.class_names when given, else "background" and a generic name per class."""
    if config.class_names is not None:
        return list(config.class_names)
    if num_classes == 2:
        return ["background", "object"]
    return ["background", *(f"class {index}" for index in range(1, num_classes))]


def find_beside(folder: Path, name: str, suffixes: tuple[str, ...]) -> list[Path]:
    """The files of `folder` called `name` with one of `suffixes` (any case)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{name}.*") if p.suffix.lower() in suffixes)


class InstanceFolder:
    """One split on disk: `load(index)` -> (image uint8 (H, W, C), target int64 (2, H, W))."""

    def __init__(
        self, config: DataConfig, split: str, pairs: list[tuple[Path, Path]] | None = None
    ) -> None:
        if config.root is None:
            raise FcnsegError("data.kind is 'folder' but data.root is not set; give the folder.")
        if config.layout not in ("auto", "folder"):
            raise FcnsegError(
                f"data.layout is '{config.layout}', but instance data is read from the folder "
                "layout only (<root>/<split>/images, masks, classes, void); set data.layout: "
                "folder or auto."
            )
        self.config, self.root, self.split = config, Path(config.root), split
        if pairs is None:  # the doctor passes the pairs it found, to report what is missing
            pairs = find_pairs(self.root, split, LAYOUTS["folder"])
            _check_sizes(pairs)  # headers only: a mismatch stops the run in its first second
        self.pairs = pairs
        self.names = [image.stem for image, _ in self.pairs]
        self.class_folder = self.root / split / "classes"
        self.void_folder = self.root / split / "void"
        self.multi_class = self.class_folder.is_dir()
        self.num_classes = config.num_classes if self.multi_class else 2
        self.class_names = class_names_for(config, self.num_classes)

    def __len__(self) -> int:
        return len(self.pairs)

    def read_ids(self, index: int) -> np.ndarray:
        """The stored instance map of item `index` (its own dtype, IDs as written)."""
        return read_id_map(self.pairs[index][1])

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, map_path = self.pairs[index]
        config = self.config
        image = read_image(
            image_path,
            config.image_mode,
            config.image_alpha,
            config.image_bit_depth,
            config.image_scaling,
        )
        target = self.load_target(index)  # (2, H, W)
        check_same_size(image, target[0], image_path, map_path)
        return image, target

    def load_target(self, index: int) -> np.ndarray:
        """(2, H, W) int64 target of item `index`, from its map, classes and void mask."""
        map_path = self.pairs[index][1]
        ids = self.read_ids(index)
        classes = self.read_classes(index, ids)
        void = None
        void_files = find_beside(self.void_folder, self.names[index], IMAGE_SUFFIXES)
        if void_files:
            void = read_void(void_files[0])
            check_same_size(ids, void, map_path, void_files[0])
        return build_target(
            ids, classes, void, self.config.ignore_index, self.num_classes, map_path
        )

    def read_classes(self, index: int, ids: np.ndarray) -> dict[int, int] | None:
        """{ID: class} from the item's class map or table; None for one-class data."""
        if not self.multi_class:
            return None
        name = self.names[index]
        found = find_beside(self.class_folder, name, (*IMAGE_SUFFIXES, ".json"))
        if len(found) != 1:
            problem = "no class file" if not found else f"{len(found)} class files"
            raise FcnsegError(
                f"{self.class_folder} holds {problem} for image '{name}'; give exactly one: "
                f'{name}.png (a class map) or {name}.json (an object {{"<id>": class}}).'
            )
        path = found[0]
        if path.suffix.lower() == ".json":
            return read_class_table(path)
        class_map = read_id_map(path, "class map")
        check_same_size(ids, class_map, self.pairs[index][1], path)
        return classes_from_map(ids, class_map, path)
