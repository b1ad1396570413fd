"""CVAT 'Segmentation mask 1.1' exports (folder and zip) into fcnseg's layouts, pixel for pixel."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnseg.commands.convert import convert
from fcnseg.data.convert.cvat import class_rows, read_labelmap
from fcnseg.errors import FcnsegError
from tests.data.convert.exports import (
    CVAT_COLOURS,
    OBJECTS,
    class_mask,
    cvat_files,
    id_map,
    png_bytes,
    read_png,
    write_folder,
    write_images,
    write_zip,
)


def check_semantic(out: Path, export: dict[str, bytes]) -> None:
    for name in OBJECTS:
        assert (read_png(out / "masks" / f"{name}.png") == class_mask(name)).all(), name
        assert (out / "images" / f"{name}.png").read_bytes() == export[f"JPEGImages/{name}.png"]
    assert (out / "train.txt").read_text() == "a\nc\n"  # every fifth by name: b of three
    assert (out / "val.txt").read_text() == "b\n"
    lines = (out / "classes.txt").read_text().splitlines()[1:]
    assert lines == ["0 background 0,0,0", "1 cat 250,50,83", "2 dog 51,221,255"]


@pytest.mark.parametrize("packed", ["folder", "zip"])
def test_semantic_masks_from_folder_and_zip(tmp_path: Path, packed: str):
    files = cvat_files()
    source = (
        write_folder(tmp_path / "export", files)
        if packed == "folder"
        else write_zip(tmp_path / "export.zip", files)
    )
    text, ready = convert("cvat", str(source), str(tmp_path / "out"))
    check_semantic(tmp_path / "out", files)
    assert ready and "ready to train (1 warning)" in text  # dog never occurs in val
    assert "split 'classes'" not in text  # classes.txt is the class table, not a split list
    assert "layout: lists" in text and "num_classes: 3" in text
    assert 'class_names: ["background", "cat", "dog"]' in text


def test_instance_maps_and_class_tables(tmp_path: Path):
    source = write_zip(tmp_path / "export.zip", cvat_files())
    text, ready = convert("cvat", str(source), str(tmp_path / "out"), task="instance")
    for name, split in (("a", "train"), ("b", "val"), ("c", "train")):
        folder = tmp_path / "out" / split
        assert (read_png(folder / "masks" / f"{name}.png") == id_map(name)).all(), name
        table = json.loads((folder / "classes" / f"{name}.json").read_text())
        assert table == {str(i): label for i, (_, label) in enumerate(OBJECTS[name], start=1)}
    assert ready and "task: instance" in text and "val: 1 images, 2 instances" in text


def test_images_from_another_folder_and_a_missing_one(tmp_path: Path):
    source = write_folder(tmp_path / "export", cvat_files(with_images=False))
    with pytest.raises(FcnsegError, match=r"3 of the 3 images .* missing .*give --images DIR"):
        convert("cvat", str(source), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # refused before anything was written
    images = write_images(tmp_path / "photos", ["a.png", "b.png"])
    with pytest.raises(FcnsegError, match=r"1 of the 3 images .*\('c'\)"):
        convert("cvat", str(source), str(tmp_path / "out"), images=str(images))
    write_images(images, ["a.png", "b.png", "c.png"])
    convert("cvat", str(source), str(tmp_path / "out"), images=str(images))
    assert (read_png(tmp_path / "out" / "masks" / "c.png") == class_mask("c")).all()


def test_colour_in_no_label_is_named(tmp_path: Path):
    files = cvat_files()
    colours = np.zeros((8, 10, 3), np.uint8)
    colours[0, :3] = (250, 50, 84)  # one off cat's colour
    files["SegmentationClass/b.png"] = png_bytes(colours)
    with pytest.raises(FcnsegError, match=r"3 pixels .*no label .*\(250, 50, 84\) \(3 px\)"):
        convert("cvat", str(write_folder(tmp_path / "export", files)), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # the partial output was removed


def test_labelmap_background_and_order():
    labels = read_labelmap(
        "# label:color_rgb:parts:actions\nsky:0,0,255::\nbackground:0,128,0::\n", "x"
    )
    assert labels == [("sky", (0, 0, 255)), ("background", (0, 128, 0))]
    assert class_rows(labels) == (["background", "sky"], [(0, 128, 0), (0, 0, 255)], [1, 0])
    # no background label: black pixels are the added background, the labels follow in order
    assert class_rows([("car", (1, 2, 3))]) == (
        ["background", "car"],
        [(0, 0, 0), (1, 2, 3)],
        [1],
    )
    with pytest.raises(FcnsegError, match="name:r,g,b:parts:actions"):
        read_labelmap("cat:250,50::\n", "labelmap.txt")
    assert CVAT_COLOURS[0] == (0, 0, 0)


def test_out_inside_the_export_is_refused(tmp_path: Path):
    source = write_folder(tmp_path / "export", cvat_files())
    with pytest.raises(FcnsegError, match=r"inside .*only reads"):
        convert("cvat", str(source), str(source / "converted"))


@pytest.mark.parametrize("mode", ["P", "L"])
def test_palette_and_one_channel_class_masks(tmp_path: Path, mode: str):
    """CVAT's masks may have one channel: a palette of the labelmap colours, or the row."""
    files = cvat_files()
    image = Image.fromarray(class_mask("b"))  # the value is the labelmap row here
    if mode == "P":
        image.putpalette([c for label in range(3) for c in CVAT_COLOURS[label]])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    files["SegmentationClass/b.png"] = buffer.getvalue()
    convert("cvat", str(write_folder(tmp_path / "export", files)), str(tmp_path / "out"))
    assert (read_png(tmp_path / "out" / "masks" / "b.png") == class_mask("b")).all()
