from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnseg import FcnsegError
from fcnseg.config import DataConfig
from fcnseg.data import FolderDataset, make_dataset
from tests.conftest import write_pair


def test_items_follow_the_data_contract(folder_dataset: Path):
    config = DataConfig(kind="folder", root=str(folder_dataset), num_classes=3)
    dataset = make_dataset(config, "train", train=False)
    image, mask = dataset[0]
    assert image.dtype == torch.float32 and image.shape == (3, 37, 53)
    assert mask.dtype == torch.int64 and mask.shape == (37, 53)
    raw = np.asarray(Image.open(folder_dataset / "train" / "masks" / "item0.png"))
    assert torch.equal(mask, torch.from_numpy(raw.astype(np.int64)))  # labels untouched
    # Normalisation: (x / 255 - mean) / std on each channel.
    pixel = np.asarray(Image.open(folder_dataset / "train" / "images" / "item0.png"))[0, 0]
    expected = (pixel / 255 - np.array(config.mean)) / np.array(config.std)
    assert image[:, 0, 0].numpy() == pytest.approx(expected, abs=1e-5)


def test_training_transform_keeps_labels_valid_and_pads_with_ignore(folder_dataset: Path):
    config = DataConfig(kind="folder", root=str(folder_dataset), num_classes=3, crop_size=(48, 64))
    dataset = make_dataset(config, "train", train=True, seed=0)
    for index in range(len(dataset)):
        image, mask = dataset[index]
        assert image.shape == (3, 48, 64) and mask.shape == (48, 64)
        values = set(torch.unique(mask).tolist())
        assert values <= {0, 1, 2, 255}
        assert 255 in values  # 37x53 padded to 48x64: the padding is ignored, never a class


def test_augmentation_is_a_function_of_seed_epoch_and_index(folder_dataset: Path):
    config = DataConfig(kind="folder", root=str(folder_dataset), num_classes=3)
    dataset = make_dataset(config, "train", train=True, seed=0)
    first = [dataset[i][0] for i in range(4)]
    again = [dataset[i][0] for i in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    dataset.set_epoch(1)
    assert not all(torch.equal(a, dataset[i][0]) for i, a in enumerate(first))


def folder(root: Path, num_classes: int) -> FolderDataset:
    return FolderDataset(
        DataConfig(kind="folder", root=str(root), num_classes=num_classes), "train"
    )


def test_missing_folder(tmp_path: Path):
    with pytest.raises(FcnsegError, match="does not exist"):
        folder(tmp_path / "nowhere", 2)


def test_image_without_mask_is_named(folder_dataset: Path):
    (folder_dataset / "train" / "masks" / "item2.png").unlink()
    with pytest.raises(FcnsegError, match=r"item2\.png has no mask"):
        folder(folder_dataset, 3)


def test_size_mismatch_names_both_sizes(folder_dataset: Path):
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(folder_dataset / "train/masks/item1.png")
    with pytest.raises(FcnsegError, match=r"item1\.png is 12x10.*is 53x37"):
        folder(folder_dataset, 3)


def test_labels_out_of_range_name_values_and_file(tmp_path: Path):
    mask = np.zeros((8, 8), np.uint8)
    mask[0, :3] = [5, 9, 255]
    write_pair(tmp_path, "train", "bad", np.zeros((8, 8, 3), np.uint8), mask)
    dataset = folder(tmp_path, 3)
    message = r"bad\.png has 2 pixels with labels in no class: 5 \(1 px\), 9 \(1 px\)"
    with pytest.raises(FcnsegError, match=message):
        dataset.check_labels()
    with pytest.raises(FcnsegError, match=message):
        dataset.load(0)


def test_empty_folder(tmp_path: Path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "masks").mkdir(parents=True)
    with pytest.raises(FcnsegError, match="holds no images"):
        folder(tmp_path, 2)


def test_corrupt_image_is_named(folder_dataset: Path):
    (folder_dataset / "train" / "images" / "item0.png").write_bytes(b"not a png")
    with pytest.raises(FcnsegError, match=r"item0\.png"):
        folder(folder_dataset, 3)
