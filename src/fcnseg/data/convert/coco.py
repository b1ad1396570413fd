"""COCO JSON (CVAT's "COCO 1.0", Label Studio's "COCO", most public sets): polygons and RLE, plain
and compressed, read by the instance task's own COCO reader (fcnseg.data.instances.coco and
coco_masks, pixel for pixel as pycocotools), so a converted mask is the mask training would see.

    SRC        the JSON file, or a folder holding one (e.g. annotations/instances_default.json)
    --images   the folder of the images; by default the first that exists of the JSON's images/
               folder, the images/ folder beside its folder (as CVAT's zip unpacks: annotations/
               and images/), and the JSON's own folder

Classes: the categories sorted by id are classes 1..K, with their names; 0 is background. An
annotation whose category_id is no category, or whose image_id is no image, is an error naming
it. An image of the JSON without a file is an error; image files the JSON does not list are
left out, with a note. Semantic masks give a crowd annotation (iscrowd: 1) its category; instance
maps make it void. Overlaps: see items.py.
"""

from __future__ import annotations

from pathlib import Path

from fcnseg.data.convert.archive import ExportFiles, ImageIndex, ImageRef
from fcnseg.data.convert.common import output_names
from fcnseg.data.convert.detect import looks_like_coco
from fcnseg.data.convert.items import Entry, Export, Item, Region, item_from_regions
from fcnseg.data.instances.coco import CocoFile, check_image_sizes, read_coco
from fcnseg.data.instances.coco_masks import segmentation_mask
from fcnseg.errors import FcnsegError

TOOL = "COCO"


def find_json(source: Path) -> Path:
    """SRC itself, or the one COCO JSON of the folder SRC (at its top or in annotations/)."""
    if source.is_file() and source.suffix.lower() == ".json":
        return source
    if source.suffix.lower() == ".zip":
        raise FcnsegError(
            f"{source} is a zip archive; unpack it (unzip {source} -d DIR) and give the COCO "
            "JSON inside, e.g. fcnseg convert coco DIR/annotations/instances_default.json."
        )
    if not source.is_dir():
        raise FcnsegError(f"{source} does not exist; give the COCO JSON file or its folder.")
    found = [
        p
        for p in sorted([*source.glob("*.json"), *source.glob("annotations/*.json")])
        if looks_like_coco(p)
    ]
    if len(found) != 1:
        listed = ", ".join(str(p) for p in found) or "none"
        raise FcnsegError(
            f"{source} holds {len(found)} COCO JSON files ({listed}); give the one to convert."
        )
    return found[0]


def image_folder(json_path: Path, images: Path | None) -> Path:
    if images is not None:
        if not images.is_dir():
            raise FcnsegError(f"--images {images} is not a folder; give the folder of the images.")
        return images
    folder = json_path.parent  # the first of these that exists, searched alone
    candidates = [folder / "images", folder.parent / "images", folder]
    return next(path for path in candidates if path.is_dir())


def open_export(source: Path, images: Path | None, task: str, classes: list[str] | None) -> Export:
    if classes is not None:
        raise FcnsegError("--classes is for Label Studio exports; COCO's categories name them.")
    json_path = find_json(source)
    coco = read_coco(json_path)  # unknown category or image ids are refused here
    files = ExportFiles(image_folder(json_path, images))
    index = ImageIndex([(files, "")])
    found = [index.find(image.file_name) for image in coco.images]
    _check_found(coco, found, files.path)
    refs = [ref for ref in found if ref is not None]
    check_image_sizes(coco, [ref.files.path / ref.name for ref in refs])
    names = ["background", *coco.category_names]
    entries = [Entry(n, None, i) for i, n in enumerate(output_names([r.name for r in refs]))]
    notes = _unlisted(index, refs, json_path)

    def read(entry: Entry) -> Item:
        image = coco.images[entry.key]
        regions = [
            Region(
                segmentation_mask(annotation, image, coco.path),
                coco.class_of_category[annotation["category_id"]],
                f"annotation {annotation.get('id')}",
                bool(annotation.get("iscrowd", 0)),
            )
            for annotation in coco.annotations[image.id]
        ]
        shape = (image.height, image.width)
        return item_from_regions(refs[entry.key], regions, shape, task, names)

    return Export(TOOL, json_path, names, None, entries, read, notes, [files])


def _unlisted(index: ImageIndex, refs: list[ImageRef], json_path: Path) -> list[str]:
    """A note on image files beside the JSON that none of its entries names."""
    listed = set(refs)
    unlisted = [ref.describe() for ref in index.images() if ref not in listed]
    if not unlisted:
        return []
    return [
        f"{len(unlisted)} image files are in no image entry of {json_path} and were left out, "
        f"e.g. {unlisted[0]}"
    ]


def _check_found(coco: CocoFile, found: list[ImageRef | None], folder: Path) -> None:
    missing = [image.file_name for image, ref in zip(coco.images, found, strict=True) if not ref]
    if not missing:
        return
    shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
    raise FcnsegError(
        f"{len(missing)} of the {len(coco.images)} images of {coco.path} have no file ({shown}); "
        f"looked in {folder} by file_name and by its last part: give --images DIR, the folder "
        "that holds them."
    )
