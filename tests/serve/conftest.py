"""Fixtures of the serve tests: tiny checkpoints made here, an image, and helpers."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnseg.checkpoint import ModelSpec, model_checkpoint, save_checkpoint
from fcnseg.config import Config
from fcnseg.data.synthetic import generate_sample

IMAGE_SIZE = (45, 61)  # (H, W), odd on purpose
CLASS_NAMES = ["ground", "circle", "square"]
COLOURS = [[20, 20, 20], [230, 25, 75], [60, 180, 75]]


def write_semantic_checkpoint(path: Path) -> Path:
    """An untrained 3-class U-Net (base width 4) whose head has no bias, so that its labels
    follow the image and all three classes appear (with the bias, one class takes nearly all)."""
    torch.manual_seed(0)
    spec = ModelSpec("unet", 3, 3, {"base_width": 4})
    model = spec.build()
    head = [module for module in model.modules() if isinstance(module, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        head.bias.zero_()
    config = Config(name="tiny")
    config.data.num_classes = 3
    save_checkpoint(model_checkpoint(model, spec, config, CLASS_NAMES, COLOURS), path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The semantic checkpoint, alone in its folder (no export beside it)."""
    return write_semantic_checkpoint(tmp_path_factory.mktemp("model") / "best.pt")


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated shapes image (PNG) in a folder of its own."""
    image, _ = generate_sample(0, 0, IMAGE_SIZE)
    path = tmp_path_factory.mktemp("images") / "shapes.png"
    Image.fromarray(image).save(path)
    return path


def png_array(data: bytes | Path) -> tuple[np.ndarray, str, list[int] | None]:
    """A PNG's pixel values, its mode and its palette (None without one)."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(source) as image:
        return np.asarray(image), image.mode, image.getpalette()
