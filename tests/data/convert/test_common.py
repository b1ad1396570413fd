"""Splits and names of converted datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcnseg.commands.convert import convert
from fcnseg.data.convert.common import assign_splits, check_names, output_names
from fcnseg.data.convert.items import Entry
from fcnseg.errors import FcnsegError
from tests.data.convert.exports import cvat_files, write_folder


def entries(names: list[str], subset: str | None = None) -> list[Entry]:
    return [Entry(name, subset, name) for name in names]


def test_every_fifth_image_by_name_validates():
    names = [f"img{i}" for i in range(10)]
    splits = assign_splits(entries(names[::-1]))  # the order of the export does not matter
    assert splits["val"] == ["img2", "img7"]  # the middle of each fifth
    assert splits["train"] == [name for name in names if name not in ("img2", "img7")]
    assert assign_splits(entries(["one"])) == {"train": ["one"], "val": []}


def test_the_tools_own_train_and_val_subsets_are_kept(tmp_path: Path):
    kept = [*entries(["a", "c"], "train"), *entries(["b"], "val"), *entries(["d"], "test")]
    assert assign_splits(kept) == {"test": ["d"], "train": ["a", "c"], "val": ["b"]}
    files = cvat_files()
    del files["ImageSets/Segmentation/default.txt"]
    files["ImageSets/Segmentation/train.txt"] = b"b\nc\n"
    files["ImageSets/Segmentation/val.txt"] = b"a\n"
    convert("cvat", str(write_folder(tmp_path / "export", files)), str(tmp_path / "out"))
    assert (tmp_path / "out" / "val.txt").read_text() == "a\n"


def test_names_stay_unique():
    assert output_names(["x/a.jpg", "y/b.png"]) == ["a", "b"]
    assert output_names(["x/a.jpg", "y/a.png"]) == ["x__a", "y__a"]
    with pytest.raises(FcnsegError, match="2 images named 'a'"):
        check_names(entries(["a", "a"]), "COCO")
