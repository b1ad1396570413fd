"""FCIS: its maps and options, the joint mask-and-class of hand-made score maps, training targets
(true boxes, ROI masks, OHEM) and losses, and inference at odd sizes and on the meta device."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import fcnseg
from fcnseg.models import build_model
from fcnseg.models.instances import Instances
from fcnseg.models.instances.fcis import FCIS
from fcnseg.models.instances.fcis_targets import (
    Rois,
    RoiScores,
    hardest,
    mask_targets,
    roi_losses,
    true_instances,
)

from .conftest import squares_target

TINY = {"backbone": "resnet18", "width": 8, "rpn_width": 8, "grid_size": 2, "mask_size": 4}


def tiny(num_classes: int = 3, **options: object) -> FCIS:
    return build_model("fcis", num_classes=num_classes, **{**TINY, **options})


# ---------------------------------------------------------------- maps and options


@pytest.mark.parametrize(("output_stride", "size"), [(16, (7, 9)), (8, (13, 17))])
def test_maps_are_at_the_output_stride_of_the_padded_input(
    output_stride: int, size: tuple[int, int]
) -> None:
    model = tiny(num_classes=4, output_stride=output_stride, anchor_ratios=[1.0, 2.0]).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 97, 131))
    anchors = 4 * 2  # sizes 16, 32, 64, 128 x ratios 1, 2
    assert outputs["objectness"].shape == (1, anchors, *size)
    assert outputs["anchor_deltas"].shape == (1, 4 * anchors, *size)
    assert outputs["position_scores"].shape == (1, 2 * 2 * 2 * 4, *size)  # 2 k^2 K
    assert outputs["position_boxes"].shape == (1, 4 * 2 * 2, *size)  # 4 k^2


def test_one_output_class_means_one_foreground_class() -> None:
    model = tiny(num_classes=1)
    assert model.num_classes == 2 and model.position_scores.out_channels == 2 * 4 * 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backbone": "vgg16"}, "unknown backbone"),
        ({"output_stride": 32}, "output_stride must be 16 or 8"),
        ({"grid_size": 5, "mask_size": 3}, "mask_size >= grid_size"),
        ({"width": 0}, "width and rpn_width"),
        ({"anchor_sizes": []}, "anchor_sizes and anchor_ratios"),
        ({"anchor_ratios": [1.0, -2.0]}, "anchor_sizes and anchor_ratios"),
        ({"hard_rois": 0}, "hard_rois"),
        ({"nms_threshold": 1.5}, "nms_threshold"),
        ({"max_detections": 0}, "max_detections"),
    ],
)
def test_impossible_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(fcnseg.FcnsegError, match=message):
        tiny(**options)


def test_unknown_options_are_refused() -> None:
    with pytest.raises(fcnseg.FcnsegError, match="Its options: "):
        build_model("fcis", num_classes=2, window_sizes=[16])


# ---------------------------------------------------------------- hand-made score maps


def hand_made_outputs() -> dict[str, torch.Tensor]:
    """A 64 x 64 image at stride 16 (4 x 4 cells), k = 2, P = 4, classes 0..2, one 32 px anchor
    per cell. The RPN proposes (16, 16, 48, 48) best: the anchor of cell (1, 1), (8, 8, 40, 40),
    moved by a quarter of its size. Class 2's maps of grid position (i, j) score cell
    (1 + i, 1 + j), the ROI's quadrant (i, j), at +8: "inside" in three quadrants, "outside" in
    the top-left one; -8 elsewhere. Background's maps are 3 everywhere, class 1's 0."""
    objectness = torch.full((1, 1, 4, 4), -5.0)
    objectness[0, 0, 1, 1] = 5.0
    deltas = torch.zeros(1, 4, 4, 4)
    deltas[0, :2, 1, 1] = 0.25
    scores = torch.zeros(1, 3, 2, 2, 2, 4, 4)  # class, part (outside, inside), i, j, y, x
    scores[0, 0] = 3.0
    scores[0, 2] = -8.0
    for i in range(2):
        for j in range(2):
            part = 0 if (i, j) == (0, 0) else 1
            scores[0, 2, part, i, j, 1 + i, 1 + j] = 8.0
    return {
        "objectness": objectness,
        "anchor_deltas": deltas,
        "position_scores": scores.view(1, 24, 4, 4),
        "position_boxes": torch.zeros(1, 16, 4, 4),
    }


def expected_hand_made_mask() -> torch.Tensor:
    """The ROI's 4 x 4 mask (sigmoid of inside - outside: the top-left 2 x 2 bins out), resized
    bilinearly to its 32 x 32 pixels, at the 0.4 threshold, in the 64 x 64 image."""
    logits = torch.full((4, 4), 16.0)
    logits[:2, :2] = -16.0
    resized = F.interpolate(
        logits.sigmoid()[None, None], size=(32, 32), mode="bilinear", align_corners=False
    )[0, 0]
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[16:48, 16:48] = resized >= 0.4
    return mask


def check_hand_made(found: Instances) -> None:
    assert len(found) == 1
    assert found.classes.tolist() == [2]
    assert found.scores.item() == pytest.approx(math.exp(8) / (math.exp(8) + math.exp(3) + 1))
    assert torch.equal(found.masks[0], expected_hand_made_mask())
    assert found.masks[0, 16:30, 16:30].sum() == 0 and found.masks[0, 32:48, 16:48].all()


def test_a_hand_made_score_map_gives_the_expected_mask_and_class() -> None:
    model = tiny(anchor_sizes=[32], anchor_ratios=[1.0]).eval()
    (found,) = model.postprocess(hand_made_outputs(), (64, 64))
    check_hand_made(found)


def test_the_roi_scores_by_hand() -> None:
    model = tiny(anchor_sizes=[32], anchor_ratios=[1.0])
    box = torch.tensor([[16.0, 16, 48, 48]])
    scores = model.score_rois(hand_made_outputs(), torch.zeros(1, dtype=torch.int64), box)
    assert scores.class_logits[0].tolist() == [3.0, 0.0, 8.0]  # mean of max(inside, outside)
    expected = torch.full((4, 4), 16.0)
    expected[:2, :2] = -16.0
    assert torch.equal(scores.mask_logits[0, 2], expected)  # inside - outside
    assert scores.box_deltas[0].tolist() == [0.0] * 4


def test_postprocessing_runs_on_a_model_built_on_the_meta_device() -> None:
    with torch.device("meta"):
        model = tiny(anchor_sizes=[32], anchor_ratios=[1.0])
    (found,) = model.postprocess(hand_made_outputs(), (64, 64))
    check_hand_made(found)


# ---------------------------------------------------------------- training targets and losses


def test_true_instances_are_tight_boxes_with_majority_classes() -> None:
    target = squares_target()[0]
    target[1, 8, 8] = 2  # one pixel of instance 1 says class 2: the majority wins
    target[0, 30:33, 50:52], target[1, 30:33, 50:52] = 7, 5  # class 5 >= K = 3: left out
    truth = true_instances(target, 255, num_classes=3)
    assert truth.ids.tolist() == [1, 2] and truth.classes.tolist() == [1, 2]
    assert truth.boxes.tolist() == [[8, 8, 24, 24], [24, 8, 40, 24]]


def test_mask_targets_by_hand() -> None:
    target = squares_target(32, 48, batch=1)
    target[0, 1, 8:12, 8:24] = 255  # the top rows of square 1 are void
    rois = Rois(
        images=torch.zeros(3, dtype=torch.int64),
        boxes=torch.tensor([[8.0, 8, 24, 24], [16, 8, 32, 24], [0, 0, 8, 8]]),
        labels=torch.tensor([1, 2, 0]),
        instances=torch.tensor([1, 2, 0]),
        truth_boxes=torch.zeros(3, 4),
    )
    masks = mask_targets(target, 255, rois, 4)  # bins of 4 x 4 pixels, sampled at centres
    assert masks[0].tolist() == [[-1] * 4] + [[1] * 4] * 3  # void bins ignored
    assert masks[1].tolist() == [[-1, -1, 1, 1]] + [[0, 0, 1, 1]] * 3  # right: square 2
    assert masks[2].eq(-1).all()  # a negative ROI has no mask to learn


def test_hardest_keeps_the_largest_losses_of_each_image() -> None:
    losses = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.2, 0.8])
    images = torch.tensor([0, 0, 0, 1, 1, 1])
    assert sorted(hardest(losses, images, 2).tolist()) == [1, 2, 3, 5]
    assert sorted(hardest(losses, images, 10).tolist()) == [0, 1, 2, 3, 4, 5]


def test_roi_losses_are_normalised_as_the_reference() -> None:
    scores = RoiScores(
        class_logits=torch.zeros(2, 3),  # uniform: log 3 each
        mask_logits=torch.zeros(2, 3, 2, 2),  # probability 1/2: log 2 per labelled bin
        box_deltas=torch.zeros(2, 4),
    )
    rois = Rois(
        images=torch.tensor([0, 1]),
        boxes=torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]]),
        labels=torch.tensor([2, 0]),
        instances=torch.tensor([1, 0]),
        truth_boxes=torch.tensor([[1.0, 0, 11, 10], [0, 0, 10, 10]]),  # dx = 0.1 / 0.2 = 0.5
    )
    masks = torch.tensor([[[1, 0], [0, -1]], [[-1, -1], [-1, -1]]])
    parts = roi_losses(scores, rois, masks, hard_rois=4, batch=2)
    assert parts["class"].item() == pytest.approx(math.log(3))  # mean over kept ROIs
    assert parts["mask"].item() == pytest.approx(10 * 3 * math.log(2) / 8)  # sum / (4 x 2)
    assert parts["box"].item() == pytest.approx(0.5 * 0.5**2 / 8)  # smooth L1 / (4 x 2)


def test_loss_is_finite_and_reaches_every_parameter() -> None:
    model = tiny().train()
    outputs = model(torch.randn(2, 3, 45, 61))
    total, parts = model.loss(outputs, squares_target())
    assert set(parts) == {"rpn_objectness", "rpn_box", "class", "mask", "box"}
    assert torch.isfinite(total) and all(torch.isfinite(value) for value in parts.values())
    assert all(value > 0 for value in parts.values())
    names, parameters = zip(*model.named_parameters(), strict=True)
    gradients = torch.autograd.grad(total, parameters, allow_unused=True)
    unreached = [n for n, g in zip(names, gradients, strict=True) if g is None or not g.any()]
    assert not unreached, f"no gradient reaches {unreached}"


def test_loss_without_instances_is_finite() -> None:
    model = tiny().train()
    outputs = model(torch.randn(1, 3, 33, 40))
    total, parts = model.loss(outputs, torch.zeros(1, 2, 33, 40, dtype=torch.int64))
    assert torch.isfinite(total) and parts["mask"] == 0 and parts["box"] == 0


# ---------------------------------------------------------------- inference


@pytest.mark.parametrize("size", [(45, 61), (97, 131)])
def test_predict_gives_instances_at_the_input_size(size: tuple[int, int]) -> None:
    model = tiny(score_threshold=0.0, max_detections=20).eval()
    found = model.predict(torch.randn(2, 3, *size))
    assert len(found) == 2
    for instances in found:
        assert 0 < len(instances) <= 20  # with no threshold, some ROI is kept
        assert instances.masks.shape[1:] == size and instances.masks.dtype == torch.bool
        assert ((instances.classes >= 1) & (instances.classes <= 2)).all()
        assert ((instances.scores >= 0) & (instances.scores <= 1)).all()
        assert (instances.scores.diff() <= 0).all()
        assert instances.masks.flatten(1).any(1).all()  # no empty mask


def test_no_score_above_the_threshold_gives_empty_instances() -> None:
    model = tiny(score_threshold=1.0).eval()
    (found,) = model.predict(torch.randn(1, 3, 33, 47))
    assert len(found) == 0 and found.masks.shape == (0, 33, 47)
    assert found.classes.dtype == torch.int64


# ---------------------------------------------------------------- training


def test_a_few_steps_learn_to_propose_and_classify_two_touching_squares() -> None:
    torch.manual_seed(0)
    images = torch.zeros(2, 3, 64, 64)
    target = torch.zeros(2, 2, 64, 64, dtype=torch.int64)
    for index, (top, left) in enumerate([(8, 8), (20, 16)]):
        for instance, (size, shift) in enumerate([(14, 0), (16, 14)], start=1):
            rows, cols = slice(top, top + size), slice(left + shift, left + shift + size)
            target[index, :, rows, cols] = instance  # class = ID: 1 and 2
            images[index, instance - 1, rows, cols] = 2.0  # touching, in different colours
    model = tiny(
        width=32, rpn_width=32, grid_size=3, mask_size=9, output_stride=8, anchor_sizes=[16, 32]
    ).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(50):
        total, parts = model.loss(model(images), target)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(parts["rpn_objectness"].item() + parts["class"].item())
    assert sum(history[-5:]) < 0.6 * sum(history[:5]), history[-5:]


def test_the_exported_network_gives_the_same_instances(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from fcnseg.export.onnx import RawMaps, export_onnx, map_names
    from fcnseg.inference.backends import OnnxModel

    model = tiny(width=16, rpn_width=16, grid_size=3, mask_size=9).eval()
    names = map_names(model, 3)
    export_onnx(RawMaps(model, names), tmp_path / "fcis.onnx", 3, {}, output_names=names)
    images = torch.randn(1, 3, 61, 83)
    exported = OnnxModel(tmp_path / "fcis.onnx").maps(images)
    with torch.no_grad():
        expected = model(images)
    for name in names:
        torch.testing.assert_close(exported[name], expected[name], rtol=1e-4, atol=1e-5)
    (ours,) = model.postprocess(expected, (61, 83))
    (theirs,) = model.postprocess(exported, (61, 83))
    assert len(ours) == len(theirs) > 0
    assert torch.equal(ours.masks, theirs.masks) and torch.equal(ours.classes, theirs.classes)
