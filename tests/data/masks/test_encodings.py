"""Masks in every encoding, written by hand, decoded to exactly the labels they stand for."""

import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from fcnseg import FcnsegError
from fcnseg.config import DataConfig
from fcnseg.data import FolderDataset

CLASSES_TXT = "0 Sky 128,128,128\n1 Road 128,64,128\n2 Car 64,0,128\n3 void(ignore) 0,0,0\n"
SKY, ROAD, CAR, VOID = (128, 128, 128), (128, 64, 128), (64, 0, 128), (0, 0, 0)


def write_dataset(root: Path, masks: list[np.ndarray | Image.Image], suffix: str = ".png") -> None:
    """One train split of black images beside the given masks (numpy arrays or PIL images)."""
    for folder in ("images", "masks"):
        (root / "train" / folder).mkdir(parents=True, exist_ok=True)
    for index, mask in enumerate(masks):
        picture = mask if isinstance(mask, Image.Image) else Image.fromarray(mask)
        height, width = picture.size[1], picture.size[0]
        Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(
            root / "train" / "images" / f"m{index}.png"
        )
        picture.save(root / "train" / "masks" / f"m{index}{suffix}")


def open_train(root: Path, **options) -> FolderDataset:
    return FolderDataset(DataConfig(kind="folder", root=str(root), **options), "train")


def test_index_png_8_bit(tmp_path: Path):
    labels = np.array([[0, 1, 2], [2, 255, 1]], np.uint8)
    write_dataset(tmp_path, [labels])
    dataset = open_train(tmp_path, num_classes=3)
    assert dataset.mask_format.codec.description.startswith("index masks (8-bit, mode L)")
    assert dataset.load(0)[1].tolist() == [[0, 1, 2], [2, 255, 1]]
    assert dataset.load(0)[1].dtype == np.int64


def test_index_png_16_bit_keeps_values_above_255(tmp_path: Path):
    labels = np.array([[0, 299], [150, 1]], np.uint16)
    write_dataset(tmp_path, [labels])
    assert Image.open(tmp_path / "train/masks/m0.png").mode == "I;16"
    dataset = open_train(tmp_path, num_classes=300, ignore_index=1000)
    assert "16-bit" in dataset.mask_format.codec.description
    assert dataset.load(0)[1].tolist() == [[0, 299], [150, 1]]


def test_index_tiff_8_and_16_bit(tmp_path: Path):
    write_dataset(tmp_path, [np.array([[0, 2], [1, 2]], np.uint16)], suffix=".tif")
    assert open_train(tmp_path, num_classes=3).load(0)[1].tolist() == [[0, 2], [1, 2]]
    eight = tmp_path / "eight"
    write_dataset(eight, [np.array([[1, 0], [0, 1]], np.uint8)], suffix=".tiff")
    assert open_train(eight, num_classes=2).load(0)[1].tolist() == [[1, 0], [0, 1]]


def test_float_tiff_mask_must_hold_whole_numbers(tmp_path: Path):
    write_dataset(tmp_path, [np.array([[0.0, 1.0], [2.0, 0.5]], np.float32)], suffix=".tif")
    with pytest.raises(FcnsegError, match=r"m0\.tif has 1 pixels the index encoding cannot"):
        open_train(tmp_path, num_classes=3).load(0)


def test_binary_0_255_becomes_0_1(tmp_path: Path):
    write_dataset(tmp_path, [np.array([[0, 255], [255, 0]], np.uint8)])
    dataset = open_train(tmp_path, num_classes=2)
    assert dataset.mask_format.codec.name == "binary"
    assert dataset.load(0)[1].tolist() == [[0, 1], [1, 0]]


def test_binary_grey_edges_are_reported_with_file_and_count(tmp_path: Path):
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 255
    mask[1:3, 3] = 128  # two anti-aliased edge pixels
    write_dataset(tmp_path, [mask])
    with pytest.raises(FcnsegError, match=r"m0\.png has 2 pixels .* 128 \(2 px\).*anti-aliased"):
        open_train(tmp_path, num_classes=2).load(0)


def test_bilevel_mask_reads_as_0_and_1(tmp_path: Path):
    write_dataset(tmp_path, [Image.fromarray(np.array([[0, 255], [0, 0]], np.uint8)).convert("1")])
    assert open_train(tmp_path, num_classes=2).load(0)[1].tolist() == [[0, 1], [0, 0]]


def test_palette_png_indices_are_classes_and_colour_the_pictures(tmp_path: Path):
    mask = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    mask.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * 759)
    write_dataset(tmp_path, [mask])
    dataset = open_train(tmp_path, num_classes=3)
    assert dataset.mask_format.codec.name == "palette"
    assert dataset.load(0)[1].tolist() == [[0, 1], [2, 1]]
    assert dataset.palette[:3].tolist() == [[10, 20, 30], [40, 50, 60], [70, 80, 90]]


def test_rgb_masks_with_classes_txt_and_a_void_row(tmp_path: Path):
    mask = np.array([[SKY, ROAD], [CAR, VOID]], np.uint8)
    write_dataset(tmp_path, [mask])
    (tmp_path / "classes.txt").write_text(CLASSES_TXT)
    dataset = open_train(tmp_path, num_classes=3)
    assert dataset.mask_format.codec.name == "rgb"
    assert dataset.load(0)[1].tolist() == [[0, 1], [2, 255]]  # void -> ignore
    assert dataset.class_names == ["Sky", "Road", "Car"]
    assert dataset.palette[:3].tolist() == [list(SKY), list(ROAD), list(CAR)]


def test_rgba_colour_masks_drop_alpha(tmp_path: Path):
    mask = np.array([[[*SKY, 255], [*CAR, 0]]], np.uint8)
    write_dataset(tmp_path, [mask])
    (tmp_path / "classes.txt").write_text(CLASSES_TXT)
    assert open_train(tmp_path, num_classes=3).load(0)[1].tolist() == [[0, 2]]


def test_colour_in_no_table_is_reported_with_count(tmp_path: Path):
    mask = np.array([[SKY, (1, 2, 3)], [(1, 2, 3), (9, 9, 9)]], np.uint8)
    write_dataset(tmp_path, [mask])
    (tmp_path / "classes.txt").write_text(CLASSES_TXT)
    message = (
        r"m0\.png has 3 pixels the rgb encoding cannot decode: \(1, 2, 3\) \(2 px\), \(9, 9, 9"
    )
    with pytest.raises(FcnsegError, match=message):
        open_train(tmp_path, num_classes=3).load(0)


def test_anti_aliased_colour_edge_is_named_as_such(tmp_path: Path):
    blend = tuple((np.array(SKY) + np.array(CAR)) // 2)  # half way between Sky and Car
    mask = np.array([[SKY, blend, CAR]], np.uint8)
    write_dataset(tmp_path, [mask])
    (tmp_path / "classes.txt").write_text(CLASSES_TXT)
    with pytest.raises(FcnsegError, match=r"1 pixels .*1 of these 1 colours are blends"):
        open_train(tmp_path, num_classes=3).load(0)


def test_greyscale_saved_as_rgb_is_read_as_index(tmp_path: Path):
    labels = np.array([[0, 1], [2, 0]], np.uint8)
    write_dataset(tmp_path, [np.repeat(labels[..., None], 3, axis=-1)])
    dataset = open_train(tmp_path, num_classes=3)
    assert "R = G = B" in dataset.mask_format.codec.description
    assert dataset.load(0)[1].tolist() == labels.tolist()


def test_colour_masks_without_a_table_say_how_to_give_one(tmp_path: Path):
    write_dataset(tmp_path, [np.array([[SKY, CAR]], np.uint8)])
    with pytest.raises(FcnsegError, match=r"RGB colour images .* no colour table; add classes.txt"):
        open_train(tmp_path, num_classes=3)


def test_inline_colours_and_yaml_and_csv_tables_decode_alike(tmp_path: Path):
    mask = np.array([[SKY, ROAD, CAR]], np.uint8)
    expected = [[0, 1, 2]]
    inline = tmp_path / "inline"
    write_dataset(inline, [mask])
    colours = [list(SKY), list(ROAD), list(CAR)]
    assert open_train(inline, num_classes=3, colors=colours).load(0)[1].tolist() == expected
    as_yaml = tmp_path / "yaml"
    write_dataset(as_yaml, [mask])
    rows = "".join(f"- {{name: c{i}, color: {c}}}\n" for i, c in enumerate(colours))
    (as_yaml / "my_classes.yaml").write_text(rows)
    dataset = open_train(as_yaml, num_classes=3, classes="my_classes.yaml")
    assert dataset.load(0)[1].tolist() == expected and dataset.class_names == ["c0", "c1", "c2"]
    as_csv = tmp_path / "csv"
    write_dataset(as_csv, [mask])
    (as_csv / "class_dict.csv").write_text(
        "name,r,g,b\nsky,128,128,128\nroad,128,64,128\ncar,64,0,128\n"
    )
    assert open_train(as_csv, num_classes=3).load(0)[1].tolist() == expected


def test_mask_encoding_override_beats_detection(tmp_path: Path):
    # 0/255 with two classes is detected as binary; as index, 255 stays the ignore label.
    write_dataset(tmp_path, [np.array([[0, 255]], np.uint8)])
    dataset = open_train(tmp_path, num_classes=2, mask_encoding="index")
    assert "set by data.mask_encoding" in dataset.mask_format.codec.description
    assert dataset.load(0)[1].tolist() == [[0, 255]]
    with pytest.raises(FcnsegError, match=r"data.mask_encoding is 'indx'; accepted: auto, index"):
        open_train(tmp_path, num_classes=2, mask_encoding="indx")


def test_sixteen_bit_colour_mask_tiff_is_read_faithfully(tmp_path: Path):
    # Not a mask anyone should write, but such a file must not be decoded into wrong labels.
    write_dataset(tmp_path, [np.zeros((2, 2), np.uint8)])
    wide = np.full((2, 2, 3), 1000, np.uint16)
    cv2.imwrite(str(tmp_path / "train/masks/m0.png"), wide)
    with pytest.raises(FcnsegError, match=r"m0\.png"):
        open_train(tmp_path, num_classes=2).load(0)


def test_palette_indices_past_a_short_palette_are_undecodable_not_a_crash(tmp_path: Path):
    # Found by the reader fuzzer: a damaged palette file read through a colour table raised
    # IndexError (palette[index]) and then ValueError (indices taken for colours).
    write_dataset(tmp_path, [np.zeros((2, 2), np.uint8)])

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 2, 2, 8, 3, 0, 0, 0)  # 2 x 2, 8-bit palette indices
    rows = zlib.compress(bytes([0, 0, 1, 0, 9, 9]))  # each row: filter 0, then its indices
    (tmp_path / "train" / "masks" / "m0.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"PLTE", bytes([*SKY, *ROAD]))
        + chunk(b"IDAT", rows)
        + chunk(b"IEND", b"")
    )  # two colours in the palette; index 9 has none
    (tmp_path / "classes.txt").write_text(CLASSES_TXT)
    dataset = open_train(tmp_path, num_classes=3, mask_encoding="rgb")
    with pytest.raises(FcnsegError, match=r"2 pixels the rgb encoding cannot decode: 9 \(2 px\)"):
        dataset.load(0)


def test_unique_rows_agrees_with_numpy_and_is_fast_on_large_masks():
    from fcnseg.data.masks.encodings import unique_rows

    colours = np.random.default_rng(0).integers(0, 256, size=(640_000, 3)).astype(np.uint8)
    colours[::3] = (1, 2, 3)
    start = time.perf_counter()
    rows, counts = unique_rows(colours)
    assert time.perf_counter() - start < 0.5  # np.unique(axis=0): 1.3 s on this machine
    expected_rows, expected_counts = np.unique(colours, axis=0, return_counts=True)
    assert np.array_equal(rows, expected_rows) and np.array_equal(counts, expected_counts)
    values, value_counts = unique_rows(np.array([5, 3, 5]))
    assert values.tolist() == [3, 5] and value_counts.tolist() == [1, 2]
