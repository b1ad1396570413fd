"""Exports that fcnseg reads only once converted, recognised where a dataset is expected.

`fcnseg inspect` and `train` call `unconverted_export` from layout detection
(fcnseg.data.layouts): read as it is, a CVAT export passes for PASCAL VOC (its JPEGImages and
SegmentationClass), its colours are looked up in VOC's palette and its classes come out misnamed.
So such an export is refused with the command that converts it:

    cvat          labelmap.txt with SegmentationClass/ (a folder, or the zip given as the folder),
                  unless a class table (classes.txt, ...) shows the folder was set up by hand
    coco          a JSON with images, annotations and categories (at the top or in annotations/),
                  where no layout matched
    label-studio  a JSON list of tasks with data and annotations, where no layout matched

Only the first megabyte of a JSON file is read: enough to tell the tools apart.
"""

from __future__ import annotations

import shlex
import zipfile
from pathlib import Path

from fcnseg.data.masks.classes import TABLE_FILES

SNIFF_BYTES = 2**20
COCO_SECTIONS = ('"images"', '"annotations"', '"categories"')


def _head(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            return handle.read(SNIFF_BYTES).decode("utf-8", "replace").lstrip()
    except OSError:
        return ""


def looks_like_coco(path: Path) -> bool:
    head = _head(path)
    return head.startswith("{") and all(section in head for section in COCO_SECTIONS)


def looks_like_label_studio(path: Path) -> bool:
    head = _head(path)
    return head.startswith("[") and '"data"' in head and '"annotations"' in head


def json_tool(path: Path) -> str | None:
    """'coco' or 'label-studio' for a JSON file of that tool, else None."""
    if looks_like_coco(path):
        return "coco"
    return "label-studio" if looks_like_label_studio(path) else None


def _cvat_zip(path: Path) -> tuple[bool, bool]:
    """(whether the zip is a CVAT segmentation export, whether it holds the images)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False, False
    cvat = any(name.split("/")[-1] == "labelmap.txt" for name in names) and any(
        "SegmentationClass/" in name for name in names
    )
    return cvat, any("JPEGImages/" in name for name in names)


def _command(tool: str, source: Path, images: bool) -> str:
    """The convert command, writing beside the export: export.zip -> export-fcnseg."""
    folder, name = source.parent, source.name if source.is_dir() else source.stem
    if source.is_file() and folder.name == "annotations":  # COCO's usual <set>/annotations/x.json
        folder, name = folder.parent.parent, folder.parent.name
    out = shlex.quote(str(folder / f"{name}-fcnseg"))
    extra = " --images IMAGES_DIR" if images else ""
    return f"fcnseg convert {tool} {shlex.quote(str(source))}{extra} --out {out}"


TOOLS = {
    "cvat": "a CVAT 'Segmentation mask 1.1' export (labelmap.txt, SegmentationClass/)",
    "coco": "a COCO annotation file",
    "label-studio": "a Label Studio JSON export",
}


def _message(tool: str, source: Path, images: bool, root: Path | None = None) -> str:
    found = f"{root} holds {source}, " if root is not None else f"{source} is "
    where = " (IMAGES_DIR: the folder of the annotated images)" if images else ""
    return (
        f"{found}{TOOLS[tool]}, which fcnseg reads only once converted (into images, index "
        f"masks and classes.txt): run `{_command(tool, source, images)}`{where} and use that "
        "--out folder as the data folder (data.root)."
    )


def unconverted_export(root: Path, layout_found: bool) -> str | None:
    """The sentence naming the tool and the `fcnseg convert` command when `root` is an export
    (see the module doc), else None. `layout_found`: whether a layout matched `root`."""
    if root.is_file():
        cvat, with_images = _cvat_zip(root) if root.suffix.lower() == ".zip" else (False, False)
        if cvat:
            return _message("cvat", root, images=not with_images)
        tool = json_tool(root) if root.suffix.lower() == ".json" else None
        return _message(tool, root, images=tool == "label-studio") if tool else None
    if not root.is_dir():
        return None
    has_table = any((root / name).is_file() for name in TABLE_FILES)
    if (
        (root / "labelmap.txt").is_file()
        and (root / "SegmentationClass").is_dir()
        and not has_table
    ):
        return _message("cvat", root, images=not (root / "JPEGImages").is_dir())
    if layout_found:
        return None
    for path in sorted([*root.glob("*.json"), *root.glob("annotations/*.json")]):
        tool = json_tool(path)
        if tool:
            return _message(tool, path, images=tool == "label-studio", root=root)
    return None
