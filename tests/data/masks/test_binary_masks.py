"""Masks of a single-output binary model (data.num_classes: 1): labels 0, 1 and the ignore label."""

from pathlib import Path

import numpy as np
import pytest

from fcnseg import FcnsegError
from fcnseg.data.masks.classes import read_class_table
from fcnseg.data.masks.labels import MaskFormat, build_label_map
from tests.data.masks.test_encodings import open_train, write_dataset


def test_0_255_masks_read_as_background_and_foreground(tmp_path: Path):
    write_dataset(tmp_path, [np.array([[0, 255], [255, 0]], np.uint8)])
    dataset = open_train(tmp_path, num_classes=1)
    assert dataset.mask_format.codec.name == "binary"
    assert dataset.load(0)[1].tolist() == [[0, 1], [1, 0]]
    assert dataset.class_names == ["background", "foreground"]


def test_0_1_masks_keep_255_as_the_ignore_label(tmp_path: Path):
    write_dataset(tmp_path, [np.array([[0, 1, 255], [1, 0, 0]], np.uint8)])
    dataset = open_train(tmp_path, num_classes=1)
    assert dataset.load(0)[1].tolist() == [[0, 1, 255], [1, 0, 0]]


def test_0_255_masks_keep_another_ignore_value(tmp_path: Path):
    mask = np.zeros((10, 10), np.uint8)
    mask[:, 5:] = 255
    mask[0, 0] = 128  # a "don't care" pixel, listed in data.ignore_labels
    write_dataset(tmp_path, [mask])
    labels = open_train(tmp_path, num_classes=1, ignore_labels=[128]).load(0)[1]
    expected = np.where(mask == 255, 1, 0)
    expected[0, 0] = 255
    assert labels.tolist() == expected.tolist()


def test_a_two_row_class_table_names_a_single_output_model_classes(tmp_path: Path):
    path = tmp_path / "classes.txt"
    path.write_text("0 road\n1 crack\n2 void\n")
    mask_format = MaskFormat(None, read_class_table(path), [2], "classes.txt void rows")
    assert build_label_map(mask_format, 1, 255).kept == [0, 1]
    path.write_text("0 road\n1 crack\n2 pothole\n")
    mask_format = MaskFormat(None, read_class_table(path), [], "")
    message = r"leaving 3 to learn, but data.num_classes is 1 \(a single-output model learns 2"
    with pytest.raises(FcnsegError, match=message):
        build_label_map(mask_format, 1, 255)
