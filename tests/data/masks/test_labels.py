"""Class tables and the label map from raw mask values to training labels."""

import time
from pathlib import Path

import numpy as np
import pytest

from fcnseg import FcnsegError
from fcnseg.data.masks.classes import read_class_table
from fcnseg.data.masks.labels import LabelMap, MaskFormat, build_label_map


def test_camvid_style_classes_txt(tmp_path: Path):
    path = tmp_path / "classes.txt"
    path.write_text(
        "# comment\n0 Sky 128,128,128\n1 Side walk 60,40,222\n\n11 Unlabelled(void,ignore) 0,0,0\n"
    )
    table = read_class_table(path)
    assert [(e.value, e.name, e.colour) for e in table.entries] == [
        (0, "Sky", (128, 128, 128)),
        (1, "Side walk", (60, 40, 222)),
        (11, "Unlabelled(void,ignore)", (0, 0, 0)),
    ]
    assert table.void_values() == [11] and table.source == "classes.txt"


def test_names_only_classes_txt_numbers_rows(tmp_path: Path):
    path = tmp_path / "classes.txt"
    path.write_text("background\nvoid\ncell\n")
    table = read_class_table(path)
    assert [(e.value, e.name) for e in table.entries] == [
        (0, "background"),
        (1, "void"),
        (2, "cell"),
    ]
    assert table.void_values() == [1] and not table.has_colours


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 a 1,2,300\n", r"line 1: colour '1,2,300' is not three numbers 0-255"),
        ("0 a 1,2,3\n0 b 4,5,6\n", "lists index 0 twice"),
        ("0 a 1,2,3\n1 b 1,2,3\n", r"gives colour \(1, 2, 3\) to two classes"),
    ],
)
def test_bad_tables_say_where(tmp_path: Path, text: str, message: str):
    path = tmp_path / "classes.txt"
    path.write_text(text)
    with pytest.raises(FcnsegError, match=message):
        read_class_table(path)


def test_yaml_table_with_explicit_ignore(tmp_path: Path):
    path = tmp_path / "classes.yaml"
    rows = ["{name: bg, color: [0, 0, 0]}", "{name: edge, ignore: true}", "{name: cell, index: 5}"]
    path.write_text("classes:\n" + "".join(f"  - {row}\n" for row in rows))
    table = read_class_table(path)
    assert [(e.value, e.ignore) for e in table.entries] == [(0, False), (1, True), (5, False)]


def test_label_map_drops_ignored_values_and_numbers_the_rest():
    # Masks whose void is 0: raw 1..3 become classes 0..2, 0 and 255 are ignored.
    label_map = LabelMap(kept=[1, 2, 3], ignored=[0], ignore_index=255)
    raw = np.array([[0, 1, 2], [3, 255, 7]])
    assert label_map.apply(raw).tolist() == [[255, 0, 1], [2, 255, -1]]
    assert label_map.apply(np.array([-1, 4000])).tolist() == [-1, -1]
    assert label_map.accepted() == "1-3 (classes) and 0, 255 (ignored)"


def test_build_label_map_without_table_skips_ignored_values():
    mask_format = MaskFormat(codec=None, table=None, ignored=[0], ignored_by="data.ignore_labels")
    assert build_label_map(mask_format, 3, 255).kept == [1, 2, 3]


def test_table_and_num_classes_must_agree(tmp_path: Path):
    path = tmp_path / "classes.txt"
    path.write_text("0 a\n1 b\n2 void\n")
    mask_format = MaskFormat(None, read_class_table(path), [2], "classes.txt void rows")
    assert build_label_map(mask_format, 2, 255).kept == [0, 1]
    with pytest.raises(
        FcnsegError, match=r"lists 3 classes of which 1 are ignored, leaving 2 .* is 4"
    ):
        build_label_map(mask_format, 4, 255)


def test_inferred_class_count_skips_ignored_values_and_stops_at_16_bits():
    from fcnseg.data.masks.encodings import IndexCodec
    from fcnseg.data.masks.labels import infer_num_classes

    mask_format = MaskFormat(IndexCodec("index"), None, [11], "data.ignore_labels")
    # 0..300 less the ignored 11 and 255: 299 classes (a loop over range(301) said the same).
    assert infer_num_classes(mask_format, np.array([0, 1, 11, 255, 300]), 255) == 299
    assert infer_num_classes(mask_format, np.array([], np.int64), 255) == 1
    # Found by the reader fuzzer: a 32-bit mask holding 196,611,000 made the doctor loop over
    # 196 million values and allocate a label map of 1.5 GB.
    start = time.perf_counter()
    with pytest.raises(FcnsegError, match=r"value 196,611,000: .* 196,611,001 classes; accepted"):
        infer_num_classes(mask_format, np.array([0, 196_611_000]), 255)
    assert time.perf_counter() - start < 0.1
