"""Instance maps in the folder layout: every file kind against maps written by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from fcnseg.config import DataConfig
from fcnseg.data.instances.folder import InstanceFolder
from fcnseg.data.instances.maps import read_id_map, touching_pairs
from fcnseg.errors import FcnsegError

IGNORE = 255

# A 4x5 map by hand: instance 1 (2 pixels), 300 (3 pixels, a 16-bit ID), 7 (2 pixels).
IDS = np.array(
    [
        [0, 1, 1, 0, 0],
        [0, 0, 300, 300, 0],
        [7, 0, 300, 0, 0],
        [7, 0, 0, 0, 0],
    ],
    dtype=np.uint16,
)


def write_item(root: Path, ids: np.ndarray, name: str = "a", suffix: str = ".png") -> Path:
    """An image and its instance map in <root>/train; returns the map's path."""
    for folder in ("images", "masks"):
        (root / "train" / folder).mkdir(parents=True, exist_ok=True)
    image = np.full((*ids.shape[:2], 3), 90, dtype=np.uint8)
    Image.fromarray(image).save(root / "train" / "images" / f"{name}.png")
    path = root / "train" / "masks" / f"{name}{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, ids)
    else:
        Image.fromarray(ids).save(path)
    return path


def write_beside(root: Path, folder: str, name: str, content: np.ndarray | dict) -> Path:
    (root / "train" / folder).mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        path = root / "train" / folder / f"{name}.json"
        path.write_text(json.dumps(content))
    else:
        path = root / "train" / folder / f"{name}.png"
        Image.fromarray(content).save(path)
    return path


def load(root: Path, num_classes: int = 4) -> np.ndarray:
    config = DataConfig(kind="folder", root=str(root), num_classes=num_classes)
    image, target = InstanceFolder(config, "train").load(0)
    assert image.shape[:2] == target.shape[1:] and target.dtype == np.int64
    return target


def test_16_bit_png_keeps_every_id_and_one_class_data_is_class_1(tmp_path: Path):
    path = write_item(tmp_path, IDS)
    assert Image.open(path).mode.startswith("I")  # really stored with 16 bits
    stored = read_id_map(path)
    assert stored.dtype == np.uint16 and np.array_equal(stored, IDS)
    target = load(tmp_path)
    assert np.array_equal(target[0], IDS.astype(np.int64))
    assert np.array_equal(target[1], (IDS > 0).astype(np.int64))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32])
def test_tiff_maps_of_any_integer_type_or_whole_floats(tmp_path: Path, dtype: type):
    ids = (IDS % 250).astype(dtype) if dtype == np.uint8 else IDS.astype(dtype)
    write_item(tmp_path, ids, suffix=".tif")
    assert np.array_equal(load(tmp_path)[0], ids.astype(np.int64))


def test_8_bit_and_palette_maps(tmp_path: Path):
    ids = (IDS % 250).astype(np.uint8)
    write_item(tmp_path, ids)
    assert np.array_equal(load(tmp_path)[0], ids)
    palette = Image.fromarray(ids).convert("P")  # the index is the ID (as VOC stores objects)
    palette.save(tmp_path / "train" / "masks" / "a.png")
    assert np.array_equal(load(tmp_path)[0], np.array(palette))


def test_class_map_gives_each_instance_its_class(tmp_path: Path):
    write_item(tmp_path, IDS)
    classes = np.where(IDS == 300, 2, np.where(IDS == 7, 3, np.where(IDS == 1, 1, 0)))
    classes[0, 4] = 3  # outside every instance: not read
    write_beside(tmp_path, "classes", "a", classes.astype(np.uint8))
    target = load(tmp_path)
    expected = np.array([[0, 1, 1, 0, 0], [0, 0, 2, 2, 0], [3, 0, 2, 0, 0], [3, 0, 0, 0, 0]])
    assert np.array_equal(target[1], expected)


def test_json_class_table(tmp_path: Path):
    write_item(tmp_path, IDS)
    write_beside(tmp_path, "classes", "a", {"1": 3, "7": 1, "300": 2, "999": 1})  # extra: unused
    assert load(tmp_path)[1][1, 2] == 2 and load(tmp_path)[1][3, 0] == 1


def test_void_mask_wins_over_instances(tmp_path: Path):
    write_item(tmp_path, IDS)
    void = np.zeros(IDS.shape, dtype=np.uint8)
    void[0, 1], void[3, 4] = 255, 1  # over instance 1, and over background
    write_beside(tmp_path, "void", "a", void)
    target = load(tmp_path)
    assert target[0][0, 1] == 0 and target[1][0, 1] == IGNORE
    assert target[0][3, 4] == 0 and target[1][3, 4] == IGNORE
    assert target[0][0, 2] == 1 and target[1][0, 2] == 1  # the rest of instance 1 stays
    assert (target[1] == IGNORE).sum() == 2


def test_touching_pairs_are_4_adjacent_only(tmp_path: Path):
    ids = np.array([[1, 2, 0], [0, 0, 3], [4, 0, 3]])
    # 1-2 side by side; 2-3 only corner to corner (not 4-adjacent); 3 and 4 apart.
    assert touching_pairs(ids) == [(1, 2)]
    assert touching_pairs(np.array([[5, 5], [2, 0]])) == [(2, 5)]


def message(root: Path) -> str:
    with pytest.raises(FcnsegError) as caught:
        load(root)
    return str(caught.value)


def test_class_map_that_splits_an_instance_is_refused(tmp_path: Path):
    write_item(tmp_path, IDS)
    classes = (IDS > 0).astype(np.uint8)
    classes[2, 2] = 2  # one pixel of instance 300
    write_beside(tmp_path, "classes", "a", classes)
    text = message(tmp_path)
    assert "instance 300 covers class 1 on 2 pixels, class 2 on 1 pixels" in text


def test_colour_map_is_refused(tmp_path: Path):
    write_item(tmp_path, np.zeros((4, 5, 3), dtype=np.uint8))
    text = message(tmp_path)
    assert "mode RGB, shape 4 x 5 x 3" in text and "one channel" in text


def test_fractional_map_is_refused(tmp_path: Path):
    write_item(tmp_path, IDS.astype(np.float32) + 0.5, suffix=".tif")
    assert "20 pixels that are not whole numbers" in message(tmp_path)


def test_jpeg_map_is_refused(tmp_path: Path):
    path = write_item(tmp_path, IDS.astype(np.uint8))
    Image.fromarray(IDS.astype(np.uint8)).save(path.with_suffix(".jpg"))
    path.unlink()
    assert "is a JPEG" in message(tmp_path)


def test_image_and_map_of_different_sizes_are_refused(tmp_path: Path):
    write_item(tmp_path, IDS)
    Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8)).save(tmp_path / "train/images/a.png")
    assert "is 5x4 (width x height)" in message(tmp_path)


def test_class_map_of_another_size_is_refused(tmp_path: Path):
    write_item(tmp_path, IDS)
    write_beside(tmp_path, "classes", "a", np.ones((4, 4), dtype=np.uint8))
    assert "classes/a.png is 4x4 (width x height)" in message(tmp_path)


def test_missing_class_file_and_id_are_refused(tmp_path: Path):
    write_item(tmp_path, IDS)
    write_item(tmp_path, IDS, name="b")
    write_beside(tmp_path, "classes", "b", {"1": 1, "300": 1, "7": 1})
    assert "holds no class file for image 'a'" in message(tmp_path)
    write_beside(tmp_path, "classes", "a", {"1": 1, "300": 1})
    assert "gives no class for instance 7" in message(tmp_path)


def test_class_outside_num_classes_is_refused(tmp_path: Path):
    write_item(tmp_path, IDS)
    write_beside(tmp_path, "classes", "a", {"1": 1, "300": 4, "7": 1})
    text = message(tmp_path)
    assert "gives instance 300 the class 4; accepted: 1..3" in text


def test_bad_json_entries_are_refused(tmp_path: Path):
    write_item(tmp_path, IDS)
    write_beside(tmp_path, "classes", "a", {"one": 1})
    assert "has the entry 'one': 1" in message(tmp_path)
    write_beside(tmp_path, "classes", "a", {"1": 1.5})
    assert "has the entry '1': 1.5" in message(tmp_path)


def test_missing_map_is_refused_by_name(tmp_path: Path):
    write_item(tmp_path, IDS)
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(tmp_path / "train/images/b.png")
    assert "has no mask" in message(tmp_path) and "b.png" in message(tmp_path)
