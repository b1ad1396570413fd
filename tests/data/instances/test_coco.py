"""COCO JSON import against pycocotools' own reading of the same file, and hand-made targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from fcnseg.config import DataConfig
from fcnseg.data.instances.coco import CocoInstances
from fcnseg.data.instances.rle import counts_to_string, encode_counts
from fcnseg.errors import FcnsegError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' numpy use

HEIGHT, WIDTH, IGNORE = 12, 16, 255


def box(top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def coco_document() -> dict:
    """Two images; categories listed out of id order; every kind of segmentation."""
    plain = box(6, 6, 10, 10)  # 16 pixels, as uncompressed RLE
    compressed = box(0, 13, 3, 16)  # 9 pixels, as a compressed string
    crowd = box(8, 0, 12, 8)  # over part of `plain`
    annotations = [
        # A large square and a smaller one over it: the smaller keeps the shared pixels.
        {
            "id": 10,
            "image_id": 1,
            "category_id": 7,
            "iscrowd": 0,
            "segmentation": [[0, 0, 6, 0, 6, 6, 0, 6]],
        },
        {
            "id": 11,
            "image_id": 1,
            "category_id": 3,
            "iscrowd": 0,
            "segmentation": [[4, 4, 8, 4, 8, 8, 4, 8]],
        },
        {
            "id": 12,
            "image_id": 1,
            "category_id": 3,
            "iscrowd": 0,
            "segmentation": {"counts": encode_counts(plain), "size": [HEIGHT, WIDTH]},
        },
        {
            "id": 13,
            "image_id": 1,
            "category_id": 7,
            "iscrowd": 0,
            "segmentation": {
                "counts": counts_to_string(encode_counts(compressed)),
                "size": [HEIGHT, WIDTH],
            },
        },
        {
            "id": 14,
            "image_id": 1,
            "category_id": 3,
            "iscrowd": 1,
            "segmentation": {"counts": encode_counts(crowd), "size": [HEIGHT, WIDTH]},
        },
        # Two parts of one object: a triangle and a square, their union.
        {
            "id": 20,
            "image_id": 2,
            "category_id": 7,
            "iscrowd": 0,
            "segmentation": [[1.5, 1.5, 9.2, 2.1, 3.3, 8.8], [12, 8, 15, 8, 15, 11, 12, 11]],
        },
    ]
    return {
        "images": [
            {"id": 1, "file_name": "one.png", "width": WIDTH, "height": HEIGHT},
            {"id": 2, "file_name": "images/two.png", "width": WIDTH, "height": HEIGHT},
        ],
        "annotations": annotations,
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
    }


def write_coco(root: Path, document: dict, split: str = "train") -> Path:
    images = root / split / "images"
    images.mkdir(parents=True, exist_ok=True)
    for entry in document["images"]:
        size = (entry["height"], entry["width"], 3)
        Image.fromarray(np.full(size, 128, np.uint8)).save(images / Path(entry["file_name"]).name)
    path = root / "annotations" / f"{split}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def open_coco(root: Path, **options: object) -> CocoInstances:
    return CocoInstances(DataConfig(kind="coco", root=str(root), **options), "train")


def test_every_annotation_decodes_as_pycocotools_reads_it(tmp_path: Path):
    path = write_coco(tmp_path, coco_document())
    reference = COCO(str(path))
    data = open_coco(tmp_path)
    for index, image in enumerate(data.coco.images):
        annotations = data.annotations(index)
        entries = [a for a in reference.imgToAnns[image.id] if not a["iscrowd"]]
        assert len(annotations.masks) == len(entries)
        for mask, entry in zip(annotations.masks, entries, strict=True):
            assert np.array_equal(mask, reference.annToMask(entry).astype(bool)), entry["id"]
        crowd = [reference.annToMask(a) for a in reference.imgToAnns[image.id] if a["iscrowd"]]
        expected_crowd = np.any(crowd, axis=0) if crowd else np.zeros((HEIGHT, WIDTH), bool)
        assert np.array_equal(annotations.crowd, expected_crowd)


def test_target_by_hand_overlap_crowd_and_classes(tmp_path: Path):
    write_coco(tmp_path, coco_document())
    data = open_coco(tmp_path)
    assert data.class_names == ["background", "cat", "dog"]  # categories by id: 3, then 7
    assert data.names == ["one", "two"]
    image, target = data.load(0)
    assert image.shape == (HEIGHT, WIDTH, 3) and target.shape == (2, HEIGHT, WIDTH)
    ids = np.zeros((HEIGHT, WIDTH), dtype=np.int64)
    ids[box(0, 0, 6, 6)] = 1  # dog, 36 pixels
    ids[box(4, 4, 8, 8)] = 2  # cat, 16 pixels: smaller, so it keeps the shared 2x2
    ids[box(6, 6, 10, 10)] = 3  # cat, 16 pixels: as large as 2 and later: keeps their 2x2
    ids[box(0, 13, 3, 16)] = 4  # dog
    classes = np.array([0, 2, 1, 1, 2])[ids]
    void = box(8, 0, 12, 8) & (ids == 0)  # the crowd, where no single annotation lies
    classes[void] = IGNORE
    assert np.array_equal(target[0], ids)
    assert np.array_equal(target[1], classes)
    assert (target[0] == 3).sum() == 16 and (target[0] == 2).sum() == 12  # 2 lost a 2x2
    assert (target[1] == IGNORE).sum() == 4 * 8 - 4  # the crowd less 3's corner in it


def test_polygon_parts_are_united(tmp_path: Path):
    write_coco(tmp_path, coco_document())
    target = open_coco(tmp_path).load_target(1)
    triangle = coco_mask.decode(coco_mask.frPyObjects([[1.5, 1.5, 9.2, 2.1, 3.3, 8.8]], 12, 16))
    expected = triangle[..., 0].astype(bool) | box(8, 12, 11, 15)
    assert np.array_equal(target[0] == 1, expected) and set(np.unique(target[0])) == {0, 1}


def test_class_names_given_must_match_the_categories(tmp_path: Path):
    write_coco(tmp_path, coco_document())
    assert open_coco(tmp_path, class_names=["background", "cat", "dog"]).class_names[2] == "dog"
    with pytest.raises(FcnsegError, match=r"categories \(by id\) \['cat', 'dog'\]"):
        open_coco(tmp_path, class_names=["background", "dog", "cat"])
    with pytest.raises(FcnsegError, match=r"set data\.num_classes: 3"):
        open_coco(tmp_path, num_classes=2)


def test_image_list_and_folder_must_agree(tmp_path: Path):
    write_coco(tmp_path, coco_document())
    (tmp_path / "train/images/one.png").rename(tmp_path / "train/images/three.png")
    with pytest.raises(FcnsegError) as caught:
        open_coco(tmp_path)
    text = str(caught.value)
    assert "1 images of the JSON have no file (one.png)" in text
    assert "1 files are in no image entry (three.png)" in text


def test_annotation_file_comes_from_the_config(tmp_path: Path):
    path = write_coco(tmp_path, coco_document())
    path.rename(tmp_path / "exported.json")
    with pytest.raises(FcnsegError, match=r"has no COCO file .*annotations/train\.json"):
        open_coco(tmp_path)
    assert len(open_coco(tmp_path, coco_annotations={"train": "exported.json"})) == 2


def bad(tmp_path: Path, change: dict) -> str:
    document = coco_document()
    document["annotations"][0].update(change)
    write_coco(tmp_path, document)
    with pytest.raises(FcnsegError) as caught:
        open_coco(tmp_path).load(0)
    return str(caught.value)


def test_bad_annotations_are_refused_with_their_id(tmp_path: Path):
    assert "annotation 10 refers to category 99" in bad(tmp_path, {"category_id": 99})
    assert "annotation 10 refers to image_id 5" in bad(tmp_path, {"image_id": 5})
    text = bad(tmp_path, {"segmentation": [0, 0, 6, 0, 6, 6]})
    assert "annotation 10 (image one.png) has a flat list" in text
    text = bad(tmp_path, {"segmentation": {"counts": [3, 4], "size": [2, 3]}})
    assert "RLE of size [2, 3] (height, width) but the image is [12, 16]" in text
    text = bad(tmp_path, {"segmentation": {"counts": [3, 4], "size": [HEIGHT, WIDTH]}})
    assert "cannot be decoded: the counts sum to 7" in text
    assert "has no mask" in bad(tmp_path, {"segmentation": None})


def test_stated_size_must_be_the_files(tmp_path: Path):
    document = coco_document()
    write_coco(tmp_path, document)
    document["images"][0]["width"] = 20
    (tmp_path / "annotations/train.json").write_text(json.dumps(document))
    with pytest.raises(FcnsegError, match=r"one.png is 16x12 .* says 20x12"):
        open_coco(tmp_path)


def test_missing_sections_are_named(tmp_path: Path):
    write_coco(tmp_path, {"images": [], "annotations": []})
    with pytest.raises(FcnsegError, match="lacks categories"):
        open_coco(tmp_path)
