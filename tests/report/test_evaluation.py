"""Evaluation reports: per-image scores and the gallery by hand, metrics.json, report.html."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fcnseg.checkpoint import ModelSpec, model_checkpoint, save_checkpoint
from fcnseg.cli import main
from fcnseg.config import Config
from fcnseg.data.dataset import SegmentationDataset
from fcnseg.data.transforms import build_transform
from fcnseg.inference.predictor import Predictor
from fcnseg.metrics.confusion import ConfusionMatrix
from fcnseg.report.evaluation import evaluate, gallery_choice, wrong_pixel_share
from fcnseg.report.run_report import write_run_report

MEAN, STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)  # normalised value = pixel / 255


class ReadsLabelsFromRed(nn.Module):
    """A 'model' whose prediction is round(red * 255 / 80): the image spells out its labels."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        red = images[:, :1] * 255 / 80  # (N, 1, H, W), the intended label
        centres = torch.arange(3, dtype=images.dtype).view(1, 3, 1, 1)
        return -((red - centres) ** 2)  # nearest class centre wins


class Source:
    """Three 6x8 images: two say their mask exactly; one is wrong on the bottom half."""

    def __init__(self) -> None:
        self.names, self.class_names = ["right_a", "half_wrong", "right_b"], ["a", "b", "c"]
        mask = np.zeros((6, 8), np.int64)
        mask[:, 4:] = 1
        self.masks = [mask, mask, mask.copy()]
        self.masks[2][0, 0] = 255  # an unlabelled pixel
        self.said = [mask, np.where(np.arange(6)[:, None] >= 3, 1 - mask, mask), mask]

    def __len__(self) -> int:
        return 3

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image = np.zeros((6, 8, 3), np.uint8)
        image[..., 0] = self.said[index] * 80
        return image, self.masks[index]


@pytest.fixture
def evaluation():
    dataset = SegmentationDataset(Source(), build_transform("none", MEAN, STD, 3))
    return evaluate(Predictor(ReadsLabelsFromRed()), dataset, 3, 255, 1, gallery_size=1)


def test_per_image_scores_and_gallery_by_hand(evaluation):
    # half_wrong: truth 0 on columns 0-3, 1 on 4-7; the bottom 3 rows are swapped.
    # class 0: TP 12, FP 12, FN 12 -> IoU 12/36; class 1 the same -> image mIoU 1/3.
    assert evaluation.image_miou == pytest.approx([1.0, 1 / 3, 1.0])
    assert [item.name for item in evaluation.best] == ["right_a"]
    assert [item.name for item in evaluation.worst] == ["half_wrong"]
    assert evaluation.worst[0].prediction.shape == (6, 8)
    # Dataset, class 0: TP 24 + 12 + 23 (one pixel of right_b is unlabelled), FP 12, FN 12.
    scores = evaluation.scores
    assert scores.per_class_iou[0] == pytest.approx(59 / (59 + 12 + 12))
    assert math.isnan(scores.per_class_iou[2])  # class c: in neither truth nor prediction
    assert scores.num_images == 3 and scores.boundary_tolerance == 1
    low, high = scores.miou_interval
    assert low <= scores.miou <= high


def _sources(html: str) -> list[str]:
    return re.findall(r'src="([^"]{0,40})', html)


def test_report_files_are_complete_and_self_contained(evaluation, tmp_path: Path):
    history = [{"epoch": e, "train_loss": 1 / e, "val_miou": 0.1 * e} for e in (1, 2, 3)]
    write_run_report(tmp_path, evaluation, ["a", "b", "c"], [], history, title="t <&> t")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["per_class_iou"][2] is None and metrics["num_images"] == 3
    assert metrics["per_image_miou"]["half_wrong"] == pytest.approx(1 / 3)
    assert metrics["confusion_matrix"][0][1] == 12
    html = (tmp_path / "report.html").read_text()
    assert all(s.startswith("data:image/png;base64,") for s in _sources(html))
    assert len(_sources(html)) == 5  # IoU bars, confusion matrix, curves, best, worst
    assert "t &lt;&amp;&gt; t" in html and "95% CI" in html and "absent" in html
    assert "Training curves" in html and "(within 1 px)" in html
    markdown = (tmp_path / "report.md").read_text()
    assert "| mIoU |" in markdown and "[report.html](report.html)" in markdown


def test_no_training_curves_without_a_history(evaluation, tmp_path: Path):
    write_run_report(tmp_path, evaluation, ["a", "b", "c"], [])
    assert "Training curves" not in (tmp_path / "report.html").read_text()


def test_evaluate_command_writes_the_html_report_with_the_runs_curves(
    folder_dataset: Path, tmp_path: Path
):
    torch.manual_seed(0)
    spec = ModelSpec("unet", 3, 3, {"base_width": 4})
    config = Config()
    config.data.kind, config.data.root, config.data.num_classes = "folder", str(folder_dataset), 3
    state = model_checkpoint(spec.build(), spec, config, ["zero", "one", "two"]) | {"epoch": 2}
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(state, run / "best.pt")
    history = [{"epoch": 1, "train_loss": 1.0, "val_miou": 0.2}]
    (run / "history.json").write_text(json.dumps(history))
    out = tmp_path / "evaluation"
    argv = ["evaluate", str(run / "best.pt"), "--data", str(folder_dataset), "--out", str(out)]
    argv += ["--flip", "--scales", "0.75", "1"]  # test-time augmentation through the report
    assert main(argv) == 0
    html = (out / "report.html").read_text()
    assert "Training curves" in html and "zero" in html and "Worst images" in html
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["per_image_miou"]) == 2 and metrics["boundary_f1"] is not None


def test_error_overlay_marks_wrong_and_unlabelled_pixels():
    from fcnseg.palette import error_overlay

    image = np.full((1, 3, 3), 200, np.uint8)
    truth, prediction = np.array([[1, 1, 255]]), np.array([[1, 2, 0]])
    picture = error_overlay(image, truth, prediction, ignore_index=255)
    assert picture[0, 0].tolist() == [80, 80, 80]  # right: the image, dimmed grey
    assert picture[0, 1].tolist() == [230, 25, 25]  # wrong: red
    assert picture[0, 2].tolist() == [60, 120, 230]  # not judged: blue


def test_the_worst_images_are_those_with_most_wrong_pixels_not_the_lowest_miou():
    # Image 0: right everywhere but 2 pixels of a class that is absent from it: its mIoU is
    # low ((1 + 0) / 2: the stray class scores IoU 0) yet 2 of 100 pixels are wrong.
    # Image 1: both classes present, 30 of 100 pixels wrong: mIoU higher, picture worse.
    truth_0 = torch.zeros(10, 10, dtype=torch.long)
    prediction_0 = truth_0.clone()
    prediction_0[0, :2] = 1
    truth_1 = torch.zeros(10, 10, dtype=torch.long)
    truth_1[5:] = 1
    prediction_1 = truth_1.clone()
    prediction_1[2:5] = 1
    shares = [
        wrong_pixel_share(prediction_0, truth_0, 255),
        wrong_pixel_share(prediction_1, truth_1, 255),
    ]
    assert shares == [0.02, 0.3]
    matrix = ConfusionMatrix(2, per_image=True)
    matrix.update(torch.stack([prediction_0, prediction_1]), torch.stack([truth_0, truth_1]))
    image_miou = matrix.per_image_iou()
    assert image_miou[0] < image_miou[1]  # mIoU would call image 0 the worse one
    best, worst = gallery_choice(shares, 1)
    assert (best, worst) == ([0], [1])


def test_unlabelled_images_are_left_out_of_the_gallery():
    truth = torch.full((4, 4), 255)
    assert math.isnan(wrong_pixel_share(torch.zeros(4, 4), truth, 255))
    assert gallery_choice([math.nan, 0.1, 0.5, 0.2], 3) == ([1], [2])


def test_the_worst_window_is_where_the_wrong_pixels_gather():
    from fcnseg.report.figures import worst_window

    truth = np.zeros((128, 160), np.int64)
    prediction = truth.copy()
    prediction[0:5, 0:5] = 1  # 25 wrong pixels top left
    prediction[90:120, 100:130] = 1  # 900 wrong pixels further down: the window must hold them
    truth[0:40, 150:160] = 255  # unlabelled: never counted
    prediction[0:40, 150:160] = 2
    top, left, side = worst_window(truth, prediction, 255)
    assert side == 32  # a quarter of 128
    assert 120 - side <= top <= 90 and 130 - side <= left <= 100  # holds the 30 x 30 block
    window = (truth != prediction) & (truth != 255)
    assert window[top : top + side, left : left + side].sum() == 900


def test_a_small_image_gives_a_window_of_its_own_size():
    from fcnseg.report.figures import worst_window

    truth = np.zeros((20, 24), np.int64)
    assert worst_window(truth, truth, 255) == (0, 0, 20)
