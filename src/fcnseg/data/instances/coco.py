"""COCO instance annotations (what CVAT, Label Studio and most public sets export).

    data.kind: coco
    data.root: the dataset's folder; each split's images in <root>/<split>/images
    data.coco_annotations: {train: annotations/train.json, ...} (relative to data.root unless
        absolute); a split not named there reads <root>/annotations/<split>.json

An image entry's `file_name` is looked up relative to the split's image folder, or else by its
last part (exports often prefix a folder of their own, such as Label Studio's "images/"). The JSON
and the folder must hold the same images: both directions are checked when the split is opened.

Classes: the categories sorted by ID become classes 1..C, with their names (0 is background).
Instance IDs: an image's non-crowd annotations in file order are IDs 1..n. Where annotations
overlap, the smaller one keeps the pixels (ties: the later one), since a small object drawn over a
large one is usually in front of it; the doctor counts such overlaps. Crowd annotations
(iscrowd: 1, one outline around many objects) become void where no single annotation lies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fcnseg.config import DataConfig
from fcnseg.data.images import IMAGE_SUFFIXES, open_image, read_image
from fcnseg.data.instances.coco_masks import ImageAnnotations, image_annotations, paint_target
from fcnseg.data.instances.maps import check_same_size
from fcnseg.errors import FcnsegError


@dataclass(frozen=True)
class CocoImage:
    id: int
    file_name: str
    height: int
    width: int


@dataclass
class CocoFile:
    """A COCO JSON, checked: images, annotations by image, and the class of each category."""

    path: Path
    images: list[CocoImage]
    annotations: dict[int, list[dict[str, Any]]]  # image id -> its annotations, in file order
    class_of_category: dict[int, int]  # category id -> class 1..C
    category_names: list[str]  # names of classes 1..C


def read_coco(path: Path) -> CocoFile:
    """Read and check a COCO JSON; every problem names the entry it is in."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise FcnsegError(f"cannot read the COCO file {path}: {error}") from None
    sections = ("images", "annotations", "categories")
    missing = [key for key in sections if not isinstance(data, dict) or key not in data]
    if missing:
        raise FcnsegError(
            f"COCO file {path} lacks {', '.join(missing) or 'its sections'}; a COCO instance "
            "file is an object with the lists images, annotations and categories."
        )
    images = [_image_entry(entry, path) for entry in data["images"]]
    known = {image.id for image in images}
    if len(known) != len(images):
        raise FcnsegError(f"COCO file {path} lists an image id twice; every id must be unique.")
    categories = sorted(data["categories"], key=lambda entry: _field(entry, "id", path, int))
    class_of_category = {entry["id"]: index + 1 for index, entry in enumerate(categories)}
    if len(class_of_category) != len(categories):
        raise FcnsegError(f"COCO file {path} lists a category id twice; ids must be unique.")
    annotations: dict[int, list[dict[str, Any]]] = {image.id: [] for image in images}
    for entry in data["annotations"]:
        image_id = _field(entry, "image_id", path, int)
        category = _field(entry, "category_id", path, int)
        if image_id not in known or category not in class_of_category:
            unknown = f"image_id {image_id}" if image_id not in known else f"category {category}"
            raise FcnsegError(
                f"COCO file {path}: annotation {entry.get('id')} refers to {unknown}, which the "
                "file does not list; fix or remove the annotation."
            )
        annotations[image_id].append(entry)
    names = [str(_field(entry, "name", path, str)) for entry in categories]
    return CocoFile(path, images, annotations, class_of_category, names)


def _field(entry: Any, key: str, path: Path, kind: type) -> Any:
    if not isinstance(entry, dict) or not isinstance(entry.get(key), kind):
        raise FcnsegError(
            f"COCO file {path}: entry {str(entry)[:80]} has no {kind.__name__} '{key}'; COCO "
            "images need id, file_name, width, height; annotations image_id, category_id, "
            "segmentation; categories id and name."
        )
    return entry[key]


def _image_entry(entry: Any, path: Path) -> CocoImage:
    return CocoImage(
        _field(entry, "id", path, int),
        str(_field(entry, "file_name", path, str)).replace("\\", "/"),
        _field(entry, "height", path, int),
        _field(entry, "width", path, int),
    )


def match_image_files(coco: CocoFile, folder: Path) -> list[Path]:
    """The file of each image entry, or an error naming the entries without a file and the files
    without an entry."""
    if not folder.is_dir():
        raise FcnsegError(f"{folder} does not exist; it should hold the images of {coco.path}.")
    files = {
        path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if path.suffix.lower() in IMAGE_SUFFIXES
    }
    by_last_part = {Path(name).name: path for name, path in files.items()}
    found = [
        files.get(image.file_name) or by_last_part.get(Path(image.file_name).name)
        for image in coco.images
    ]
    missing = [image.file_name for image, path in zip(coco.images, found, strict=True) if not path]
    extra = sorted(set(files.values()) - set(found))
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"{len(missing)} images of the JSON have no file ({_few(missing)})")
        if extra:
            names = [path.relative_to(folder).as_posix() for path in extra]
            problems.append(f"{len(extra)} files are in no image entry ({_few(names)})")
        raise FcnsegError(
            f"{coco.path} and {folder} disagree: {'; '.join(problems)}. file_name is read "
            "relative to that folder (or by its last part); put the split's images there and "
            "nothing else, or point data.coco_annotations at the JSON of this split."
        )
    return [path for path in found if path is not None]


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def check_image_sizes(coco: CocoFile, files: list[Path]) -> None:
    """Each file's size (header only) must be the width and height its entry states."""
    for image, path in zip(coco.images, files, strict=True):
        with open_image(path) as opened:  # the header only, checked (fcnseg.data.decoding)
            width, height = opened.size
        if (width, height) != (image.width, image.height):
            raise FcnsegError(
                f"image {path} is {width}x{height} (width x height) but {coco.path} says "
                f"{image.width}x{image.height} for it; the annotations were drawn on an image of "
                "another size: export them again for these files."
            )


def annotation_file(config: DataConfig, split: str) -> Path:
    """The COCO JSON of a split: data.coco_annotations[split], else annotations/<split>.json."""
    root = Path(str(config.root))
    named = (config.coco_annotations or {}).get(split)
    if named is not None and not isinstance(named, str):
        raise FcnsegError(
            f"data.coco_annotations.{split} is {named!r}; give the path of the split's COCO JSON."
        )
    path = Path(named) if named else Path("annotations") / f"{split}.json"
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        listed = ", ".join(sorted(config.coco_annotations or {})) or "none"
        raise FcnsegError(
            f"split '{split}' has no COCO file {path}; set data.coco_annotations: {{{split}: "
            f"<path of its JSON>}} (splits given now: {listed}) or put it there."
        )
    return path


class CocoInstances:
    """One split of COCO data: `load(index)` -> (image uint8 (H, W, C), target int64 (2, H, W))."""

    def __init__(self, config: DataConfig, split: str) -> None:
        if config.root is None:
            raise FcnsegError("data.kind is 'coco' but data.root is not set; give the folder.")
        self.config = config
        self.coco = read_coco(annotation_file(config, split))
        self.files = match_image_files(self.coco, Path(config.root) / split / "images")
        check_image_sizes(self.coco, self.files)
        self.names = [path.stem for path in self.files]
        self.num_classes = len(self.coco.category_names) + 1
        self.class_names = ["background", *self.coco.category_names]
        self._check_classes(config)

    def _check_classes(self, config: DataConfig) -> None:
        """The categories must fit the model's classes and agree with data.class_names."""
        if self.num_classes > config.num_classes:
            raise FcnsegError(
                f"{self.coco.path} has {self.num_classes - 1} categories, so classes 0..."
                f"{self.num_classes - 1} with background, but data.num_classes is "
                f"{config.num_classes}; set data.num_classes: {self.num_classes}."
            )
        given = config.class_names
        if given is not None and given[: self.num_classes] != self.class_names:
            raise FcnsegError(
                f"data.class_names is {given} but {self.coco.path} has the categories (by id) "
                f"{self.class_names[1:]}; give ['background', *those] or leave class_names out."
            )
        self.class_names = list(given) if given else self.class_names

    def __len__(self) -> int:
        return len(self.files)

    def annotations(self, index: int) -> ImageAnnotations:
        return image_annotations(self.coco, index)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        config = self.config
        image = read_image(
            self.files[index],
            config.image_mode,
            config.image_alpha,
            config.image_bit_depth,
            config.image_scaling,
        )
        target = self.load_target(index)  # (2, H, W)
        check_same_size(image, target[0], self.files[index], self.coco.path)
        return image, target

    def load_target(self, index: int) -> np.ndarray:
        """(2, H, W) int64 target of item `index`, painted from its annotations."""
        return paint_target(self.annotations(index), self.config.ignore_index)
