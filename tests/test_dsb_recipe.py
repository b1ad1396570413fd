"""The packaged DSB 2018 nuclei recipes (dsb_instancefcn, dsb_fcis) and benchmarks/dsb.py's
image types.

The recipes' training step reads the real nuclei in ../shared/data/dsb2018_nuclei and is skipped,
with the reason, where that folder is absent (it is not part of fcnseg).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from fcnseg.checkpoint import ModelSpec
from fcnseg.commands import resolve_config
from fcnseg.config import Config, load_config
from fcnseg.data.instances import make_instance_dataset
from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
DSB = SHARED_DATA / "dsb2018_nuclei"
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def load_benchmark() -> ModuleType:
    """benchmarks/dsb.py by path: the benchmarks folder is not a package."""
    spec = importlib.util.spec_from_file_location("dsb_benchmark", ROOT / "benchmarks" / "dsb.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECIPES = ("dsb_instancefcn", "dsb_fcis")


def recipe(name: str, overrides: list[str] | None = None) -> Config:
    return load_config(resolve_config(name), overrides)


@pytest.mark.parametrize("name", RECIPES)
def test_the_recipe_loads_and_its_model_builds(name: str):
    config = recipe(name)
    assert config.task == "instance" and config.model.name == name.removeprefix("dsb_")
    assert config.data.kind == "folder" and config.data.num_classes == 2
    assert config.train.max_minutes == 20 and config.train.threads == 2
    assert config.data.train_scale == config.data.inference_scale == 2.0  # nuclei doubled
    assert config.data.crop_size == (256, 256) and config.data.augment == "dihedral"
    spec = ModelSpec(config.model.name, config.data.num_classes, 3, dict(config.model.options))
    model = spec.build()
    assert model.max_detections == 1000  # the protocol ranks up to 1000 detections per image


def test_the_models_are_sized_for_doubled_nuclei():
    instancefcn = ModelSpec("instancefcn", 2, 3, recipe("dsb_instancefcn").model.options).build()
    assert instancefcn.window_sizes == (16, 24, 40, 64, 96, 144)
    fcis = ModelSpec("fcis", 2, 3, recipe("dsb_fcis").model.options).build()
    assert fcis.anchors.stride == 8 and fcis.anchors.sizes == (16, 32, 64, 128)
    assert fcis.test_rois == 1000  # an image holds up to 375 nuclei


@pytest.mark.skipif(not DSB.is_dir(), reason=f"real data not here: {DSB} is missing")
@pytest.mark.parametrize("name", RECIPES)
def test_one_training_step_on_two_real_crops(name: str):
    config = recipe(name, [f"data.root={DSB}"])
    dataset = make_instance_dataset(config.data, "train", train=True, seed=0)
    items = [dataset[index] for index in range(2)]
    images = torch.stack([image for image, _ in items])  # (2, 3, 256, 256)
    targets = torch.stack([target for _, target in items])  # (2, 2, 256, 256)
    assert images.shape == (2, 3, 256, 256) and targets[:, 0].max() > 0  # nuclei in the crops
    spec = ModelSpec(config.model.name, config.data.num_classes, 3, dict(config.model.options))
    torch.manual_seed(0)
    model = spec.build().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr)
    loss, parts = model.loss(model(images), targets, config.data.ignore_index)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and len(parts) >= 2
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_image_types_follow_the_data_readme():
    image_type = load_benchmark().image_type
    dark = np.zeros((32, 32, 3), np.uint8)
    dark[8:16, 8:16] = 220  # a bright nucleus on black: fluorescence
    light = np.full((32, 32, 3), 200, np.uint8)
    light[8:16, 8:16] = 60  # a dark nucleus on white: brightfield
    stained = np.zeros((32, 32, 3), np.uint8)
    stained[...] = (180, 120, 200)  # purple H&E-like colour: histology
    assert image_type(dark) == "fluorescence"
    assert image_type(light) == "brightfield"
    assert image_type(stained) == "histology"
    almost_grey = light.copy()
    almost_grey[..., 0] += 1  # a spread of 1 level is still greyscale
    assert image_type(almost_grey) == "brightfield"
    assert image_type(np.full((4, 4, 3), 99, np.uint8)) == "fluorescence"  # median < 100
    assert image_type(np.full((4, 4, 3), 100, np.uint8)) == "brightfield"


def test_per_type_dsb_means_each_type_and_skips_undefined_images():
    dsb_by_type = load_benchmark().dsb_by_type
    types = {"a": "fluorescence", "b": "fluorescence", "c": "histology", "d": "histology"}
    by_type = dsb_by_type({"a": 0.2, "b": 0.6, "c": 0.5, "d": None}, types)
    assert by_type["fluorescence"] == pytest.approx(0.4) and by_type["histology"] == 0.5
    assert np.isnan(by_type["brightfield"])
