"""The four layouts, detected from the folder and pairing images with masks by name."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnseg import FcnsegError
from fcnseg.config import DataConfig
from fcnseg.data import FolderDataset
from fcnseg.data.layouts import find_pairs, resolve_layout
from fcnseg.data.masks.classes import VOC_TABLE
from fcnseg.data.masks.labels import palette_for


def picture(path: Path, array: np.ndarray, palette: list[int] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array, mode="P" if palette else None)
    if palette:
        image.putpalette(palette)
    image.save(path)


RGB = np.zeros((3, 4, 3), np.uint8)
MASK = np.array([[0, 1, 1, 0]] * 3, np.uint8)


def test_folder_layout(tmp_path: Path):
    for split in ("train", "val"):
        picture(tmp_path / split / "images" / "a.jpg", RGB)
        picture(tmp_path / split / "masks" / "a.png", MASK)
    layout = resolve_layout(tmp_path)
    assert layout.name == "folder" and layout.splits(tmp_path) == ["train", "val"]
    assert [(i.name, m.name) for i, m in find_pairs(tmp_path, "val", layout)] == [
        ("a.jpg", "a.png")
    ]


def test_split_lists_layout_reads_names_with_or_without_suffix(tmp_path: Path):
    for name in ("a", "b", "c"):
        picture(tmp_path / "images" / f"{name}.png", RGB)
        picture(tmp_path / "masks" / f"{name}.png", MASK)
    (tmp_path / "train.txt").write_text("a\nb.png\n\n")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "val.txt").write_text("c\n")
    layout = resolve_layout(tmp_path)
    assert layout.name == "lists" and layout.splits(tmp_path) == ["train", "val"]
    assert [i.stem for i, _ in find_pairs(tmp_path, "train", layout)] == ["a", "b"]
    assert [i.stem for i, _ in find_pairs(tmp_path, "val", layout)] == ["c"]
    (tmp_path / "train.txt").write_text("a\nzzz\n")
    with pytest.raises(FcnsegError, match=r"train\.txt names 'zzz' but there is no image"):
        find_pairs(tmp_path, "train", layout)


def test_voc_layout_with_its_palette_names_and_255_borders(tmp_path: Path):
    palette = [c for entry in VOC_TABLE.entries for c in entry.colour] + [224, 224, 192] * 235
    mask = np.array([[0, 15, 255], [12, 255, 0]], np.uint8)  # person, dog, borders
    picture(tmp_path / "JPEGImages" / "2007_000032.jpg", np.zeros((2, 3, 3), np.uint8))
    picture(tmp_path / "SegmentationClass" / "2007_000032.png", mask, palette)
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n")
    dataset = FolderDataset(DataConfig(kind="folder", root=str(tmp_path), num_classes=21), "train")
    assert dataset.layout.name == "voc" and dataset.mask_format.codec.name == "palette"
    assert dataset.load(0)[1].tolist() == [[0, 15, 255], [12, 255, 0]]
    assert dataset.class_names[15] == "person" and dataset.class_names[12] == "dog"
    assert dataset.palette[15].tolist() == [192, 128, 128]  # VOC's colour for person


def test_camvid_layout_uses_segnet_classes_and_ignores_void(tmp_path: Path):
    for split in ("train", "val"):
        picture(tmp_path / split / "0001TP_006690.png", np.zeros((2, 2, 3), np.uint8))
        picture(
            tmp_path / f"{split}annot" / "0001TP_006690.png", np.array([[0, 11], [10, 3]], np.uint8)
        )
    config = DataConfig(kind="folder", root=str(tmp_path), num_classes=11)
    dataset = FolderDataset(config, "val")
    assert dataset.layout.name == "camvid"
    assert dataset.load(0)[1].tolist() == [[0, 255], [10, 3]]
    assert dataset.class_names[0] == "Sky" and dataset.class_names[10] == "Bicyclist"


def test_layout_can_be_named_and_unknown_folders_list_the_layouts(tmp_path: Path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(FcnsegError, match=r"in no layout fcnseg knows; accepted layouts are voc"):
        resolve_layout(tmp_path)
    with pytest.raises(FcnsegError, match=r"unknown data.layout 'foldr'. Did you mean 'folder'"):
        resolve_layout(tmp_path, "foldr")
    assert resolve_layout(tmp_path, "camvid").name == "camvid"


def voc_folder(folder: Path, masks: dict[str, np.ndarray]) -> Path:
    """A PASCAL VOC year folder: palette masks in VOC's colours, one name per split."""
    palette = [c for entry in VOC_TABLE.entries for c in entry.colour] + [224, 224, 192] * 235
    for split, mask in masks.items():
        picture(folder / "JPEGImages" / f"{split}_1.jpg", np.zeros((*mask.shape, 3), np.uint8))
        picture(folder / "SegmentationClass" / f"{split}_1.png", mask, palette)
        (folder / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (folder / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(f"{split}_1\n")
    return folder


VOC_MASK = np.array([[0, 1, 255], [2, 255, 0]], np.uint8)  # background, 1, 2 and borders


@pytest.mark.parametrize("given", [".", "VOCdevkit", "VOCdevkit/VOC2012"])
def test_voc_is_found_below_data_root_and_the_folder_named(
    tmp_path: Path, given: str, caplog: pytest.LogCaptureFixture
):
    voc = voc_folder(tmp_path / "VOCdevkit" / "VOC2012", {"train": VOC_MASK, "val": VOC_MASK})
    root = tmp_path / given
    layout = resolve_layout(root)
    dataset = FolderDataset(DataConfig(kind="folder", root=str(root), num_classes=21), "val")
    assert layout.name == "voc" and layout.splits(root) == ["train", "val"]
    assert dataset.pairs == [
        (voc / "JPEGImages" / "val_1.jpg", voc / "SegmentationClass" / "val_1.png")
    ]
    assert dataset.class_names[:3] == ["background", "aeroplane", "bicycle"]
    named = f"data.root {root} holds PASCAL VOC in {voc}: reading that folder."
    if root == voc:
        assert layout.describe(root) == layout.description and named not in caplog.messages
    else:
        assert layout.describe(root).endswith(f", in {voc}") and caplog.messages == [named]


def test_several_voc_folders_are_refused_with_their_names(tmp_path: Path):
    for year in ("VOC2007", "VOC2012"):
        voc_folder(tmp_path / "VOCdevkit" / year, {"train": VOC_MASK})
    with pytest.raises(FcnsegError, match=r"holds 2 PASCAL VOC folders \(VOCdevkit/VOC2007, "):
        resolve_layout(tmp_path)
    assert resolve_layout(tmp_path / "VOCdevkit" / "VOC2007").name == "voc"


def test_voc_class_names_name_its_palette_indices(tmp_path: Path):
    voc = voc_folder(tmp_path / "VOC2012", {"train": VOC_MASK})
    config = DataConfig(
        kind="folder", root=str(tmp_path), num_classes=3, class_names=["background", "cat", "dog"]
    )
    dataset = FolderDataset(config, "train")
    assert dataset.class_names == ["background", "cat", "dog"]
    assert dataset.palette[:3].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]  # VOC's 0, 1, 2
    assert dataset.load(0)[1].tolist() == [[0, 1, 255], [2, 255, 0]]
    assert palette_for(config)[2].tolist() == [0, 128, 0]  # predict's colours, reading no mask
    mask = VOC_MASK.copy()
    mask[0, 0] = 15  # a person: no class of the three
    voc_folder(voc, {"train": mask})
    with pytest.raises(FcnsegError, match=r"labels in no class: 15 \(1 px\); accepted: 0-2"):
        dataset.load(0)
    wrong = DataConfig(kind="folder", root=str(tmp_path), num_classes=4, class_names=["a", "b"])
    with pytest.raises(FcnsegError, match=r"data.class_names, in VOC's palette lists 2 classes"):
        FolderDataset(wrong, "train")


@pytest.mark.parametrize("table_in", ["root", "voc"])
def test_a_class_table_beside_data_root_or_in_the_voc_folder_names_the_classes(
    tmp_path: Path, table_in: str
):
    voc = voc_folder(tmp_path / "VOCdevkit" / "VOC2012", {"train": VOC_MASK})
    (tmp_path if table_in == "root" else voc).joinpath("classes.txt").write_text("bg\ncat\ndog\n")
    dataset = FolderDataset(DataConfig(kind="folder", root=str(tmp_path), num_classes=3), "train")
    assert dataset.class_names == ["bg", "cat", "dog"] and dataset.load(0)[1][0, 1] == 1
