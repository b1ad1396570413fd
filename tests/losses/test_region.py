"""Region losses where a plain formula breaks: 0/0 classes (Dice, Tversky) and a binary batch
without foreground (Lovasz), all checked against values worked out by hand."""

import math

import pytest
import torch

from fcnseg.losses import DiceLoss, LovaszSoftmaxLoss, TverskyLoss

LN3 = math.log(3.0)
IGNORE = 255


def three_class_pixels() -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels a (truth 1), b (truth 0), c (ignored) with p = (1/4, 3/4, 0): class 2 is neither
    true nor predicted anywhere (e^-200 underflows to exactly 0 in float32)."""
    logits = torch.tensor([[0.0, 0.0, 5.0], [LN3, LN3, -7.0], [-200.0, -200.0, 0.0]])
    return logits.reshape(1, 3, 1, 3), torch.tensor([[[1, 0, IGNORE]]])


@pytest.mark.parametrize(
    ("loss", "present_classes_loss"),
    [
        # Classes 0 and 1 as in test_losses.py: Dice 1/3 and 3/5; Tversky 5/17 and 15/23.
        (DiceLoss(smooth=0), (1 - 1 / 3) + (1 - 3 / 5)),
        (TverskyLoss(alpha=0.3, beta=0.7, smooth=0), (1 - 5 / 17) + (1 - 15 / 23)),
    ],
    ids=["dice", "tversky"],
)
def test_a_class_with_nothing_to_get_wrong_costs_zero_without_smoothing(
    loss: torch.nn.Module, present_classes_loss: float
):
    logits, mask = three_class_pixels()
    logits.requires_grad_(True)
    value = loss(logits, mask)
    value.backward()
    # Class 2 adds 0 to the sum over 3 classes (it was 0/0 = NaN).
    assert value.item() == pytest.approx(present_classes_loss / 3, rel=1e-6)
    assert torch.isfinite(logits.grad).all()
    # Class 2's probability is 0 everywhere, so the two present classes' gradient is the
    # two-class loss's, scaled by 2/3 (their share of the class mean), and class 2's is 0.
    two_class = logits.detach()[:, :2].clone().requires_grad_(True)
    loss(two_class, mask).backward()
    assert torch.allclose(logits.grad[:, :2], 2 / 3 * two_class.grad, atol=1e-7)
    assert torch.all(logits.grad[:, 2] == 0)


@pytest.mark.parametrize("num_classes", [1, 3])
@pytest.mark.parametrize(
    "loss", [DiceLoss(smooth=0), TverskyLoss(smooth=0)], ids=["dice", "tversky"]
)
def test_an_all_ignored_batch_costs_zero_with_zero_gradients(
    loss: torch.nn.Module, num_classes: int
):
    logits = torch.randn(2, num_classes, 4, 4, requires_grad=True)
    value = loss(logits, torch.full((2, 4, 4), IGNORE))
    assert value.grad_fn is not None  # still part of the graph: backward works
    value.backward()
    assert value.item() == 0
    assert torch.all(logits.grad == 0)


def test_binary_lovasz_hinge_by_hand():
    # Logits 0.5, 0.25, -1 with truth 1, 0, 1 (a 4th pixel ignored). Hinge errors 1 - x * sign:
    # 0.5, 1.25, 2; sorted descending the truths are (1, 0, 1), whose Jaccard increments are
    # 1/2, 1/6, 1/3 (as in test_lovasz_by_hand), so the loss is 2/2 + 1.25/6 + 0.5/3 = 11/8 and
    # its gradient -1/3, +1/6, -1/2 (d error / d x = -sign), 0 for the ignored pixel.
    logits = torch.tensor([0.5, 0.25, -1.0, 9.0]).reshape(1, 1, 1, 4).requires_grad_(True)
    mask = torch.tensor([[[1, 0, 1, IGNORE]]])
    value = LovaszSoftmaxLoss()(logits, mask)
    value.backward()
    assert value.item() == pytest.approx(11 / 8, rel=1e-6)
    expected = torch.tensor([-1 / 3, 1 / 6, -1 / 2, 0.0]).reshape(1, 1, 1, 4)
    assert torch.allclose(logits.grad, expected, atol=1e-7)


@pytest.mark.parametrize("per_image", [False, True])
def test_binary_lovasz_penalises_foreground_painted_on_a_background_batch(per_image: bool):
    # No foreground in the truth, every logit strongly positive. The foreground Jaccard loss is
    # 1 from the first false positive on: one increment of 1, at the largest error 1 + 3 = 4.
    logits = torch.tensor([3.0, 1.0, 2.0, 5.0]).reshape(1, 1, 1, 4).requires_grad_(True)
    mask = torch.tensor([[[0, 0, 0, IGNORE]]])
    loss = LovaszSoftmaxLoss(per_image=per_image)
    value = loss(logits, mask)
    value.backward()
    assert value.item() == pytest.approx(4.0)
    # Gradient descent lowers the worst false positive's logit, and the loss with it.
    assert logits.grad.flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    stepped = (logits - 0.5 * logits.grad).detach()
    assert loss(stepped, mask).item() == pytest.approx(3.5)
    # Background predicted beyond the margin (logit <= -1) costs nothing.
    assert loss(torch.full((1, 1, 1, 4), -1.5), mask).item() == 0
