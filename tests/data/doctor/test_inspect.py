"""The label doctor on small datasets whose statistics are counted by hand."""

import json
from pathlib import Path

import numpy as np
import pytest

from fcnseg import FcnsegError
from fcnseg.cli import main
from fcnseg.config import DataConfig, LossConfig
from fcnseg.data.doctor.inspect import check_before_training, inspect_data
from fcnseg.data.doctor.report import suggest_loss
from fcnseg.losses import median_frequency_weights, resolve_class_weights
from tests.conftest import write_pair

BLACK = np.zeros((4, 4, 3), np.uint8)


def small_dataset(root: Path) -> Path:
    """train: a (0: 12 px, 1: 4 px), b (0: 8 px, 2: 6 px, ignore 2 px); val: c (all 0).

    By hand, over train: class pixels 20, 4, 6; each class's frequency is its pixels over the
    labelled pixels of the images that contain it: 0: 20 / (16 + 14), 1: 4 / 16, 2: 6 / 14.
    """
    a = np.zeros((4, 4), np.uint8)
    a[0, :] = 1
    b = np.zeros((4, 4), np.uint8)
    b[2:, :3] = 2
    b[0, :2] = 255
    write_pair(root, "train", "a", BLACK, a)
    write_pair(root, "train", "b", BLACK, b)
    write_pair(root, "val", "c", BLACK, np.zeros((4, 4), np.uint8))
    return root


def test_counts_presence_and_weights_match_hand_counts(tmp_path: Path):
    inspection = inspect_data(
        DataConfig(kind="folder", root=str(small_dataset(tmp_path)), num_classes=3)
    )
    train, val = inspection.splits
    assert train.class_pixels.tolist() == [20, 4, 6] and train.ignored_pixels == 2
    assert train.presence_pixels.tolist() == [30, 16, 14]
    assert val.class_pixels.tolist() == [16, 0, 0]
    frequency = np.array([20 / 30, 4 / 16, 6 / 14])
    expected = np.median(frequency) / frequency  # median is 6/14
    weights = median_frequency_weights(train.class_pixels, train.presence_pixels)
    assert weights == pytest.approx(expected) and weights[2] == pytest.approx(1.0)
    assert weights.tolist() == pytest.approx([9 / 14, 12 / 7, 1.0])


def test_findings_name_absent_classes_and_one_class_masks(tmp_path: Path):
    config = DataConfig(kind="folder", root=str(small_dataset(tmp_path)), num_classes=3)
    messages = [f.message for f in inspect_data(config).findings]
    assert not inspect_data(config).errors
    assert any("val: 2 classes never occur (class 1, class 2): their IoU" in m for m in messages)
    assert any(
        "val: 1 mask of a single class" in m and "c.png is all class 0" in m for m in messages
    )


def test_inferred_classes_and_the_cli_account(tmp_path: Path, capsys: pytest.CaptureFixture):
    root = small_dataset(tmp_path / "data")
    code = main(["inspect", str(root), "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert code == 0
    assert "classes  3, numbered (no class table found)" in printed
    assert "index masks (8-bit, mode L)" in printed and "verdict  ready to train" in printed
    assert (tmp_path / "out" / "class_pixels.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "out" / "inspect.json").read_text())
    assert summary["splits"]["train"]["class_pixels"] == [20, 4, 6]
    assert summary["class_weights"] == pytest.approx([9 / 14, 12 / 7, 1.0])
    # Beside them, the weights loss.class_weights: sqrt_median_frequency would train with.
    sqrt = resolve_class_weights(
        LossConfig(class_weights="sqrt_median_frequency"), lambda: ([20, 4, 6], [30, 16, 14])
    ).class_weights
    assert summary["class_weights_sqrt"] == pytest.approx(sqrt)
    assert sqrt == pytest.approx([(9 / 14) ** 0.5, (12 / 7) ** 0.5, 1.0])
    row = next(line for line in printed.splitlines() if line.startswith(" 1 class 1"))
    assert row.split()[-2:] == ["1.7143", "1.3093"]  # 12/7 and its square root
    assert summary["loss_advice"]["config"] == {"loss": {"terms": [{"name": "cross_entropy"}]}}


def test_errors_make_inspect_exit_non_zero_and_train_refuse(tmp_path: Path, capsys):
    root = small_dataset(tmp_path / "data")
    write_pair(root, "train", "big", np.zeros((5, 6, 3), np.uint8), np.full((4, 4), 7, np.uint8))
    code = main(["inspect", str(root), "--set", "data.num_classes=3", "--out", str(tmp_path / "o")])
    printed = capsys.readouterr().out
    assert code == 1 and "NOT READY" in printed
    assert "big.png is 4x4 but its image" in printed  # size mismatch, with both files
    assert "big.png has 16 pixels with labels in no class: 7 (16 px)" in printed
    assert "images come in 2 sizes" in printed  # a batch of 8 needs one size
    config = DataConfig(kind="folder", root=str(root), num_classes=3)
    with pytest.raises(FcnsegError, match=r"labels would spoil training: .* more problems"):
        check_before_training(config)


def test_0_255_masks_read_as_index_would_ignore_every_foreground_pixel(tmp_path: Path):
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 255
    for split in ("train", "val"):
        write_pair(tmp_path, split, "m", BLACK, mask)
    config = DataConfig(kind="folder", root=str(tmp_path), num_classes=2, mask_encoding="index")
    messages = [finding.message for finding in inspect_data(config).errors]
    assert any(
        "every 255 pixel would be ignored" in m and "mask_encoding: binary" in m for m in messages
    )
    assert any("labelled pixels are only class 0" in m for m in messages)
    detected = inspect_data(DataConfig(kind="folder", root=str(tmp_path), num_classes=2))
    assert not detected.errors and detected.splits[0].class_pixels.tolist() == [8, 8]


def test_colours_outside_the_table_are_errors_with_counts(tmp_path: Path):
    mask = np.zeros((4, 4, 3), np.uint8)
    mask[0, 0] = (5, 5, 200)
    for split in ("train", "val"):
        write_pair(tmp_path, split, "m", BLACK, mask)
    (tmp_path / "classes.txt").write_text("0 bg 0,0,0\n1 fg 255,255,255\n")
    inspection = inspect_data(DataConfig(kind="folder", root=str(tmp_path)), infer_classes=True)
    assert inspection.num_classes == 2
    messages = [finding.message for finding in inspection.errors]
    assert any(
        "m.png has 1 pixels the rgb encoding cannot decode: (5, 5, 200) (1 px)" in m
        for m in messages
    )


def test_missing_split_is_an_error(tmp_path: Path):
    write_pair(tmp_path, "training", "a", BLACK, np.zeros((4, 4), np.uint8))
    inspection = inspect_data(DataConfig(kind="folder", root=str(tmp_path), num_classes=2))
    assert any("no split 'train' (found: training)" in f.message for f in inspection.errors)


def test_loss_suggestion_follows_the_balance():
    reason, sections = suggest_loss(np.array([1000, 900, 800]))
    assert "plain cross-entropy" in reason
    assert sections == {"loss": {"terms": [{"name": "cross_entropy"}]}}
    reason, sections = suggest_loss(np.array([10_000, 50, 800]))
    assert "200-fold" in reason and sections["loss"]["class_weights"] == "sqrt_median_frequency"
    # The rule's bands and CamVid: test_advice.py; two classes: test_binary_doctor.py.
