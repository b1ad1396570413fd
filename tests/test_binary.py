"""A single-output binary model end to end through the CLI: 0/255 masks, `data.num_classes: 1`,
train (BCE + Dice + Lovasz + focal, median-frequency weight), evaluate and predict."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fcnseg.checkpoint import load_checkpoint
from fcnseg.cli import main
from tests.conftest import write_pair

NAMES = ["background", "foreground"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write_binary_dataset(root: Path) -> None:
    """Bright squares (mask 255) on dark ground (mask 0), 24 x 32, 4 train and 2 val pairs."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("val", 2)):
        for index in range(count):
            mask = np.zeros((24, 32), np.uint8)
            top, left = rng.integers(0, 12), rng.integers(0, 18)
            mask[top : top + 10, left : left + 12] = 255
            image = np.repeat((mask // 2 + rng.integers(0, 40, (24, 32)))[..., None], 3, axis=-1)
            write_pair(root, split, f"item{index}", image.astype(np.uint8), mask)


def write_config(path: Path, root: Path) -> None:
    config = {
        "name": "binary",
        "data": {"kind": "folder", "root": str(root), "num_classes": 1, "batch_size": 2},
        "model": {"name": "unet", "options": {"base_width": 4}},
        "loss": {
            "terms": [
                {"name": "binary_cross_entropy"},
                {"name": "dice", "weight": 0.5},
                {"name": "lovasz", "weight": 0.5},
                {"name": "focal", "weight": 0.5},
            ],
            "class_weights": "median_frequency",
        },
        "train": {"epochs": 2, "threads": 1, "device": "cpu", "lr": 0.01},
    }
    path.write_text(yaml.safe_dump(config))


def test_a_binary_model_trains_evaluates_and_predicts_two_classes(tmp_path: Path):
    root, config_path = tmp_path / "data", tmp_path / "binary.yaml"
    write_binary_dataset(root)
    write_config(config_path, root)
    run = tmp_path / "run"
    assert main(["train", str(config_path), "--out", str(run), "--no-progress"]) == 0
    checkpoint = load_checkpoint(run / "best.pt")
    assert checkpoint["model"]["num_classes"] == 1  # one sigmoid output ...
    assert checkpoint["class_names"] == NAMES  # ... scored as two classes
    assert len(checkpoint["palette"]) == 2
    assert checkpoint["config"]["loss"]["class_weights"] == "median_frequency"
    assert np.isfinite(checkpoint["history"][-1]["train_loss"])
    _assert_two_class_metrics(json.loads((run / "metrics.json").read_text()))

    evaluation = tmp_path / "evaluation"
    argv = ["evaluate", str(run / "best.pt"), "--data", str(root), "--out", str(evaluation)]
    assert main(argv) == 0
    _assert_two_class_metrics(json.loads((evaluation / "metrics.json").read_text()))

    predictions = tmp_path / "predictions"
    argv = ["predict", str(run / "best.pt"), str(root / "val" / "images")]
    assert main([*argv, "--out", str(predictions), "--backend", "torch", "--no-progress"]) == 0
    for name in ("item0", "item1"):
        labels = np.asarray(Image.open(predictions / f"{name}.png"))
        assert labels.shape == (24, 32)
        assert set(np.unique(labels).tolist()) <= {0, 1}


def _assert_two_class_metrics(metrics: dict) -> None:
    assert metrics["class_names"] == NAMES
    assert len(metrics["per_class_iou"]) == 2
    # Both classes are in the validation truth, so both have an IoU, a number in [0, 1].
    assert all(value is not None and 0 <= value <= 1 for value in metrics["per_class_iou"])
    assert metrics["per_class_pixels"][1] > 0
