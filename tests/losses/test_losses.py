"""Losses: hand-computed values on tiny inputs, PyTorch references, and the contract's promises.

Most hand computations use one row of pixels whose two-class logits are (0, ln 3), so that
p = (1/4, 3/4) exactly; the ignored pixel (label 255) must change nothing.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from fcnseg.config import LossConfig, LossTerm, load_config
from fcnseg.errors import FcnsegError
from fcnseg.losses import (
    LOSSES,
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    LovaszSoftmaxLoss,
    TverskyLoss,
    build_loss,
    count_class_pixels,
    median_frequency_weights,
    resolve_class_weights,
)
from fcnseg.metrics.confusion import ConfusionMatrix

LN3 = math.log(3.0)
IGNORE = 255


def two_class_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels a (truth 1), b (truth 0), c (ignored), all with p = (1/4, 3/4): (1, 2, 1, 3)."""
    logits = torch.tensor([[0.0, 0.0, 5.0], [LN3, LN3, -7.0]]).reshape(1, 2, 1, 3)
    mask = torch.tensor([[[1, 0, IGNORE]]])
    return logits, mask


def binary_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    """One sigmoid logit: p = 3/4, 3/4, 1/4 with truth 1, 0, 1, and an ignored 4th pixel."""
    logits = torch.tensor([LN3, LN3, -LN3, 9.0]).reshape(1, 1, 1, 4)
    mask = torch.tensor([[[1, 0, 1, IGNORE]]])
    return logits, mask


def random_batch(num_classes: int, seed: int = 0, scale: float = 3.0):
    generator = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(2, max(num_classes, 1), 5, 7, generator=generator)
    mask = torch.randint(0, max(num_classes, 2), (2, 5, 7), generator=generator)
    mask[torch.rand(2, 5, 7, generator=generator) < 0.3] = IGNORE
    return logits, mask


ALL_LOSSES = [
    ("cross_entropy", {}),
    ("cross_entropy", {"label_smoothing": 0.1}),
    ("focal", {"gamma": 2.0}),
    ("focal", {"gamma": 0.5, "alpha": 0.25}),
    ("dice", {}),
    ("tversky", {}),
    ("lovasz", {}),
    ("lovasz", {"per_image": True, "classes": "all"}),
]
BINARY_LOSSES = [
    ("binary_cross_entropy", {}),
    ("binary_cross_entropy", {"pos_weight": 3.0}),
    ("focal", {"alpha": 0.25}),
    ("dice", {}),
    ("tversky", {}),
    ("lovasz", {}),
]


# --- hand-computed values -------------------------------------------------------------------


def test_cross_entropy_by_hand_and_against_pytorch():
    logits, mask = two_class_pixels()
    # a: -ln(3/4), b: -ln(1/4); c ignored.
    expected = (math.log(4 / 3) + math.log(4)) / 2
    assert CrossEntropyLoss()(logits, mask).item() == pytest.approx(expected, rel=1e-6)
    # Class weights (1, 3): a weighs 3, b weighs 1; the mean divides by the weights' sum.
    weights = torch.tensor([1.0, 3.0])
    expected = (3 * math.log(4 / 3) + 1 * math.log(4)) / 4
    got = CrossEntropyLoss(class_weights=weights)(logits, mask)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # Label smoothing 0.2 over 2 classes: targets become (0.1, 0.9) for a, (0.9, 0.1) for b.
    a = -(0.9 * math.log(3 / 4) + 0.1 * math.log(1 / 4))
    b = -(0.9 * math.log(1 / 4) + 0.1 * math.log(3 / 4))
    got = CrossEntropyLoss(label_smoothing=0.2)(logits, mask)
    assert got.item() == pytest.approx((a + b) / 2, rel=1e-6)

    logits, mask = random_batch(4)
    for options in ({}, {"weight": torch.tensor([0.5, 1, 2, 4])}, {"label_smoothing": 0.1}):
        reference = F.cross_entropy(logits, mask, ignore_index=IGNORE, **options)
        if "weight" in options:
            options = {"class_weights": options["weight"]}
        got = CrossEntropyLoss(**options)(logits, mask)
        assert got.item() == pytest.approx(reference.item(), rel=1e-5)


def test_binary_cross_entropy_by_hand_and_against_pytorch():
    logits, mask = binary_pixels()
    # -ln(3/4) for p = 3/4 truth 1; -ln(1/4) for p = 3/4 truth 0; -ln(1/4) for p = 1/4 truth 1.
    expected = (math.log(4 / 3) + math.log(4) + math.log(4)) / 3
    assert build_loss(_terms("binary_cross_entropy"), 1)(logits, mask).item() == pytest.approx(
        expected, rel=1e-6
    )
    logits, mask = random_batch(1)
    valid = mask != IGNORE
    reference = F.binary_cross_entropy_with_logits(
        logits[:, 0][valid], mask[valid].float(), pos_weight=torch.tensor(3.0)
    )
    got = build_loss(_terms("binary_cross_entropy", pos_weight=3.0), 1)(logits, mask)
    assert got.item() == pytest.approx(reference.item(), rel=1e-5)


def test_focal_by_hand():
    logits, mask = two_class_pixels()
    # gamma 2: a has p_t = 3/4 -> (1/4)^2 ln(4/3); b has p_t = 1/4 -> (3/4)^2 ln 4.
    expected = ((1 / 16) * math.log(4 / 3) + (9 / 16) * math.log(4)) / 2
    assert FocalLoss(gamma=2.0)(logits, mask).item() == pytest.approx(expected, rel=1e-6)
    # Binary, alpha 0.25 for the foreground, 0.75 for the background:
    # p_t = 3/4 (truth 1), 1/4 (truth 0), 1/4 (truth 1).
    logits, mask = binary_pixels()
    expected = (
        0.25 * (1 / 16) * math.log(4 / 3)
        + 0.75 * (9 / 16) * math.log(4)
        + 0.25 * (9 / 16) * math.log(4)
    ) / 3
    got = FocalLoss(gamma=2.0, alpha=0.25)(logits, mask)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, mask = random_batch(4)
    reference = F.cross_entropy(logits, mask, ignore_index=IGNORE)
    assert FocalLoss(gamma=0.0)(logits, mask).item() == pytest.approx(reference.item(), rel=1e-5)
    logits, mask = random_batch(1)
    valid = mask != IGNORE
    reference = F.binary_cross_entropy_with_logits(logits[:, 0][valid], mask[valid].float())
    assert FocalLoss(gamma=0.0)(logits, mask).item() == pytest.approx(reference.item(), rel=1e-5)


def test_dice_and_tversky_by_hand():
    logits, mask = two_class_pixels()
    # p0 = (1/4, 1/4), p1 = (3/4, 3/4) at a (truth 1), b (truth 0).
    # class 0: TP = 1/4, sum p = 1/2, sum truth = 1 -> Dice = (1/2) / (3/2) = 1/3
    # class 1: TP = 3/4, sum p = 3/2, sum truth = 1 -> Dice = (3/2) / (5/2) = 3/5
    assert DiceLoss(smooth=0)(logits, mask).item() == pytest.approx(1 - (1 / 3 + 3 / 5) / 2)
    # Class weights (1, 3): (1 * 2/3 + 3 * 2/5) / 4.
    weighted = DiceLoss(smooth=0, class_weights=torch.tensor([1.0, 3.0]))(logits, mask)
    assert weighted.item() == pytest.approx((2 / 3 + 3 * 2 / 5) / 4)
    # Tversky alpha 0.3 (FP), beta 0.7 (FN):
    # class 0: TP 1/4, FP 1/4, FN 3/4 -> 0.25 / (0.25 + 0.075 + 0.525) = 5/17
    # class 1: TP 3/4, FP 3/4, FN 1/4 -> 0.75 / (0.75 + 0.225 + 0.175) = 15/23
    got = TverskyLoss(alpha=0.3, beta=0.7, smooth=0)(logits, mask)
    assert got.item() == pytest.approx(1 - (5 / 17 + 15 / 23) / 2)
    # Binary Dice scores the foreground only: p = (3/4, 3/4, 1/4), truth (1, 0, 1):
    # TP = 3/4 + 1/4 = 1, sum p = 7/4, sum truth = 2 -> Dice = 2 / (15/4) = 8/15.
    logits, mask = binary_pixels()
    assert DiceLoss(smooth=0)(logits, mask).item() == pytest.approx(1 - 8 / 15)


def test_lovasz_by_hand():
    # Pixels a, b, c with p1 = 0.8, 0.6, 0.3 and truth 1, 0, 1 (d ignored). Errors |truth - p|
    # are 0.2, 0.6, 0.7 for both classes; sorted descending: c, b, a.
    # class 1: truth sorted (1, 0, 1), 2 pixels. Jaccard loss after 1, 2, 3 pixels:
    #   1 - 1/2, 1 - 1/3, 1 - 0/3 = 1/2, 2/3, 1 -> increments 1/2, 1/6, 1/3
    #   loss = 0.7/2 + 0.6/6 + 0.2/3 = 31/60
    # class 0: truth sorted (0, 1, 0), 1 pixel: 1 - 1/2, 1 - 0/2, 1 - 0/3 -> increments 1/2, 1/2, 0
    #   loss = 0.7/2 + 0.6/2 + 0 = 39/60
    p1 = torch.tensor([0.8, 0.6, 0.3, 0.5])
    logits = torch.stack([torch.zeros(4), torch.log(p1 / (1 - p1))]).reshape(1, 2, 1, 4)
    mask = torch.tensor([[[1, 0, 1, IGNORE]]])
    got = LovaszSoftmaxLoss()(logits, mask)
    assert got.item() == pytest.approx((31 / 60 + 39 / 60) / 2, rel=1e-6)
    # The binary form (the Lovasz hinge) is checked by hand in test_region.py.


def test_lovasz_of_a_hard_prediction_is_one_minus_iou():
    """At one-hot probabilities the Lovasz extension equals the Jaccard loss it extends."""
    logits, mask = random_batch(4, seed=3)
    hard = 1e4 * F.one_hot(logits.argmax(1), 4).permute(0, 3, 1, 2).float()
    matrix = ConfusionMatrix(4, IGNORE)
    matrix.update(hard.argmax(1), mask)
    iou = torch.tensor(matrix.compute().per_class_iou)
    present = torch.bincount(mask[mask != IGNORE], minlength=4) > 0
    expected = (1 - iou[present]).mean().item()
    assert LovaszSoftmaxLoss()(hard, mask).item() == pytest.approx(expected, rel=1e-6)


def test_median_frequency_weights_by_hand():
    masks = [torch.tensor([[0, 0], [0, 1]]), torch.tensor([[0, 0, 2, 2, IGNORE]])]
    # labelled pixels: 4 and 4. class 0: 5 / 8; class 1: 1 / 4; class 2: 2 / 4; class 3: absent.
    # median(5/8, 1/4, 1/2) = 1/2 -> weights (1/2)/(5/8), (1/2)/(1/4), (1/2)/(1/2), 1.
    pixels, presence = count_class_pixels(masks, 4, IGNORE)
    assert pixels.tolist() == [5, 1, 2, 0] and presence.tolist() == [8, 4, 4, 0]
    weights = median_frequency_weights(pixels, presence).tolist()
    assert weights == pytest.approx([4 / 5, 2.0, 1.0, 1.0])
    config = LossConfig(class_weights="median_frequency")
    counts = lambda: (pixels, presence)  # noqa: E731
    assert resolve_class_weights(config, counts).class_weights == weights
    gentle = LossConfig(class_weights="sqrt_median_frequency")
    gentle_weights = resolve_class_weights(gentle, counts).class_weights
    assert gentle_weights == pytest.approx([math.sqrt(4 / 5), math.sqrt(2.0), 1.0, 1.0])
    with pytest.raises(FcnsegError, match="Did you mean 'median_frequency'"):
        resolve_class_weights(LossConfig(class_weights="median_frequncy"), counts)


# --- the contract's promises, for every loss ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "num_classes"),
    [(*case, 4) for case in ALL_LOSSES] + [(*case, 1) for case in BINARY_LOSSES],
)
def test_ignored_pixels_change_nothing(name: str, options: dict, num_classes: int):
    loss = build_loss(_terms(name, **options), num_classes, IGNORE)
    logits, mask = random_batch(num_classes, seed=1)
    logits.requires_grad_(True)
    value = loss(logits, mask)
    value.backward()
    ignored = (mask == IGNORE)[:, None].expand_as(logits)
    assert torch.all(logits.grad[ignored] == 0)
    wild = logits.detach().clone()
    wild[ignored] = 1e4 * torch.randn(int(ignored.sum()))
    assert loss(wild, mask).item() == pytest.approx(value.item(), rel=1e-6)


@pytest.mark.parametrize(("name", "options"), ALL_LOSSES[:7])
def test_pooled_losses_equal_the_loss_over_the_labelled_pixels_alone(name: str, options: dict):
    """Dropping the ignored pixels outright gives the same value as masking them."""
    loss = build_loss(_terms(name, **options), 4, IGNORE)
    logits, mask = random_batch(4, seed=2)
    valid = mask != IGNORE
    kept_logits = logits.permute(1, 0, 2, 3)[:, valid].reshape(1, 4, 1, -1)
    kept_mask = mask[valid].reshape(1, 1, -1)
    assert loss(logits, mask).item() == pytest.approx(loss(kept_logits, kept_mask).item(), 1e-5)


@pytest.mark.parametrize(("name", "options"), ALL_LOSSES[:1] + ALL_LOSSES[2:])
def test_a_perfect_prediction_costs_about_nothing(name: str, options: dict):
    _, mask = random_batch(4, seed=4)
    logits = 50.0 * F.one_hot(torch.where(mask == IGNORE, 0, mask), 4).permute(0, 3, 1, 2)
    assert build_loss(_terms(name, **options), 4)(logits.float(), mask).item() < 1e-6


@pytest.mark.parametrize(("name", "options"), BINARY_LOSSES)
def test_a_perfect_binary_prediction_costs_about_nothing(name: str, options: dict):
    _, mask = random_batch(1, seed=5)
    logits = torch.where(mask == 1, 50.0, -50.0)[:, None]
    assert build_loss(_terms(name, **options), 1)(logits, mask).item() < 1e-6


@pytest.mark.parametrize("binary", [False, True])
def test_extreme_logits_give_finite_losses_and_gradients(binary: bool):
    chosen = BINARY_LOSSES if binary else ALL_LOSSES
    num_classes = 1 if binary else 4
    _, mask = random_batch(num_classes, seed=6)
    signs = torch.randint(0, 2, (2, num_classes, 5, 7), generator=torch.Generator().manual_seed(0))
    for name, options in chosen:
        logits = (1e4 * (2 * signs - 1)).float().requires_grad_(True)
        value = build_loss(_terms(name, **options), num_classes)(logits, mask)
        value.backward()
        assert torch.isfinite(value), name
        assert torch.isfinite(logits.grad).all(), name
        assert value.item() > 0, name  # some pixels are confidently wrong


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_batch_with_no_labelled_pixel_costs_nothing(name: str):
    num_classes = 1 if name == "binary_cross_entropy" else 3
    logits = torch.randn(2, num_classes, 4, 4, requires_grad=True)
    value = build_loss(_terms(name), num_classes)(logits, torch.full((2, 4, 4), IGNORE))
    value.backward()
    assert value.item() == 0 and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", ["cross_entropy", "focal", "dice", "tversky"])
def test_class_weights_change_the_loss(name: str):
    logits, mask = random_batch(4, seed=7)
    plain = build_loss(_terms(name), 4)(logits, mask)
    config = _terms(name)
    config.class_weights = [1.0, 5.0, 1.0, 0.2]
    weighted = build_loss(config, 4)(logits, mask)
    assert abs(weighted.item() - plain.item()) > 1e-3


# --- configuration --------------------------------------------------------------------------


def test_configured_weighted_sum_of_cross_entropy_and_dice():
    config = load_config(
        None,
        ["loss.terms=[{name: cross_entropy}, {name: dice, weight: 0.5, options: {smooth: 0}}]"],
    )
    logits, mask = two_class_pixels()
    expected = (math.log(4 / 3) + math.log(4)) / 2 + 0.5 * (1 - (1 / 3 + 3 / 5) / 2)
    value = build_loss(config.loss, 2)(logits, mask)
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_configuration_mistakes_are_explained():
    with pytest.raises(FcnsegError, match="Did you mean 'gamma'"):
        build_loss(_terms("focal", gama=2), 3)
    with pytest.raises(FcnsegError, match="Did you mean 'dice'"):
        build_loss(_terms("dise"), 3)
    with pytest.raises(FcnsegError, match="one weight per class"):
        build_loss(LossConfig(class_weights=[1.0, 2.0]), 3)
    logits, mask = binary_pixels()
    with pytest.raises(FcnsegError, match="binary_cross_entropy"):
        build_loss(_terms("cross_entropy"), 1)(logits, mask)


def _terms(name: str, **options) -> LossConfig:
    return LossConfig(terms=[LossTerm(name=name, options=options)])
