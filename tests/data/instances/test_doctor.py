"""The instance doctor's numbers on small sets whose every statistic is counted by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fcnseg.config import DataConfig
from fcnseg.data.instances.doctor import inspect_instances
from tests.data.instances.test_coco import coco_document, write_coco


def write(root: Path, name: str, ids: np.ndarray | None, size: tuple[int, int]) -> None:
    for folder in ("images", "masks"):
        (root / "train" / folder).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(root / "train/images" / f"{name}.png")
    if ids is not None:
        Image.fromarray(ids.astype(np.uint16)).save(root / "train/masks" / f"{name}.png")


def test_folder_statistics_by_hand(tmp_path: Path):
    a = np.zeros((40, 40), dtype=np.uint16)
    a[0:30, 0:37] = 1  # 1110 pixels: medium (>= 32^2)
    a[30:32, 0:5] = 2  # 10 pixels, right below 1: touching
    a[39, 39] = 5  # one pixel; IDs 3 and 4 are skipped
    write(tmp_path, "a", a, (40, 40))
    write(tmp_path, "b", np.zeros((10, 10)), (10, 10))  # empty
    write(tmp_path, "c", None, (10, 10))  # no map
    write(tmp_path, "d", np.ones((100, 100)), (100, 100))  # 10000 pixels: large (>= 96^2)
    statistics = inspect_instances(DataConfig(kind="folder", root=str(tmp_path)), "train")
    assert statistics.images == 4 and statistics.without_map == ["c"]
    assert statistics.instances == [3, 0, 1] and statistics.per_image == (0, 1.0, 3)
    assert sorted(statistics.areas) == [1, 10, 1110, 10000]
    assert statistics.size_counts == {"small": 2, "medium": 1, "large": 1}
    assert statistics.touching == [("a", 1, 2)]
    assert statistics.skipped_ids == [("a", [3, 4])]
    assert statistics.empty_images == ["b"] and statistics.one_pixel == [("a", 5)]
    assert statistics.class_counts == {1: 4} and statistics.problems == []


def test_coco_overlaps_vanished_annotations_and_bad_items(tmp_path: Path):
    document = coco_document()
    empty = {"id": 15, "image_id": 1, "category_id": 3, "iscrowd": 0, "segmentation": []}
    broken = {"id": 21, "image_id": 2, "category_id": 3, "segmentation": {"counts": [1]}}
    broken["segmentation"]["size"] = [12, 16]
    document["annotations"] += [empty, broken]
    write_coco(tmp_path, document)
    statistics = inspect_instances(DataConfig(kind="coco", root=str(tmp_path)), "train")
    # Image one: 1 (6x6) and 2 (4x4) share a 2x2, 2 and 3 (4x4) share a 2x2; 5 is empty.
    assert statistics.overlaps == [("one", 1, 2, 4), ("one", 2, 3, 4)]
    assert statistics.skipped_ids == [("one", [5])]
    assert statistics.instances == [4] and statistics.class_counts == {2: 2, 1: 2}
    assert ("one", 1, 2) in statistics.touching and ("one", 2, 3) in statistics.touching
    assert len(statistics.problems) == 1 and statistics.problems[0][0] == "two"
    assert "annotation 21" in statistics.problems[0][1]


def test_a_split_that_cannot_open_is_a_problem_not_a_crash(tmp_path: Path):
    statistics = inspect_instances(DataConfig(kind="coco", root=str(tmp_path)), "val")
    assert statistics.images == 0 and statistics.per_image is None
    assert "has no COCO file" in statistics.problems[0][1]


def test_generated_data_has_touching_pairs_and_contiguous_ids():
    config = DataConfig(synthetic_train=6, synthetic_size=(60, 80))
    statistics = inspect_instances(config, "train")
    assert statistics.images == 6 and statistics.touching and statistics.skipped_ids == []
    assert sum(statistics.class_counts.values()) == len(statistics.areas)
