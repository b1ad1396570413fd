"""FCIS's ROI geometry: position-sensitive pooling against a slow, obviously-correct loop (values
and gradients), masks sampled inside ROIs, masks pasted back, detection selection and voting."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fcnseg.models.instances.psroi import (
    covering_window,
    paste_masks,
    position_sensitive_pool,
    sample_in_boxes,
    select_detections,
    vote_masks,
)


def brute_force_pool(
    maps: torch.Tensor, image: int, box: list[float], stride: int, grid: int, pooled: int
) -> torch.Tensor:
    """One ROI, one bin at a time, as the reference's kernel reads: bin p spans the cells
    [floor(start + p b), ceil(start + (p + 1) b)), clipped; the map of output d and group
    (floor(p k / P), floor(q k / P)); the mean of its cells, 0 when empty."""
    _, channels, height, width = maps.shape
    outputs = channels // (grid * grid)
    x0, y0, x1, y1 = (value / stride for value in box)
    bin_h, bin_w = max(y1 - y0, 0.1) / pooled, max(x1 - x0, 0.1) / pooled
    values = []
    for d in range(outputs):
        for p in range(pooled):
            for q in range(pooled):
                top = min(max(math.floor(y0 + p * bin_h), 0), height)
                bottom = min(max(math.ceil(y0 + (p + 1) * bin_h), 0), height)
                left = min(max(math.floor(x0 + q * bin_w), 0), width)
                right = min(max(math.ceil(x0 + (q + 1) * bin_w), 0), width)
                group_row = min(p * grid // pooled, grid - 1)
                group_col = min(q * grid // pooled, grid - 1)
                channel = (d * grid + group_row) * grid + group_col
                cells = maps[image, channel, top:bottom, left:right]
                values.append(cells.mean() if cells.numel() else maps.new_zeros(()))
    return torch.stack(values).view(outputs, pooled, pooled)


def random_rois(count: int, image_size: tuple[int, int], batch: int) -> tuple[torch.Tensor, ...]:
    """ROIs of every kind: inside, crossing the border, tiny (under a cell), outside."""
    height, width = image_size
    corners = torch.rand(count, 2, dtype=torch.float64) * torch.tensor([width, height]) * 1.2 - 8
    sizes = torch.rand(count, 2, dtype=torch.float64) * 60
    sizes[::5] = 0.5  # smaller than a cell
    boxes = torch.cat([corners, corners + sizes], dim=1)
    return torch.randint(batch, (count,)), boxes


@pytest.mark.parametrize(("grid", "pooled", "stride"), [(7, 21, 16), (3, 7, 8), (2, 4, 16)])
def test_pooling_matches_a_brute_force_loop(grid: int, pooled: int, stride: int) -> None:
    torch.manual_seed(0)
    maps = torch.randn(2, 2 * grid * grid, 6, 8, dtype=torch.float64)
    images, boxes = random_rois(12, (6 * stride, 8 * stride), 2)
    pooled_values = position_sensitive_pool(maps, images, boxes, stride, grid, pooled)
    assert pooled_values.shape == (12, 2, pooled, pooled)
    for index in range(12):
        expected = brute_force_pool(
            maps, int(images[index]), boxes[index].tolist(), stride, grid, pooled
        )
        torch.testing.assert_close(pooled_values[index], expected, rtol=1e-9, atol=1e-9)


def test_pooling_gradients_match_the_loop() -> None:
    torch.manual_seed(0)
    maps = torch.randn(1, 2 * 4, 5, 5, dtype=torch.float64, requires_grad=True)
    images, boxes = random_rois(6, (40, 40), 1)
    weights = torch.randn(6, 2, 4, 4, dtype=torch.float64)
    pooled = position_sensitive_pool(maps, images, boxes, 8, 2, 4)
    (gradient,) = torch.autograd.grad((pooled * weights).sum(), maps)
    loop = torch.stack([brute_force_pool(maps, 0, box.tolist(), 8, 2, 4) for box in boxes])
    (expected,) = torch.autograd.grad((loop * weights).sum(), maps)
    assert expected.any()
    torch.testing.assert_close(gradient, expected, rtol=1e-9, atol=1e-9)


def test_pooling_by_hand() -> None:
    # k = 2, P = 2, stride 1: a 4 x 4 ROI at the origin; bin (p, q) averages the 2 x 2 cells
    # of its quadrant in map 2 p + q.
    maps = torch.arange(4 * 16, dtype=torch.float32).view(1, 4, 4, 4)
    box = torch.tensor([[0.0, 0, 4, 4]])
    pooled = position_sensitive_pool(maps, torch.zeros(1, dtype=torch.int64), box, 1, 2, 2)
    expected = [[(0 + 1 + 4 + 5) / 4, 16 + (2 + 3 + 6 + 7) / 4],
                [32 + (8 + 9 + 12 + 13) / 4, 48 + (10 + 11 + 14 + 15) / 4]]  # fmt: skip
    assert pooled[0, 0].tolist() == expected


def test_sampling_in_boxes_reads_pixels_at_bin_centres() -> None:
    maps = torch.rand(2, 10, 12)
    images = torch.tensor([1, 0])
    boxes = torch.tensor([[2.0, 3, 7, 8], [-2.0, -2, 3, 3]])  # 5 x 5: bin centres on pixels
    sampled = sample_in_boxes(maps, images, boxes, 5)
    torch.testing.assert_close(sampled[0], maps[1, 3:8, 2:7])
    assert sampled[1, :2].eq(0).all() and sampled[1, :, :2].eq(0).all()  # outside the map
    torch.testing.assert_close(sampled[1, 2:, 2:], maps[0, :3, :3])
    # between pixel centres: the mean of the two neighbours
    half = sample_in_boxes(maps, images[:1], torch.tensor([[2.5, 3.0, 3.5, 4.0]]), 1)
    torch.testing.assert_close(half[0, 0, 0], (maps[1, 3, 2] + maps[1, 3, 3]) / 2)


def test_sampling_an_instance_of_an_id_map() -> None:
    ids = torch.zeros(1, 8, 8, dtype=torch.int64)
    ids[0, 0:4, 0:4], ids[0, 4:8, 0:4] = 3, 5
    box = torch.tensor([[0.0, 0, 4, 8]])  # left half: instance 3 on top, 5 below
    sampled = sample_in_boxes(ids, torch.zeros(1, dtype=torch.int64), box, 2, torch.tensor([5]))
    assert sampled[0].tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_pasting_is_bilinear_resizing_into_the_box() -> None:
    masks = torch.rand(2, 4, 4)
    boxes = torch.tensor([[3.0, 2, 11, 14], [0, 0, 4, 4]])
    pasted = paste_masks(masks, boxes, (0, 0, 16, 16))
    resized = F.interpolate(masks[:1, None], size=(12, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(pasted[0, 2:14, 3:11], resized[0, 0])
    assert pasted[0].sum() == pytest.approx(resized.sum().item(), rel=1e-5)  # 0 outside
    torch.testing.assert_close(pasted[1, :4, :4], masks[1])
    window = paste_masks(masks, boxes, (3, 2, 11, 14))  # a window: the same pixels
    torch.testing.assert_close(window[0], pasted[0, 2:14, 3:11])


def test_covering_window_stays_in_the_image() -> None:
    boxes = torch.tensor([[-3.0, 2.5, 10.2, 8], [4, 1, 30, 7]])
    assert covering_window(boxes, (20, 25)) == (0, 1, 25, 8)


def test_detections_are_selected_per_class_with_box_nms() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [30, 30, 40, 40], [0, 0, 0.5, 9]])
    probabilities = torch.tensor(
        [[0.1, 0.9, 0.0], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.0, 1.0, 0.0]]
    )
    chosen, classes, scores = select_detections(boxes, probabilities, 0.25, 0.3, 10)
    # class 1: ROI 0, ROI 1 suppressed (IoU 0.82), ROI 3 too thin; class 2: ROIs 2 and 1
    assert chosen.tolist() == [0, 2, 1] and classes.tolist() == [1, 2, 2]
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.7, 0.3]))
    chosen, _, _ = select_detections(boxes, probabilities, 0.25, 0.3, 2)
    assert chosen.tolist() == [0, 2]


def test_mask_voting_by_hand() -> None:
    # Three ROIs on a 12 x 12 image, masks 2 x 2 (one bin per 4 x 4 pixels of an 8 x 8 box):
    # A and B share the box (0, 0, 8, 8); C lies far away and does not vote.
    boxes = torch.tensor([[0.0, 0, 8, 8], [0, 0, 8, 8], [8, 8, 12, 12]])
    masks = torch.zeros(3, 2, 2, 2)
    masks[0, 1] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # A: the top half
    masks[1, 1] = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # B: the left half
    masks[2, 1] = 1.0
    probabilities = torch.tensor([[0.1, 0.9], [0.3, 0.7], [0.0, 1.0]])
    expected_a = F.interpolate(masks[:2, 1:], size=(8, 8), mode="bilinear", align_corners=False)
    votes = (expected_a[:, 0] >= 0.4).float()  # each voter thresholded at 0.4 ...
    votes = (votes[0] * 0.9 + votes[1] * 0.7) / 1.6  # ... weighted by its score
    voted = vote_masks(boxes, probabilities, masks, torch.tensor([0]), torch.tensor([1]),
                       (12, 12), 0.5, 0.4)  # fmt: skip
    assert voted.shape == (1, 12, 12)
    assert torch.equal(voted[0, :8, :8], votes >= 0.4)
    assert not voted[0, 8:].any() and not voted[0, :, 8:].any()
    # A's top half holds 0.9 / 1.6 >= 0.4 alone; B's left half outside it, 0.7 / 1.6, too
    assert voted[0, 0, 7] and voted[0, 7, 0] and not voted[0, 7, 7]
