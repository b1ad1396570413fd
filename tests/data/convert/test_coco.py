"""COCO JSON into fcnseg's layouts: polygons and both RLE kinds, checked against hand-made masks
and against pycocotools' own decoding; overlaps, unknown categories and missing images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fcnseg.commands.convert import convert
from fcnseg.errors import FcnsegError
from tests.data.convert.exports import (
    CAT,
    HEIGHT,
    OBJECTS,
    WIDTH,
    class_mask,
    id_map,
    read_png,
    rectangle,
    write_images,
    write_json,
)

mask_api = pytest.importorskip("pycocotools.mask", reason="pycocotools (the dev extra) is absent")


def polygon(region: np.ndarray) -> list[list[float]]:
    """A rectangle's outline in COCO's pixel-corner coordinates."""
    rows, columns = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    top, bottom, left, right = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
    return [[float(v) for v in (left, top, right, top, right, bottom, left, bottom)]]


def counts(region: np.ndarray) -> list[int]:
    """Uncompressed RLE, written from COCO's definition: runs over the column-major pixels,
    starting with a run of zeros."""
    flat = region.T.ravel()
    edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return [0, *runs] if flat[0] else runs


def compressed(region: np.ndarray) -> dict:
    encoded = mask_api.encode(np.asfortranarray(region.astype(np.uint8)))
    return {"size": [HEIGHT, WIDTH], "counts": encoded["counts"].decode("ascii")}


def coco_export(root: Path) -> Path:
    """a: polygon + plain RLE; b: compressed RLE + polygon; c: polygon. Categories out of order."""
    kinds = {"a": ["polygon", "plain"], "b": ["compressed", "polygon"], "c": ["polygon"]}
    images, annotations = [], []
    for image_id, name in enumerate(OBJECTS, start=1):
        images.append({"id": image_id, "file_name": f"images/{name}.png", "height": 8, "width": 10})
        for (region, label), kind in zip(OBJECTS[name], kinds[name], strict=True):
            segmentation = {
                "polygon": polygon(region),
                "plain": {"size": [HEIGHT, WIDTH], "counts": counts(region)},
                "compressed": compressed(region),
            }[kind]
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": label}
                | {"segmentation": segmentation, "iscrowd": 0}
            )
    categories = [{"id": 2, "name": "dog"}, {"id": 1, "name": "cat"}]  # sorted by id: cat first
    write_images(root / "images", [f"{name}.png" for name in OBJECTS])
    data = {"images": images, "annotations": annotations, "categories": categories}
    return write_json(root / "annotations" / "instances_default.json", data)


def test_semantic_masks_pixel_for_pixel(tmp_path: Path):
    source = coco_export(tmp_path / "export")
    text, ready = convert("coco", str(source), str(tmp_path / "out"))
    for name in OBJECTS:
        assert (read_png(tmp_path / "out" / "masks" / f"{name}.png") == class_mask(name)).all()
    assert ready and 'class_names: ["background", "cat", "dog"]' in text
    assert "--images" not in text  # found in images/ beside annotations/ without being told


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' own, under numpy 2
def test_both_rle_kinds_decode_as_pycocotools(tmp_path: Path):
    rng = np.random.default_rng(3)
    shapes = rng.random((HEIGHT, WIDTH)) < 0.5
    first, second = shapes & (np.arange(WIDTH) < 5), shapes & (np.arange(WIDTH) >= 5)
    plain = {"size": [HEIGHT, WIDTH], "counts": counts(first)}
    string = compressed(second)
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": plain},
        {"id": 2, "image_id": 1, "category_id": 2, "segmentation": string},
    ]
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": HEIGHT, "width": WIDTH}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    write_images(tmp_path / "export" / "images", ["a.png"])
    source = write_json(tmp_path / "export" / "coco.json", data)
    convert("coco", str(source), str(tmp_path / "out"))
    reference = np.zeros((HEIGHT, WIDTH), np.uint8)
    reference[mask_api.decode(mask_api.frPyObjects(plain, HEIGHT, WIDTH)) > 0] = 1
    reference[mask_api.decode(string | {"counts": string["counts"].encode()}) > 0] = 2
    assert (read_png(tmp_path / "out" / "masks" / "a.png") == reference).all()


def overlap_export(root: Path, labels: tuple[int, int]) -> Path:
    big, small = rectangle(0, 6, 0, 8), rectangle(2, 4, 2, 5)  # 48 and 6 pixels, 6 shared
    annotations = [
        {"id": 10 + i, "image_id": 1, "category_id": label, "segmentation": polygon(region)}
        for i, (region, label) in enumerate([(small, labels[0]), (big, labels[1])])
    ]
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": HEIGHT, "width": WIDTH}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    write_images(root, ["a.png"])
    return write_json(root / "coco.json", data)


def test_overlap_smaller_keeps_the_pixels_and_is_reported(tmp_path: Path):
    source = overlap_export(tmp_path / "export", labels=(2, 1))  # small dog drawn before big cat
    text, _ = convert("coco", str(source), str(tmp_path / "out"))
    expected = rectangle(0, 6, 0, 8).astype(np.uint8) * CAT
    expected[2:4, 2:5] = 2
    assert (read_png(tmp_path / "out" / "masks" / "a.png") == expected).all()
    assert (
        "annotation 10 (dog) and annotation 11 (cat) overlap on 6 pixels, given to annotation 10"
        in text
    )
    assert "the smaller one keeps the shared pixels" in text
    notes = json.loads((tmp_path / "out" / "convert.json").read_text())["notes"]
    assert len(notes) == 1 and "given to annotation 10" in notes[0]


def test_instances_with_a_crowd_as_void(tmp_path: Path):
    source = coco_export(tmp_path / "export")
    data = json.loads(source.read_text())
    crowd = rectangle(6, 8, 0, 4)
    data["annotations"].append(
        {"id": 99, "image_id": 3, "category_id": 1, "segmentation": polygon(crowd), "iscrowd": 1}
    )
    source.write_text(json.dumps(data))
    convert("coco", str(source), str(tmp_path / "out"), task="instance")
    train = tmp_path / "out" / "train"
    assert (read_png(train / "masks" / "a.png") == id_map("a")).all()
    assert json.loads((train / "classes" / "a.json").read_text()) == {"1": 1, "2": 2}
    assert (read_png(train / "void" / "c.png") == crowd * 255).all()
    assert (read_png(tmp_path / "out" / "val" / "masks" / "b.png") == id_map("b")).all()


def test_unknown_category_missing_image_and_unlisted_file(tmp_path: Path):
    source = coco_export(tmp_path / "export")
    data = json.loads(source.read_text())
    data["annotations"][0]["category_id"] = 9
    source.write_text(json.dumps(data))
    with pytest.raises(FcnsegError, match="annotation 1 refers to category 9"):
        convert("coco", str(source), str(tmp_path / "out"))
    data["annotations"][0]["category_id"] = 1
    source.write_text(json.dumps(data))
    (tmp_path / "export" / "images" / "b.png").rename(tmp_path / "export" / "images" / "z.png")
    with pytest.raises(FcnsegError, match=r"1 of the 3 images .* have no file \(images/b.png\)"):
        convert("coco", str(source), str(tmp_path / "out"))
    write_images(tmp_path / "export" / "images", ["a.png", "b.png", "c.png"])
    text, _ = convert("coco", str(source), str(tmp_path / "out"))
    assert "1 image files are in no image entry" in text and "z.png" in text
