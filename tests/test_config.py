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


# --- values checked when the config is loaded, not minutes later at first use ---------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.schedule=cosin", "accepted: poly, cosine, constant. Did you mean 'cosine'?"),
        ("train.optimizer=adam", "accepted: adamw, sgd"),
        ("data.layout=pascal", "accepted: auto, folder, lists, voc, camvid"),
        ("data.augment=heavy", "accepted: none, light, dihedral, strong"),
        ("data.kind=folders", "Did you mean 'folder'?"),
        ("data.mask_encoding=colour", "accepted: auto, index, binary, palette, rgb"),
        ("data.image_mode=RGBA", "accepted: RGB, L"),
        ("train.precision=fp8", "accepted: fp32, bf16, fp16"),
        ("data.synthetic_train=0", "'data.synthetic_train' is 0; accepted: a number >= 1"),
        ("data.batch_size=0", "'data.batch_size' is 0"),
        ("train.lr=.nan", "'train.lr' is nan"),
        ("train.warmup_fraction=1.0", "from 0 up to (not including) 1"),
        ("data.inference_scale=0", "'data.inference_scale' is 0.0"),
        ("data.train_scale=-2", "'data.train_scale' is -2.0; accepted: a number > 0"),
        ("train.val_images=0", "'train.val_images' is 0; accepted: a number >= 1"),
        ("data.crop_size=[0, 64]", "'data.crop_size' is (0, 64)"),
        ("data.ignore_index=3", "data.ignore_index is 3, which is one of the 4 classes"),
        ("data.ignore_index=1", "data.ignore_index is 1"),
    ],
)
def test_bad_values_are_refused_at_load_time(override: str, message: str):
    with pytest.raises(FcnsegError) as error:
        load_config(None, [override])
    assert message in str(error.value)


def test_an_ignore_index_outside_the_classes_is_fine():
    assert load_config(None, ["data.ignore_index=4"]).data.ignore_index == 4
    assert load_config(None, ["data.ignore_index=-1"]).data.ignore_index == -1


def test_the_configs_choices_are_the_registries_keys():
    """config.py cannot import the registries (it is the lowest layer), so this pins them
    together: a new layout, preset, schedule or precision must be added in both places."""
    from typing import get_args, get_type_hints

    from fcnseg.config import DataConfig, TrainConfig
    from fcnseg.data.layouts import LAYOUTS
    from fcnseg.data.masks.encodings import ENCODINGS
    from fcnseg.data.transforms import AUGMENTATIONS
    from fcnseg.training.optim import SCHEDULES
    from fcnseg.training.trainer import AUTOCAST_TYPES

    data, train = get_type_hints(DataConfig), get_type_hints(TrainConfig)
    assert set(get_args(data["layout"])) == {"auto", *LAYOUTS}
    assert set(get_args(data["mask_encoding"])) == set(ENCODINGS)
    assert set(get_args(data["augment"])) == set(AUGMENTATIONS)
    assert set(get_args(train["schedule"])) == set(SCHEDULES)
    assert set(get_args(train["precision"])) == set(AUTOCAST_TYPES)


# --- inference.crf: the dense CRF's settings (fcnseg.models.crf) ----------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("inference.crf.window=4", "'window' (config key inference.crf.window"),
        ("inference.crf.iterations=0", "config key inference.crf.iterations"),
        ("inference.crf.appearance_colour_sigma=0", "is 0.0; accepted: a number > 0"),
        ("inference.crf.smoothness_weight=.inf", "config key inference.crf.smoothness_weight"),
        ("inference.crf.dilation=true", "'inference.crf.dilation' expects int"),
        (
            "inference.crf.windw=5",
            "unknown config key 'inference.crf.windw'. Did you mean 'window'",
        ),
        ("inference.crf=5", "'inference.crf.' must be a mapping"),
    ],
)
def test_bad_crf_settings_are_refused_at_load_time(override: str, message: str):
    with pytest.raises(FcnsegError) as error:
        load_config(None, [override])
    assert message in str(error.value)


def test_crf_settings_load_and_read_back(tmp_path: Path):
    from fcnseg.config import CRFParameters

    assert load_config(None).inference.crf is None  # no CRF unless asked for
    config = load_config(None, ["inference.crf={appearance_weight: 5}", "inference.crf.window=7"])
    assert config.inference.crf == CRFParameters(appearance_weight=5.0, window=7)
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
