"""The region proposal network's parameter-free parts against hand-computed values and
brute-force loops: anchors, box coding, box IoU, NMS, proposals, anchor labels and losses."""

from __future__ import annotations

import math

import pytest
import torch

from fcnseg.models.instances.rpn import (
    IGNORED,
    NEGATIVE,
    POSITIVE,
    AnchorSettings,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    flatten_maps,
    label_anchors,
    nms,
    propose,
    rpn_loss,
    sample_labels,
)


def test_anchors_by_hand() -> None:
    anchors = AnchorSettings(sizes=(16, 32), ratios=(1.0, 4.0), stride=16)
    grid = anchors.grid((2, 3), torch.device("cpu"))
    assert anchors.count == 4 and grid.shape == (2 * 3 * 4, 4)
    # cell (0, 0), centre (8, 8): 16 x 16; ratio 4 (height / width): 8 wide, 32 high; 32 x 32
    assert grid[0].tolist() == [0, 0, 16, 16]
    assert grid[1].tolist() == [4, -8, 12, 24]
    assert grid[2].tolist() == [-8, -8, 24, 24]
    # cell (1, 2) is row (1 * 3 + 2) * 4: centre (40, 24)
    assert grid[(1 * 3 + 2) * 4].tolist() == [32, 16, 48, 32]
    sizes = grid[:, 2:] - grid[:, :2]
    areas = sizes.prod(1).view(-1, 4)
    torch.testing.assert_close(areas, torch.tensor([256.0, 256, 1024, 1024]).expand(6, 4))


def test_flattened_maps_follow_the_anchor_order() -> None:
    height, width = 2, 3
    objectness = torch.zeros(3, height, width)
    deltas = torch.zeros(12, height, width)
    for a in range(3):
        for i in range(height):
            for j in range(width):
                objectness[a, i, j] = 100 * a + 10 * i + j
                for k in range(4):
                    deltas[4 * a + k, i, j] = 1000 * k + 100 * a + 10 * i + j
    logits, flat = flatten_maps(objectness, deltas)
    for i in range(height):
        for j in range(width):
            for a in range(3):
                row = (i * width + j) * 3 + a
                assert logits[row] == 100 * a + 10 * i + j
                assert flat[row].tolist() == [1000 * k + 100 * a + 10 * i + j for k in range(4)]


def test_box_iou_by_hand() -> None:
    first = torch.tensor([[0.0, 0, 2, 2], [0, 0, 0, 0]])
    second = torch.tensor([[1.0, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]])
    expected = torch.tensor([[1 / 7, 1, 0], [0, 0, 0]])
    torch.testing.assert_close(box_iou(first, second), expected)


@pytest.mark.parametrize("stds", [(1.0, 1.0, 1.0, 1.0), (0.2, 0.2, 0.5, 0.5)])
def test_encoding_and_decoding_round_trip(stds: tuple[float, ...]) -> None:
    corners = torch.rand(50, 2) * 100
    references = torch.cat([corners, corners + 1 + torch.rand(50, 2) * 60], dim=1)
    corners = torch.rand(50, 2) * 100
    targets = torch.cat([corners, corners + 1 + torch.rand(50, 2) * 60], dim=1)
    deltas = encode_boxes(references, targets, stds)
    torch.testing.assert_close(decode_boxes(references, deltas, stds), targets)
    assert encode_boxes(references, references, stds).abs().max() < 1e-6


def test_encoding_by_hand() -> None:
    reference = torch.tensor([[0.0, 0, 10, 20]])  # centre (5, 10), 10 x 20
    target = torch.tensor([[5.0, 0, 25, 40]])  # centre (15, 20), 20 x 40
    deltas = encode_boxes(reference, target, (0.5, 0.5, 2.0, 2.0))
    expected = [1.0 / 0.5, 0.5 / 0.5, math.log(2) / 2, math.log(2) / 2]
    torch.testing.assert_close(deltas[0], torch.tensor(expected))


def test_clip_boxes() -> None:
    boxes = torch.tensor([[-5.0, 3, 50, 70]])
    assert clip_boxes(boxes, (60, 40)).tolist() == [[0, 3, 40, 60]]


def brute_force_nms(boxes: list[list[float]], scores: list[float], threshold: float) -> list[int]:
    def iou(a: list[float], b: list[float]) -> float:
        width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = width * height
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    kept: list[int] = []
    for index in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if all(iou(boxes[index], boxes[other]) <= threshold for other in kept):
            kept.append(index)
    return kept


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_a_brute_force_loop(threshold: float) -> None:
    torch.manual_seed(1)
    corners = torch.rand(120, 2) * 50
    boxes = torch.cat([corners, corners + 2 + torch.rand(120, 2) * 20], dim=1)
    scores = torch.rand(120)
    expected = brute_force_nms(boxes.tolist(), scores.tolist(), threshold)
    assert nms(boxes, scores, threshold, limit=1000).tolist() == expected
    assert nms(boxes, scores, threshold, limit=5).tolist() == expected[:5]
    assert nms(boxes[:0], scores[:0], threshold, limit=5).tolist() == []


def test_label_anchors_at_the_iou_thresholds() -> None:
    truth = torch.tensor([[0.0, 0, 10, 10]])
    grid = torch.tensor(
        [
            [0.0, 0, 10, 8],  # IoU 0.8: positive
            [0.0, 0, 10, 7],  # IoU 0.7: positive (>= 0.7)
            [0.0, 0, 10, 5],  # IoU 0.5: ignored
            [0.0, 0, 10, 3],  # IoU 0.3: ignored (negative only below 0.3)
            [0.0, 0, 10, 2],  # IoU 0.2: negative
            [50.0, 50, 60, 60],  # IoU 0, its centre (55, 55) outside the 40 x 40 image: ignored
        ]
    )
    labels, matched = label_anchors(grid, truth, (40, 40))
    assert labels.tolist() == [POSITIVE, POSITIVE, IGNORED, IGNORED, NEGATIVE, IGNORED]
    assert matched[:5].tolist() == [0] * 5


def test_the_best_anchor_of_each_box_is_positive_even_below_the_threshold() -> None:
    truth = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    grid = torch.tensor([[0.0, 0, 10, 4], [0, 0, 10, 2], [20, 20, 30, 22]])  # 0.4, 0.2, 0.2
    labels, matched = label_anchors(grid, truth, (40, 40))
    assert labels.tolist() == [POSITIVE, NEGATIVE, POSITIVE]
    assert matched.tolist() == [0, 0, 1]
    labels, _ = label_anchors(grid, truth[:0], (40, 40))  # no boxes: all negative
    assert labels.tolist() == [NEGATIVE] * 3


def test_sampling_caps_positives_and_fills_with_negatives() -> None:
    labels = torch.tensor([POSITIVE] * 10 + [NEGATIVE] * 100 + [IGNORED] * 5)
    chosen = sample_labels(labels, 16, 0.5)
    assert len(chosen) == 16 and (labels[chosen] == POSITIVE).sum() == 8
    assert (labels[chosen] != IGNORED).all() and len(chosen.unique()) == 16
    chosen = sample_labels(torch.tensor([POSITIVE] * 2 + [NEGATIVE] * 3), 16, 0.5)
    assert sorted(chosen.tolist()) == [0, 1, 2, 3, 4]


def test_proposals_by_hand() -> None:
    anchors = AnchorSettings(sizes=(32,), ratios=(1.0,), stride=16)
    objectness = torch.full((1, 4, 4), -5.0)
    deltas = torch.zeros(4, 4, 4)
    objectness[0, 1, 1] = 5.0  # anchor (8, 8, 40, 40) ...
    deltas[:2, 1, 1] = 0.25  # ... moved by a quarter of its size: (16, 16, 48, 48)
    boxes, scores = propose(objectness, deltas, anchors, (60, 64), pre_nms=100, post_nms=3)
    assert boxes[0].tolist() == [16, 16, 48, 48]
    assert scores[0].item() == pytest.approx(torch.tensor(5.0).sigmoid().item())
    assert len(boxes) == 3 and (scores.diff() <= 0).all()
    assert (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 60).all() and (boxes >= 0).all()


def test_rpn_loss_is_finite_with_and_without_boxes() -> None:
    anchors = AnchorSettings(sizes=(16, 32), ratios=(0.5, 1.0, 2.0), stride=16)
    objectness = torch.zeros(2, 6, 3, 4, requires_grad=True)
    deltas = torch.zeros(2, 24, 3, 4, requires_grad=True)
    boxes = [torch.tensor([[10.0, 5, 30, 35]]), torch.zeros(0, 4)]
    classification, regression = rpn_loss(objectness, deltas, boxes, anchors, (45, 61))
    assert classification.item() == pytest.approx(math.log(2))  # every logit 0
    assert regression.item() > 0
    (classification + regression).backward()
    assert objectness.grad.any() and deltas.grad[0].any() and not deltas.grad[1].any()
