"""Instance models: the contract every registered one keeps (forward -> raw maps, `loss`,
`predict` -> Instances at the input's size), then InstanceFCN's parts against hand-computed
values: the assembling module, which windows are positive, inference on perfect maps, mask NMS,
and a short overfit.
"""

from __future__ import annotations

import math

import pytest
import torch

import fcnseg
from fcnseg.models import INSTANCE_MODELS, build_model, list_models, task_of
from fcnseg.models.instances import Instances
from fcnseg.models.instances.instancefcn import InstanceFCN
from fcnseg.models.instances.proposals import WindowMasks, mask_nms, paste, window_masks
from fcnseg.models.instances.windows import (
    NEGATIVE,
    OUTSIDE,
    assemble,
    crop_windows,
    instance_boxes,
    label_windows,
    sample_windows,
)

from .conftest import squares_target

# ---------------------------------------------------------------- the contract, every model


@pytest.fixture(scope="module", params=sorted(INSTANCE_MODELS))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_registry_knows_the_task_of_each_model() -> None:
    assert set(list_models(task="instance")) == set(INSTANCE_MODELS)
    assert set(list_models(task="semantic")).isdisjoint(INSTANCE_MODELS)
    assert set(list_models()) == set(list_models(task="semantic")) | set(INSTANCE_MODELS)
    assert task_of("unet") == "semantic"
    assert all(task_of(model) == "instance" for model in INSTANCE_MODELS)
    with pytest.raises(fcnseg.FcnsegError, match="Choices: "):
        task_of("instancefnc")


@pytest.mark.parametrize("size", [(45, 61), (97, 131)])
def test_predict_gives_instances_at_the_input_size(name: str, size: tuple[int, int]) -> None:
    model = build_model(name, num_classes=3).eval()
    images = torch.randn(2, 3, *size)
    with torch.no_grad():
        outputs = model(images)
    assert all(torch.isfinite(value).all() for value in outputs.values())
    found = model.predict(images)
    assert len(found) == 2
    for instances in found:
        assert isinstance(instances, Instances)
        assert instances.masks.shape[1:] == size and instances.masks.dtype == torch.bool
        assert instances.classes.shape == instances.scores.shape == (len(instances),)
        assert ((instances.classes >= 1) & (instances.classes <= 2)).all()
        assert ((instances.scores >= 0) & (instances.scores <= 1)).all()
        assert (instances.scores.diff() <= 0).all()  # best first


@pytest.mark.parametrize("num_classes", [2, 3])
def test_loss_is_finite_and_reaches_every_parameter(name: str, num_classes: int) -> None:
    model = build_model(name, num_classes=num_classes).train()
    outputs = model(torch.randn(2, 3, 45, 61))
    total, parts = model.loss(outputs, squares_target(45, 61))
    assert torch.isfinite(total) and all(torch.isfinite(value) for value in parts.values())
    assert total.item() == pytest.approx(sum(value.item() for value in parts.values()), rel=1e-5)
    names, parameters = zip(*model.named_parameters(), strict=True)
    gradients = torch.autograd.grad(total, parameters, allow_unused=True)
    unreached = [n for n, g in zip(names, gradients, strict=True) if g is None or not g.any()]
    assert not unreached, f"no gradient reaches {unreached}"


def test_unknown_option_is_an_error_listing_the_options(name: str) -> None:
    with pytest.raises(fcnseg.FcnsegError, match="Its options: "):
        build_model(name, num_classes=2, no_such_option=1)


# ---------------------------------------------------------------- InstanceFCN: shapes, options


def tiny(num_classes: int = 2, **options: object) -> InstanceFCN:
    return build_model("instancefcn", num_classes=num_classes, width=8, **options)


@pytest.mark.parametrize("backbone", ["resnet18", "vgg16"])
def test_maps_are_at_stride_8_of_the_padded_input(backbone: str) -> None:
    model = tiny(num_classes=4, backbone=backbone, grid_size=3, window_sizes=(16, 40))
    with torch.no_grad():
        outputs = model.eval()(torch.randn(1, 3, 45, 61))
    assert outputs["scores"].shape == (1, 9, 6, 8)  # ceil(45 / 8), ceil(61 / 8)
    assert outputs["objectness"].shape == (1, 2, 6, 8)  # one logit per window size
    assert outputs["semantic"].shape == (1, 4, 6, 8)


def test_impossible_options_are_refused() -> None:
    with pytest.raises(fcnseg.FcnsegError, match="multiples of 8"):
        tiny(window_sizes=(16, 20))
    with pytest.raises(fcnseg.FcnsegError, match="nms_threshold"):
        tiny(nms_threshold=1.5)
    with pytest.raises(fcnseg.FcnsegError, match="unknown backbone"):
        tiny(backbone="resnet19")


# ---------------------------------------------------------------- the assembling module


def brute_force_assemble(
    maps: torch.Tensor, image: int, row: int, col: int, cells: int
) -> torch.Tensor:
    """One window, one value at a time, from the paper's wording: offset u lies in the grid cell
    whose span [i m / k, (i + 1) m / k) holds its centre u + 1/2."""
    grid = math.isqrt(maps.shape[1])
    height, width = maps.shape[-2:]
    window = torch.zeros(cells, cells)
    for u in range(cells):
        for v in range(cells):
            i = next(i for i in range(grid) if i * cells / grid <= u + 0.5 < (i + 1) * cells / grid)
            j = next(j for j in range(grid) if j * cells / grid <= v + 0.5 < (j + 1) * cells / grid)
            y = min(max(row - cells // 2 + u, 0), height - 1)  # the map's edge cell past it
            x = min(max(col - cells // 2 + v, 0), width - 1)
            window[u, v] = maps[image, i * grid + j, y, x]
    return window


@pytest.mark.parametrize(("grid", "cells"), [(5, 21), (5, 3), (5, 2), (3, 8), (2, 4), (1, 5)])
def test_assembling_matches_a_brute_force_loop(grid: int, cells: int) -> None:
    maps = torch.randn(2, grid * grid, 7, 9)
    images, rows, cols = torch.meshgrid(
        torch.arange(2), torch.arange(7), torch.arange(9), indexing="ij"
    )
    images, rows, cols = images.flatten(), rows.flatten(), cols.flatten()
    assembled = assemble(maps, images, rows, cols, cells)  # every position, borders included
    for index in range(len(images)):
        expected = brute_force_assemble(
            maps, *map(int, (images[index], rows[index], cols[index])), cells
        )
        torch.testing.assert_close(assembled[index], expected, rtol=0, atol=0)


def coded_maps(grid: int, height: int, width: int) -> torch.Tensor:
    """(1, k*k, h, w): map c at cell (y, x) holds 100 c + 10 y + x, so each value names its
    source."""
    channel = torch.arange(grid * grid)[:, None, None]
    rows, cols = torch.arange(height)[:, None], torch.arange(width)[None]
    return (100 * channel + 10 * rows + cols)[None].float()


def test_assembling_by_hand() -> None:
    one = torch.zeros(1, dtype=torch.int64)
    # k = 2, m = 4: each grid cell is 2 x 2 offsets; the window at (2, 2) covers rows/cols 0..3.
    window = assemble(coded_maps(2, 5, 5), one, one + 2, one + 2, 4)[0]
    expected = [[0, 1, 102, 103], [10, 11, 112, 113], [220, 221, 322, 323], [230, 231, 332, 333]]
    assert window.tolist() == expected
    # k = 5, m = 3: the three offsets take grid cells 0, 2, 4 (symmetric), maps 5 i + j.
    window = assemble(coded_maps(5, 3, 3), one, one + 1, one + 1, 3)[0]
    assert window.tolist() == [[0, 201, 402], [1010, 1211, 1412], [2020, 2221, 2422]]


def test_assembling_passes_gradients_to_the_copied_scores_only() -> None:
    maps = torch.zeros(1, 4, 5, 5, requires_grad=True)
    one = torch.zeros(1, dtype=torch.int64)
    assemble(maps, one, one + 2, one + 2, 4).sum().backward()
    assert maps.grad.sum() == 16
    assert maps.grad[0, 0, :2, :2].eq(1).all() and maps.grad[0, 0, 2:].eq(0).all()
    assert maps.grad[0, 3, 2:4, 2:4].eq(1).all() and maps.grad[0, 3, :2].eq(0).all()


# ---------------------------------------------------------------- which windows are positive


def one_instance(height: int = 64, width: int = 64, instance: int = 7) -> torch.Tensor:
    """An (H, W) ID map with a 20 x 20 instance at rows 20..39, columns 28..47 (centre 30, 38)."""
    ids = torch.zeros(height, width, dtype=torch.int64)
    ids[20:40, 28:48] = instance
    return ids


def test_boxes_are_half_open_per_instance() -> None:
    ids = one_instance()
    ids[0, 63] = 3
    instances, boxes = instance_boxes(ids)
    assert instances.tolist() == [3, 7]
    assert boxes.tolist() == [[0, 63, 1, 64], [20, 28, 40, 48]]


def test_a_hand_placed_instance_is_positive_where_it_is_centred_and_fits() -> None:
    # By hand, stride 8. L = 24 (m = 3) at (3, 4): centre (28, 36), pixels 16..39 x 24..47: the
    # box fits, 2 px off-centre. L = 40 (m = 5) at (3, 4): centre (28, 36), pixels 8..47 x
    # 16..55. L = 16 is too small to hold it; L = 64 too large (20 < 0.4 * 64).
    _, boxes = instance_boxes(one_instance())
    labels = label_windows(boxes, (16, 24, 40, 64), 8, (8, 8), (64, 64))
    assert torch.nonzero(labels >= 0).tolist() == [[1, 3, 4], [2, 3, 4]]
    assert labels[labels < 0].eq(NEGATIVE).all()  # all centres are in the image


def test_windows_centred_in_the_padding_are_neither_positive_nor_negative() -> None:
    _, boxes = instance_boxes(one_instance(60, 60))
    labels = label_windows(boxes, (40,), 8, (8, 8), (60, 60))
    # m = 5: centres at 8 y + 4, so row / column 7 (centre 60) lies in the padding
    assert labels[0, 7].eq(OUTSIDE).all() and labels[0, :, 7].eq(OUTSIDE).all()
    assert labels[0, :7, :7].ne(OUTSIDE).all()


def test_a_window_positive_for_two_instances_takes_the_one_nearest_its_centre() -> None:
    ids = torch.zeros(64, 64, dtype=torch.int64)
    ids[16:48, 16:48] = 1
    ids[20:44, 20:44] = 0  # a ring, box 16..47 (centre 32) ...
    ids[26:42, 26:42] = 2  # ... around a square, box 26..41 (centre 34)
    _, boxes = instance_boxes(ids)
    labels = label_windows(boxes, (40,), 8, (8, 8), (64, 64))
    # L = 40 (m = 5): centres at 8 y + 4, tolerance 4 px, both fit the windows they centre on.
    assert labels[0, 4, 4].item() == 1  # centre 36: the square 2 px off, the ring 4 px
    assert labels[0, 3, 3].item() == 0  # centre 28: the ring only (the square is 6 px off)


def test_sampling_balances_positives_and_negatives() -> None:
    ids = one_instance(61, 59)[None]  # not multiples of 8
    windows = sample_windows(ids, (16, 24, 40, 64), 8, (8, 8), windows_per_image=256)
    positive = windows.positive
    assert positive.sum() == 2 and windows.instances[positive].eq(7).all()
    chosen = torch.stack([windows.sizes, windows.rows, windows.cols], dim=1)[positive]
    assert sorted(chosen.tolist()) == [[1, 3, 4], [2, 3, 4]]
    assert (~positive).sum() == 256 // 8  # at least 1/8 of the windows, as positives are few
    several = sample_windows(ids.expand(3, -1, -1), (24, 40), 8, (8, 8), windows_per_image=8)
    assert several.images.bincount().tolist() == [4, 4, 4]  # 2 positives, as many negatives


# ---------------------------------------------------------------- inference on perfect maps


def perfect_outputs() -> dict[str, torch.Tensor]:
    """The maps a perfect k = 2 network gives for two touching 16 x 16 squares in a 40 x 44
    image: A at pixels 16..31 x 8..23 (feature cells 2..3 x 1..2), B at 16..31 x 24..39 (cells
    2..3 x 3..4). Score map (i, j) is positive exactly on each square's (i, j) quadrant, so a
    32-pixel window (m = 4, 2 x 2 cells per grid cell) centred on either assembles that square
    alone: the other's quadrants come from the wrong maps. A semantic map would merge them."""
    scores = torch.full((1, 4, 5, 6), -10.0)
    for left in (1, 3):  # A, B
        for i in range(2):
            for j in range(2):
                scores[0, 2 * i + j, 2 + i, left + j] = 10.0
    objectness = torch.full((1, 2, 5, 6), -10.0)
    objectness[0, 1, 3, 2], objectness[0, 1, 3, 4] = 3.0, 2.0  # size 32, centred on A, B
    semantic = torch.zeros(1, 3, 5, 6)
    semantic[0, 2, :, :3], semantic[0, 1, :, 3:] = 5.0, 5.0  # A's side class 2, B's class 1
    return {"scores": scores, "objectness": objectness, "semantic": semantic}


def rounded_square(height: int, width: int, top: int, left: int) -> torch.Tensor:
    """(H, W) a 16 x 16 square less 6 pixels at each corner: what bilinear upsampling of a 2 x 2
    cell square (+10) in negative cells (-10) keeps. By hand, at corner offsets a, b >= 0 the
    weights of the inside cell multiply to (9/16 + a/8)(9/16 + b/8), which must exceed 1/2:
    it does not for (a, b) in (0, 0..2), (1, 0..1), (2, 0)."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[top : top + 16, left : left + 16] = True
    corner = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=torch.bool)  # the cut
    for flip_rows in (False, True):
        for flip_cols in (False, True):
            cut = corner.flip(0) if flip_rows else corner
            cut = cut.flip(1) if flip_cols else cut
            rows = slice(top + 13, top + 16) if flip_rows else slice(top, top + 3)
            cols = slice(left + 13, left + 16) if flip_cols else slice(left, left + 3)
            mask[rows, cols] &= ~cut
    return mask


def test_perfect_maps_give_both_touching_squares_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny(num_classes=3, grid_size=2, window_sizes=(16, 32)).eval()
    monkeypatch.setattr(model, "forward", lambda images: perfect_outputs())
    (found,) = model.predict(torch.zeros(1, 3, 40, 44))  # padded to 40 x 48 and cropped back
    expected = torch.stack([rounded_square(40, 44, 16, 8), rounded_square(40, 44, 16, 24)])
    assert found.masks.shape == (2, 40, 44)
    assert torch.equal(found.masks, expected)  # IoU 1 with each, and no pixel shared
    assert (found.masks[0, 19:29, 23] & found.masks[1, 19:29, 24]).all()  # touching
    assert found.classes.tolist() == [2, 1]
    torch.testing.assert_close(found.scores, torch.tensor([3.0, 2.0]).sigmoid())
    assert found.id_map().unique().tolist() == [0, 1, 2]


def test_no_window_above_the_threshold_gives_empty_instances() -> None:
    model = tiny(num_classes=3, score_threshold=1.0).eval()
    (found,) = model.predict(torch.randn(1, 3, 33, 47))
    assert len(found) == 0 and found.masks.shape == (0, 33, 47)
    assert found.classes.dtype == torch.int64


# ---------------------------------------------------------------- mask NMS


def window(top: int, left: int, rows: slice, cols: slice) -> tuple[torch.Tensor, int, int]:
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[rows, cols] = True
    return mask, top, left


def hand_windows() -> tuple[WindowMasks, torch.Tensor]:
    """4 x 4 windows; in image pixels: A rows 0-1 x cols 0-3, B rows 0-1 x 1-4, C rows 0-1 x
    2-5 (8 pixels each), D empty. IoU(A, B) = 6 / 10, IoU(A, C) = 4 / 12, IoU(B, C) = 6 / 10."""
    parts = [
        window(0, 0, slice(0, 2), slice(0, 4)),  # A
        window(-1, 1, slice(1, 3), slice(0, 4)),  # B, its window starting above the image
        window(0, 2, slice(0, 2), slice(0, 4)),  # C
        window(0, 0, slice(0, 0), slice(0, 0)),  # D
    ]
    masks, tops, lefts = zip(*parts, strict=True)
    windows = WindowMasks(torch.stack(masks), torch.tensor(tops), torch.tensor(lefts))
    return windows, torch.tensor([0.9, 0.8, 0.7, 0.95])


@pytest.mark.parametrize(
    ("threshold", "limit", "kept"),
    [
        (0.5, 10, [0, 2]),  # B goes (0.6 with A); C stays: only kept masks suppress
        (0.65, 10, [0, 1, 2]),  # no IoU above 0.65
        (0.3, 10, [0]),  # C overlaps A by 1/3
        (0.5, 1, [0]),  # the cap
    ],
)
def test_mask_nms_by_hand(threshold: float, limit: int, kept: list[int]) -> None:
    windows, scores = hand_windows()
    assert mask_nms(windows, scores, threshold, limit).tolist() == kept


def test_paste_clips_windows_to_the_image() -> None:
    windows, _ = hand_windows()
    pasted = paste(windows, (2, 5))
    assert pasted.shape == (4, 2, 5)
    assert pasted[1].tolist() == [[False, True, True, True, True]] * 2
    assert pasted[2].sum() == 6  # column 5 is outside
    assert not pasted[3].any()


def test_window_masks_are_empty_outside_the_image() -> None:
    scores = torch.full((4, 3, 3), 10.0)  # every pixel of every window is "instance"
    one = torch.ones(1, dtype=torch.int64)
    windows = window_masks(scores, one * 0, one * 2, one * 2, (24,), 8, (20, 21))
    # m = 3 at (2, 2): pixels 8..31 x 8..31, of which 8..19 x 8..20 are in the image
    assert windows.tops.tolist() == [8] and windows.lefts.tolist() == [8]
    assert windows.masks[0].sum() == 12 * 13 and windows.masks[0, :12, :13].all()


# ---------------------------------------------------------------- training


def test_crops_flag_what_lies_outside_the_map() -> None:
    maps = torch.arange(20).view(1, 4, 5)  # row r, column c holds 5 r + c
    one = torch.zeros(1, dtype=torch.int64)
    values, inside = crop_windows(maps, one, one - 2, one + 3, 3)  # rows -2..0, columns 3..5
    assert inside[0].tolist() == [[False] * 3, [False] * 3, [True, True, False]]
    assert values[0].tolist() == [[3, 4, 4]] * 3  # outside: the nearest edge value


def test_mask_loss_counts_labelled_pixels_of_positive_windows_only() -> None:
    model = tiny(window_sizes=(16, 24, 40))
    outputs = {"scores": torch.full((1, 25, 5, 5), 10.0), "objectness": torch.zeros(1, 3, 5, 5)}
    target = torch.zeros(1, 2, 40, 40, dtype=torch.int64)
    target[0, 1] = 255  # void everywhere but the instance
    target[0, :, 12:28, 12:28] = 1
    _, parts = model.loss(outputs, target)  # every window pixel predicted "instance"
    assert parts["mask"] < 1e-3  # ... which every labelled pixel is: void counts for nothing
    assert parts["objectness"].item() == pytest.approx(math.log(2))
    target[0, 1][target[0, 0] == 0] = 0  # the same pixels labelled background
    _, parts = model.loss(outputs, target)
    assert parts["mask"] > 1  # about 10 for each background pixel
    _, parts = model.loss(outputs, torch.zeros_like(target))  # nothing positive
    assert parts["mask"] == 0


def test_a_few_steps_learn_two_images_of_two_touching_squares() -> None:
    torch.manual_seed(0)
    model = tiny(window_sizes=(16, 24, 40)).train()
    images = torch.zeros(2, 3, 48, 48)
    target = torch.zeros(2, 2, 48, 48, dtype=torch.int64)
    for index, (top, left) in enumerate([(8, 8), (20, 16)]):
        for instance, (size, shift) in enumerate([(12, 0), (14, 12)], start=1):
            rows, cols = slice(top, top + size), slice(left + shift, left + shift + size)
            target[index, :, rows, cols] = torch.tensor([instance, 1])[:, None, None]
            images[index, instance - 1, rows, cols] = 2.0  # touching, in different colours
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        total, _ = model.loss(model(images), target)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert sum(losses[-5:]) / 5 < 0.25 * sum(losses[:5]) / 5, losses
    for found, ids in zip(model.eval().predict(images), target[:, 0], strict=True):
        assert len(found) == 2  # both touching squares, each once
        for instance in (1, 2):
            truth = ids == instance
            iou = (found.masks & truth).sum((1, 2)) / (found.masks | truth).sum((1, 2))
            assert iou.max() > 0.7, iou  # 0.83 to 0.95 when written
