"""A run that cannot make progress stops at once with a sentence, instead of looping for ever:
no training images, fewer images than one batch (the last incomplete batch is dropped), and an
empty validation split."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcnseg.cli import main
from fcnseg.config import load_config
from fcnseg.data import make_dataset, make_loader
from fcnseg.errors import FcnsegError
from fcnseg.training.preflight import check_progress_possible
from tests.conftest import write_pair


def loaders(config):
    train = make_dataset(config.data, config.data.train_split, train=True)
    val = make_dataset(config.data, config.data.val_split, train=False)
    batch = config.data.batch_size
    return make_loader(train, batch, train=True), make_loader(val, batch, train=False)


def test_fewer_images_than_a_batch_is_refused_with_the_largest_batch_that_works():
    config = load_config(None, ["data.synthetic_train=3", "data.batch_size=4"])
    with pytest.raises(FcnsegError, match=r"3 image\(s\).*data.batch_size to at most 3"):
        check_progress_possible(*loaders(config), config)


def test_enough_images_for_one_batch_pass():
    config = load_config(None, ["data.synthetic_train=4", "data.batch_size=4"])
    check_progress_possible(*loaders(config), config)


def test_an_empty_split_stops_training_within_seconds(tmp_path: Path, capsys):
    import numpy as np

    data = tmp_path / "data"
    image, mask = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
    write_pair(data, "train", "a", image, mask)
    write_pair(data, "train", "b", image, mask)
    (data / "val" / "images").mkdir(parents=True)
    (data / "val" / "masks").mkdir(parents=True)
    status = main(
        [
            "train",
            "demo",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
            "--set",
            "data.kind=folder",
            "--set",
            f"data.root={data}",
            "--set",
            "data.num_classes=2",
            "--set",
            "data.batch_size=2",
            "--set",
            "train.epochs=1000000",
        ]
    )
    assert status == 2
    assert "val" in capsys.readouterr().err


def test_training_on_the_validation_split_is_warned_about(tmp_path: Path, capsys):
    status = main(
        [
            "train",
            "demo",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
            "--set",
            "data.synthetic_train=4",
            "--set",
            "data.synthetic_val=4",
            "--set",
            "data.batch_size=4",
            "--set",
            "data.val_split=train",
            "--set",
            "train.epochs=1",
            "--set",
            "model.options.base_width=4",
        ]
    )
    assert status == 0
    assert (
        "warning: the validation split is the training split ('train')" in capsys.readouterr().out
    )
