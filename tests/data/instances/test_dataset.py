"""InstanceDataset: the instance contract's items, augmented without inventing IDs or classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnseg.config import DataConfig
from fcnseg.data.instances.dataset import make_instance_dataset
from fcnseg.data.instances.shapes import generate_instances, write_instance_shapes_folder
from fcnseg.errors import FcnsegError
from tests.data.instances.test_coco import coco_document, write_coco

SIZE = (70, 90)
IGNORE = 255


def synthetic(**options: object) -> DataConfig:
    return DataConfig(synthetic_train=4, synthetic_val=2, synthetic_size=SIZE, **options)


def test_evaluation_items_are_the_generated_maps_normalised():
    dataset = make_instance_dataset(synthetic(), "val", train=False)
    image, target = dataset[1]
    sample = generate_instances(1000, 1, SIZE)  # val items come from seed 1000
    assert image.dtype == torch.float32 and image.shape == (3, *SIZE)
    assert target.dtype == torch.int64 and target.shape == (2, *SIZE)
    assert np.array_equal(target.numpy(), sample.target())
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = (sample.image / 255.0 - mean) / std  # (H, W, 3)
    assert np.allclose(image.permute(1, 2, 0).numpy(), expected, atol=1e-4)
    assert dataset.class_names == ["background", "circle", "rectangle", "triangle"]


@pytest.mark.parametrize("augment", ["light", "strong"])
def test_augmentation_keeps_ids_and_pads_with_background_and_ignore(augment: str):
    crop = (96, 128)  # larger than the images: padding on every item
    dataset = make_instance_dataset(synthetic(augment=augment, crop_size=crop), "train", True)
    padded_somewhere = False
    for epoch in range(2):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            image, target = dataset[index]
            assert image.shape == (3, *crop) and target.shape == (2, *crop)
            original = generate_instances(0, index, SIZE)
            ids, classes = target[0].numpy(), target[1].numpy()
            assert set(np.unique(ids)) <= set(np.unique(original.ids))  # no invented IDs
            inside = ids > 0
            # Every ID keeps its own class: nearest-neighbour on both channels, same pixels.
            assert np.array_equal(classes[inside], original.classes[ids[inside]])
            assert set(np.unique(classes[~inside])) <= {0, IGNORE}
            padded = classes == IGNORE
            assert not ids[padded].any()
            padded_somewhere |= bool(padded.any())
    assert padded_somewhere


def test_same_seed_epoch_and_index_give_the_same_item():
    config = synthetic(augment="strong", crop_size=(48, 48))
    first = make_instance_dataset(config, "train", True, seed=5)
    second = make_instance_dataset(config, "train", True, seed=5)
    for index in range(3):
        assert torch.equal(first[index][1], second[index][1])
    first.set_epoch(1)
    assert any(not torch.equal(first[i][1], second[i][1]) for i in range(4))


def test_ids_above_255_survive_augmentation(tmp_path: Path):
    for folder in ("images", "masks"):
        (tmp_path / "train" / folder).mkdir(parents=True)
    ids = np.zeros((40, 50), dtype=np.uint16)
    ids[5:20, 5:20], ids[22:35, 30:45] = 300, 65535
    Image.fromarray(np.full((40, 50, 3), 80, np.uint8)).save(tmp_path / "train/images/a.png")
    Image.fromarray(ids).save(tmp_path / "train/masks/a.png")
    config = DataConfig(kind="folder", root=str(tmp_path), augment="strong", crop_size=(32, 32))
    dataset = make_instance_dataset(config, "train", True)
    seen = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        seen |= set(dataset[0][1][0].unique().tolist())
    assert seen == {0, 300, 65535}


def test_every_kind_opens(tmp_path: Path):
    write_instance_shapes_folder(tmp_path / "shapes", {"train": 2}, SIZE)
    folder = DataConfig(kind="folder", root=str(tmp_path / "shapes"))
    assert len(make_instance_dataset(folder, "train", train=False)) == 2
    write_coco(tmp_path / "coco", coco_document())
    coco = DataConfig(kind="coco", root=str(tmp_path / "coco"))
    target = make_instance_dataset(coco, "train", train=False)[0][1]
    assert target.shape == (2, 12, 16) and int(target[0].max()) == 4
    loader = torch.utils.data.DataLoader(make_instance_dataset(synthetic(), "train", False), 2)
    images, targets = next(iter(loader))
    assert images.shape == (2, 3, *SIZE) and targets.shape == (2, 2, *SIZE)


def test_folder_layouts_other_than_folder_are_refused(tmp_path: Path):
    config = DataConfig(kind="folder", root=str(tmp_path), layout="voc")
    with pytest.raises(FcnsegError, match="instance data is read from the folder layout"):
        make_instance_dataset(config, "train", train=False)
