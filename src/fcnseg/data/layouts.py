"""Where a dataset keeps its images and masks: four layouts, recognised from the folder itself.

    folder  <root>/<split>/images/*   and <root>/<split>/masks/*
    lists   <root>/images/*, <root>/masks/* and <root>/<split>.txt (or <root>/splits/<split>.txt)
            naming the split's items, one per line
    voc     <root>/JPEGImages, <root>/SegmentationClass, <root>/ImageSets/Segmentation/<split>.txt
            (PASCAL VOC; data.root is the VOC2012 folder, or VOCdevkit, or the folder holding
            VOCdevkit: the one VOC* folder found there is read, and named once in the log)
    camvid  <root>/<split>/* and <root>/<split>annot/* (the SegNet tutorial's CamVid)

Detection tries them in the order voc, camvid, folder, lists; data.layout names one instead.
Images and masks are matched by file name without suffix (photo.jpg <-> photo.png).
An annotation tool's unconverted export (CVAT, COCO, Label Studio) is refused with the
`fcnseg convert` command it needs (fcnseg.data.convert.detect).
"""

from __future__ import annotations

import logging
from pathlib import Path

from fcnseg.data.images import IMAGE_SUFFIXES
from fcnseg.errors import FcnsegError
from fcnseg.registry import lookup
from fcnseg.text_files import read_text


class Layout:
    """Where one split's images and masks are, and which names belong to it."""

    name = ""
    description = ""

    def matches(self, root: Path) -> bool:
        return bool(self.splits(root))

    def describe(self, root: Path) -> str:
        """The description, with the folder actually read where it is not data.root itself."""
        return self.description

    def splits(self, root: Path) -> list[str]:
        raise NotImplementedError

    def folders(self, root: Path, split: str) -> tuple[Path, Path]:
        raise NotImplementedError

    def list_file(self, root: Path, split: str) -> Path | None:
        """The text file naming the split's items, or None when every image in the folder is."""
        return None


class FolderLayout(Layout):
    name, description = "folder", "<split>/images and <split>/masks"

    def splits(self, root: Path) -> list[str]:
        return sorted(p.name for p in _subfolders(root) if (p / "images").is_dir())

    def folders(self, root: Path, split: str) -> tuple[Path, Path]:
        return root / split / "images", root / split / "masks"


class ListsLayout(Layout):
    name, description = "lists", "images/ and masks/ with <split>.txt name lists"

    def splits(self, root: Path) -> list[str]:
        if not (root / "images").is_dir():
            return []
        texts = [p for folder in (root, root / "splits") for p in _texts(folder)]
        return sorted({p.stem for p in texts if p != root / "classes.txt"})  # a class table

    def folders(self, root: Path, split: str) -> tuple[Path, Path]:
        return root / "images", root / "masks"

    def list_file(self, root: Path, split: str) -> Path | None:
        candidates = (root / f"{split}.txt", root / "splits" / f"{split}.txt")
        return next((path for path in candidates if path.is_file()), candidates[0])


def _is_voc(folder: Path) -> bool:
    return (folder / "JPEGImages").is_dir() and (folder / "SegmentationClass").is_dir()


def find_voc_folder(root: Path) -> Path | None:
    """The PASCAL VOC folder data.root stands for: itself, or the one VOC* folder (VOC2012, ...)
    in it or in its VOCdevkit/ (as the VOC archive unpacks); None when there is none. Several
    (VOC2007 and VOC2012 side by side) are an error: which one is meant cannot be guessed."""
    if _is_voc(root):
        return root
    found = [
        folder
        for parent in (root, root / "VOCdevkit")
        for folder in sorted(parent.glob("VOC*"))
        if _is_voc(folder)
    ]
    if len(found) > 1:
        listed = ", ".join(str(folder.relative_to(root)) for folder in found)
        raise FcnsegError(
            f"{root} holds {len(found)} PASCAL VOC folders ({listed}); set data.root to the one "
            f"to read, e.g. {found[-1]}."
        )
    return found[0] if found else None


_ANNOUNCED: set[Path] = set()  # VOC folders already named in the log (once per process)


class VocLayout(Layout):
    """PASCAL VOC, in data.root or in the VOC* folder below it that `find_voc_folder` finds."""

    name, description = "voc", "PASCAL VOC (JPEGImages, SegmentationClass, ImageSets)"

    def matches(self, root: Path) -> bool:
        return find_voc_folder(root) is not None

    def base(self, root: Path) -> Path:
        """The folder holding JPEGImages: data.root, or the VOC folder found below it (said once,
        so that a run on VOC2007 meant as VOC2012 shows it). data.root itself when there is none
        (data.layout: voc named on another folder), for find_pairs to say what is missing."""
        folder = find_voc_folder(root) or root
        if folder != root and folder not in _ANNOUNCED:
            _ANNOUNCED.add(folder)
            logging.getLogger(__name__).warning(
                "data.root %s holds PASCAL VOC in %s: reading that folder.", root, folder
            )
        return folder

    def describe(self, root: Path) -> str:
        folder = self.base(root)
        return self.description + ("" if folder == root else f", in {folder}")

    def splits(self, root: Path) -> list[str]:
        return sorted(p.stem for p in _texts(self.base(root) / "ImageSets" / "Segmentation"))

    def folders(self, root: Path, split: str) -> tuple[Path, Path]:
        return self.base(root) / "JPEGImages", self.base(root) / "SegmentationClass"

    def list_file(self, root: Path, split: str) -> Path | None:
        return self.base(root) / "ImageSets" / "Segmentation" / f"{split}.txt"


class CamVidLayout(Layout):
    name, description = "camvid", "SegNet CamVid (<split> and <split>annot)"

    def splits(self, root: Path) -> list[str]:
        folders = {p.name for p in _subfolders(root)}
        return sorted(name for name in folders if f"{name}annot" in folders)

    def folders(self, root: Path, split: str) -> tuple[Path, Path]:
        return root / split, root / f"{split}annot"


LAYOUTS: dict[str, Layout] = {
    layout.name: layout for layout in (VocLayout(), CamVidLayout(), FolderLayout(), ListsLayout())
}


def _subfolders(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []


def _texts(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.txt")) if folder.is_dir() else []


def _listing(folder: Path) -> dict[str, Path]:
    """Image files of a folder by name without suffix."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return {path.stem: path for path in files}


def resolve_layout(root: Path, name: str = "auto") -> Layout:
    """data.layout by name, or the first layout the folder matches."""
    if not root.is_dir():
        _refuse_unconverted(root, layout_found=False)  # an export's zip or JSON given instead
        raise FcnsegError(f"data folder {root} does not exist; give the folder holding the data.")
    if name != "auto":
        return lookup(LAYOUTS, name, "data.layout")
    found = next((layout for layout in LAYOUTS.values() if layout.matches(root)), None)
    _refuse_unconverted(root, layout_found=found is not None)
    if found is not None:
        return found
    described = "; ".join(f"{layout.name}: {layout.description}" for layout in LAYOUTS.values())
    raise FcnsegError(f"{root} is in no layout fcnseg knows; accepted layouts are {described}.")


def _refuse_unconverted(root: Path, layout_found: bool) -> None:
    """An annotation tool's export (CVAT, COCO, Label Studio) is named with the `fcnseg convert`
    command it needs: read as it is, a CVAT export would pass for VOC with misnamed classes."""
    from fcnseg.data.convert.detect import unconverted_export  # convert builds on this module

    message = unconverted_export(root, layout_found)
    if message:
        raise FcnsegError(message)


def _split_names(list_file: Path, split: str) -> list[str]:
    if not list_file.is_file():
        raise FcnsegError(
            f"split '{split}' has no list file {list_file}; write the names of its items there, "
            "one per line."
        )
    lines = [line.strip() for line in read_text(list_file, "split list").splitlines()]
    # A name may be written with its suffix (photo.png); matching is by name without it.
    return [
        Path(line).stem if Path(line).suffix.lower() in IMAGE_SUFFIXES else line
        for line in lines
        if line
    ]


def find_pairs(root: Path, split: str, layout: Layout) -> list[tuple[Path, Path]]:
    """(image, mask) paths of one split, or an error saying what is missing and where."""
    image_dir, mask_dir = layout.folders(root, split)
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise FcnsegError(
                f"{folder} does not exist; the {layout.name} layout keeps a split's images and "
                f"masks in {image_dir} and {mask_dir} (masks named like their images)."
            )
    images, masks = _listing(image_dir), _listing(mask_dir)
    list_file = layout.list_file(root, split)
    names = sorted(images) if list_file is None else _split_names(list_file, split)
    if not names:
        where = f"{list_file} names" if list_file else f"{image_dir} holds"
        raise FcnsegError(f"{where} no images; accepted suffixes: {', '.join(IMAGE_SUFFIXES)}.")
    for kind, found, folder in (("image", images, image_dir), ("mask", masks, mask_dir)):
        missing = [name for name in names if name not in found]
        if missing:
            first = missing[0]
            more = f" ({len(missing) - 1} more have none either)" if len(missing) > 1 else ""
            problem = (
                f"image {images[first]} has no mask"
                if list_file is None
                else f"{list_file} names '{first}' but there is no {kind} of that name"
            )
            raise FcnsegError(
                f"{problem}: expected {folder}/{first}.png or another image suffix (files are "
                f"matched by name without suffix){more}."
            )
    return [(images[name], masks[name]) for name in names]


def unpaired_masks(root: Path, split: str, layout: Layout) -> list[Path]:
    """Masks of a split's folder that no image of the split uses (worth a warning)."""
    if layout.list_file(root, split) is not None:
        return []  # shared folders: other splits own the rest
    image_dir, mask_dir = layout.folders(root, split)
    images = _listing(image_dir)
    return [path for name, path in _listing(mask_dir).items() if name not in images]
