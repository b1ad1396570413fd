"""The label doctor on two-class data: it suggests one sigmoid output (data.num_classes: 1) with
binary cross-entropy, and reads a one-output config's masks as background and foreground."""

from pathlib import Path

import numpy as np
import pytest

from fcnseg.cli import main
from fcnseg.config import DataConfig
from fcnseg.data.doctor.inspect import inspect_data
from fcnseg.data.doctor.report import suggest_loss
from tests.conftest import write_pair

BLACK = np.zeros((4, 4, 3), np.uint8)


def rare_foreground_dataset(root: Path) -> Path:
    """0/255 masks: train a (2 of 16 px foreground), b (none); val c (4 px foreground)."""
    a = np.zeros((4, 4), np.uint8)
    a[0, :2] = 255
    c = np.zeros((4, 4), np.uint8)
    c[1:3, 1:3] = 255
    write_pair(root, "train", "a", BLACK, a)
    write_pair(root, "train", "b", BLACK, np.zeros((4, 4), np.uint8))
    write_pair(root, "val", "c", BLACK, c)
    return root


def test_two_classes_get_one_sigmoid_output_and_binary_cross_entropy():
    reason, sections = suggest_loss(np.array([600, 400]))
    assert "one sigmoid output and binary cross-entropy" in reason
    assert sections == {
        "data": {"num_classes": 1},
        "loss": {"terms": [{"name": "binary_cross_entropy"}]},
    }
    reason, sections = suggest_loss(np.array([970, 30]))
    assert "binary with a rare class (3.0% of the pixels)" in reason
    assert sections["data"] == {"num_classes": 1}
    assert sections["loss"] == {
        "terms": [{"name": "binary_cross_entropy"}, {"name": "dice", "weight": 1.0}],
        "class_weights": "median_frequency",
    }


def test_a_one_output_config_reads_background_and_foreground(tmp_path: Path):
    config = DataConfig(kind="folder", root=str(rare_foreground_dataset(tmp_path)), num_classes=1)
    inspection = inspect_data(config)
    assert not inspection.errors
    assert inspection.reader.class_names == ["background", "foreground"]
    train = inspection.splits[0]
    assert train.class_pixels.tolist() == [30, 2]


def test_inspect_prints_the_binary_suggestion(tmp_path: Path, capsys: pytest.CaptureFixture):
    root = rare_foreground_dataset(tmp_path / "data")
    assert main(["inspect", str(root), "--out", str(tmp_path / "inferred")]) == 0
    printed = capsys.readouterr().out
    assert "binary with a rare class (6.2% of the pixels)" in printed
    assert 'data: {"num_classes": 1}' in printed
    assert '"name": "binary_cross_entropy"' in printed
    argv = ["inspect", str(root), "--set", "data.num_classes=1", "--out", str(tmp_path / "one")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "classes  2 (one sigmoid output: background, foreground), numbered" in printed
