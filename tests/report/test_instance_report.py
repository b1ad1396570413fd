"""The instance report on hand-built masks: which instances the gallery calls matched, missed
and false, that its pictures mark them so, and the files write_instance_report leaves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fcnseg.inference.instance_pictures import FALSE_COLOUR, MISSED_COLOUR, id_contours
from fcnseg.metrics.instances import InstanceEvaluator
from fcnseg.models.instances import Instances
from fcnseg.report.figures_instances import judged_panels
from fcnseg.report.instance_evaluation import (
    InstanceEvaluation,
    InstanceGalleryItem,
    match_instances,
)
from fcnseg.report.instance_report import write_instance_report


def scene() -> tuple[np.ndarray, Instances]:
    """Truth on 10 x 12: A (ID 1) rows 0-3 x columns 0-3, B (ID 2) rows 0-3 x columns 6-9.
    Predictions, best first: exactly A (0.9); a square where nothing is (0.8); 7 of B's 16
    pixels, IoU 7/16 < 0.5 (0.7). So A is matched, B missed, the last two false."""
    truth = np.zeros((10, 12), dtype=np.int64)
    truth[0:4, 0:4], truth[0:4, 6:10] = 1, 2
    masks = torch.zeros(3, 10, 12, dtype=torch.bool)
    masks[0, 0:4, 0:4] = True
    masks[1, 6:9, 0:3] = True
    masks[2, 0:2, 6:10] = True
    masks[2, 1, 9] = False
    return truth, Instances(masks, torch.tensor([1, 1, 1]), torch.tensor([0.9, 0.8, 0.7]))


def test_instances_are_matched_missed_or_false_at_iou_half():
    truth, found = scene()
    match = match_instances(found.masks.numpy(), found.scores.numpy(), truth)
    assert match.predicted_matched.tolist() == [True, False, False]
    assert match.truth_ids.tolist() == [1, 2] and match.truth_matched.tolist() == [True, False]
    assert match.missed_ids.tolist() == [2]


def test_an_iou_of_exactly_half_matches_and_each_truth_matches_once():
    truth = np.zeros((4, 8), dtype=np.int64)
    truth[0:2, 0:4] = 1  # 8 pixels
    masks = np.zeros((3, 4, 8), dtype=bool)
    masks[0, 0:2, 0:2] = True  # IoU 4/8: matched
    masks[1, 0:2, 0:4] = True  # IoU 1, but it scores lower than the first
    masks[2, 0:2, 0:4] = True  # IoU 1, scores best
    match = match_instances(masks, np.array([0.5, 0.2, 0.9]), truth)
    assert match.predicted_matched.tolist() == [False, False, True]  # best score first
    match = match_instances(masks[:1], np.array([0.5]), truth)
    assert match.predicted_matched.tolist() == [True]


def test_void_pixels_count_for_neither_side():
    truth = np.zeros((2, 8), dtype=np.int64)
    truth[:, 0:3] = 1  # 6 pixels
    masks = np.ones((1, 2, 8), dtype=bool)  # IoU 6/16 with the truth ...
    void = np.zeros((2, 8), dtype=bool)
    void[:, 3:8] = True  # ... but 1 where columns 3-7 are not judged
    assert match_instances(masks, np.ones(1), truth).predicted_matched.tolist() == [False]
    assert match_instances(masks, np.ones(1), truth, void).predicted_matched.tolist() == [True]


def test_no_prediction_and_no_truth_are_handled():
    empty = match_instances(np.zeros((0, 3, 3), bool), np.zeros(0), np.ones((3, 3), np.int64))
    assert empty.truth_matched.tolist() == [False] and len(empty.predicted_matched) == 0
    nothing = match_instances(np.ones((1, 3, 3), bool), np.ones(1), np.zeros((3, 3), np.int64))
    assert nothing.predicted_matched.tolist() == [False] and len(nothing.truth_ids) == 0


def gallery_item() -> InstanceGalleryItem:
    truth, found = scene()
    match = match_instances(found.masks.numpy(), found.scores.numpy(), truth)
    image = np.full((10, 12, 3), 90, np.uint8)
    return InstanceGalleryItem("scene", 0.25, image, truth, found, match)


def has_colour(picture: np.ndarray, where: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool((picture[where] == colour).all(axis=-1).any())


def test_the_gallery_marks_the_missed_and_the_false_instances():
    item = gallery_item()
    truth_panel, prediction_panel = judged_panels(item)
    truth_edges, found_edges = id_contours(item.truth_ids), id_contours(item.found.id_map().numpy())
    a, b = truth_edges & (item.truth_ids == 1), truth_edges & (item.truth_ids == 2)
    assert has_colour(truth_panel, b, MISSED_COLOUR)  # B, missed: dashed yellow
    assert not has_colour(truth_panel, b, FALSE_COLOUR)
    assert not has_colour(truth_panel, a, MISSED_COLOUR)  # A was found
    ids = item.found.id_map().numpy()
    for instance, false in ((1, False), (2, True), (3, True)):
        edge = found_edges & (ids == instance)
        assert (prediction_panel[edge] == FALSE_COLOUR).all(axis=-1).all() == false, instance
        assert has_colour(prediction_panel, edge, FALSE_COLOUR) == false, instance


def test_write_instance_report_leaves_metrics_and_pictures(tmp_path: Path):
    item = gallery_item()
    evaluator = InstanceEvaluator()
    found = item.found
    evaluator.update(found.masks, found.scores, found.classes, item.truth_ids, {1: 1, 2: 1})
    evaluation = InstanceEvaluation(evaluator.compute(), ["scene"], [item], [])
    history = [
        {"epoch": 1, "train_loss": 1.0, "val_ap": 0.1, "val_ap50": 0.2, "val_dsb_score": 0.1}
    ]
    report = write_instance_report(tmp_path, evaluation, ["background", "shape"], history)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # A found at IoU 1 first, two false, B never: precision 1 up to recall 1/2 at every IoU
    # threshold, so 51 of the 101 recall points; DSB 1 / (1 TP + 2 FP + 1 FN) at each threshold.
    assert metrics["ap"] == pytest.approx(51 / 101) and metrics["ap50"] == pytest.approx(51 / 101)
    assert metrics["dsb_score"] == pytest.approx(0.25)
    assert metrics["ap_large"] is None  # no large true instance
    assert metrics["per_class_ap"] == {"shape": pytest.approx(51 / 101)}
    assert metrics["per_image_dsb"] == {"scene": pytest.approx(0.25)}
    for name in ("report.md", "report.html", "pr_curves.png", "gallery.png", "curves.png"):
        assert (tmp_path / name).is_file(), name
    text = report.read_text()
    assert "| AP (IoU 0.50:0.95) | 50.50 |" in text and "| AP large (> 96² px) | n/a |" in text
    assert "dashed yellow" in (tmp_path / "report.html").read_text()
