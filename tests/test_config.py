from pathlib import Path

import pytest

from fcnseg import FcnsegError
from fcnseg.config import Config, load_config, save_config


def test_yaml_and_overrides_give_typed_values(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("name: x\ntrain: {epochs: 3, lr: 1}\ndata: {synthetic_size: [50, 70]}\n")
    config = load_config(path, ["train.lr=0.5", "model.options.base_width=8"])
    assert config.name == "x" and config.train.epochs == 3
    assert config.train.lr == 0.5 and isinstance(config.train.lr, float)
    assert config.data.synthetic_size == (50, 70)
    assert config.model.options == {"base_width": 8}


def test_unknown_key_names_the_nearest(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("train: {epoch: 3}\n")
    with pytest.raises(FcnsegError, match=r"unknown config key 'train.epoch'.*'epochs'"):
        load_config(path)
    with pytest.raises(FcnsegError, match=r"'trian'.*'train'"):
        load_config(None, ["trian.lr=1"])


def test_wrong_type_is_an_error():
    with pytest.raises(FcnsegError, match=r"train\.epochs.*expects int"):
        load_config(None, ["train.epochs=many"])


def test_loss_terms_are_dataclasses():
    config = load_config(None, ["loss.terms=[{name: cross_entropy, weight: 2}]"])
    assert config.loss.terms[0].weight == 2.0


def test_saved_config_reads_back_identically(tmp_path: Path):
    config = load_config(None, ["train.epochs=7", "data.crop_size=[64, 96]"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert load_config(None) == Config()
