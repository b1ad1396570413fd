"""fcnseg.load: a checkpoint or an exported file -> a Predictor with everything training fixed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fcnseg
from fcnseg.checkpoint import ModelSpec, load_checkpoint, model_checkpoint, save_checkpoint
from fcnseg.cli import main
from fcnseg.config import Config
from fcnseg.errors import FcnsegError
from fcnseg.inference.predictor import Predictor

COLOURS = [[10, 20, 30], [200, 100, 0], [0, 250, 5]]


def write(path: Path, **changes) -> Path:
    """A tiny U-Net checkpoint with its own class colours, trained on data that is gone."""
    torch.manual_seed(0)
    spec = ModelSpec("unet", 3, 3, {"base_width": 4})
    config = Config()
    config.data.kind, config.data.root, config.data.num_classes = "folder", "/gone", 3
    config.data.mean, config.data.std, config.data.inference_scale = (0.5,) * 3, (0.25,) * 3, 0.5
    state = model_checkpoint(spec.build(), spec, config, ["sky", "road", "car"], COLOURS)
    save_checkpoint({**state, **changes}, path)
    return path


def test_a_checkpoint_loads_with_its_classes_colours_and_preprocessing(tmp_path: Path):
    predictor = fcnseg.load(write(tmp_path / "best.pt"), device="cpu")
    assert predictor.class_names == ["sky", "road", "car"]
    assert predictor.palette[:3].tolist() == COLOURS and predictor.palette.shape == (256, 3)
    assert predictor.palette[255].tolist() == [0, 0, 0]  # the ignore label
    assert predictor.options.scales == (0.5,)  # data.inference_scale, applied once
    image = np.full((10, 12, 3), 255, np.uint8)
    assert torch.allclose(predictor.normalise(image), torch.full((3, 10, 12), 2.0))
    assert predictor.predict_image(image).shape == (10, 12)
    assert "state_dict" not in predictor.checkpoint and predictor.checkpoint["model"]["name"]


def test_predict_colours_masks_from_the_checkpoint_not_the_training_data(tmp_path: Path):
    """The training dataset (and its class table) is gone: the colours come with the model."""
    checkpoint = write(tmp_path / "best.pt")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "photo.png")
    argv = ["predict", str(checkpoint), str(tmp_path / "photo.png"), "--out", str(tmp_path / "o")]
    assert main([*argv, "--no-progress", "--backend", "torch"]) == 0
    mask = Image.open(tmp_path / "o" / "photo.png")
    assert np.asarray(mask.getpalette()[:9]).reshape(3, 3).tolist() == COLOURS


def test_the_predictor_leaves_its_callers_model_as_it_was():
    model = fcnseg.build_model("unet", 2, base_width=4).train()
    batch_norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = batch_norm.running_mean.clone()
    Predictor(model).labels(torch.randn(2, 3, 24, 24))
    assert model.training and all(module.training for module in model.modules())
    assert torch.equal(batch_norm.running_mean, before)  # eval mode: statistics untouched
    model.eval()
    Predictor(model).labels(torch.randn(1, 3, 24, 24))
    assert not model.training


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": {"name": "unet", "num_classes": "3"}}, "num_classes='3', expected a int"),
        ({"model": [1, 2]}, "'model' entry is a list"),
        ({"class_names": ["sky"]}, "names 1 classes for a model of 3"),
        ({"config": {"trian": {}}}, "its saved config does not load"),
    ],
)
def test_a_damaged_checkpoint_is_explained(tmp_path: Path, changes: dict, message: str):
    with pytest.raises(FcnsegError, match=message):
        fcnseg.load(write(tmp_path / "bad.pt", **changes))


def test_a_checkpoint_without_a_model_is_explained(tmp_path: Path):
    path = write(tmp_path / "x.pt")
    state = load_checkpoint(path)
    del state["state_dict"]
    save_checkpoint(state, path)
    with pytest.raises(FcnsegError, match="has no 'state_dict' entry"):
        fcnseg.load(path)


def test_an_exported_file_loads_like_its_checkpoint(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    checkpoint = write(tmp_path / "best.pt")
    assert main(["export", str(checkpoint)]) == 0
    from_torch = fcnseg.load(checkpoint, device="cpu")
    from_onnx = fcnseg.load(tmp_path / "best.onnx")
    assert from_onnx.class_names == from_torch.class_names
    assert np.array_equal(from_onnx.palette, from_torch.palette)
    assert from_onnx.options.scales == (0.5,)
    image = np.random.default_rng(0).integers(0, 255, (33, 47, 3), dtype=np.uint8)
    assert np.array_equal(from_onnx.predict_image(image), from_torch.predict_image(image))
