import math

import pytest
import torch

from fcnseg import ConfusionMatrix, FcnsegError
from fcnseg.config import scored_classes
from fcnseg.inference.predictor import labels_from_logits


def test_scores_match_hand_computation_with_ignore_and_absent_class():
    # 4 classes; class 3 appears in neither truth nor prediction; one pixel ignored.
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    matrix = ConfusionMatrix(num_classes=4, ignore_index=255)
    matrix.update(pred, target)
    # Counted pixels (7): truth 0 -> pred 0,1,0 ; truth 1 -> 1,1 ; truth 2 -> 2,0.
    expected = torch.tensor([[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(matrix.matrix, expected)
    scores = matrix.compute()
    # IoU_c = TP / (TP + FP + FN): class 0: 2/(2+1+1); class 1: 2/(2+1+0); class 2: 1/(1+0+1)
    iou = [2 / 4, 2 / 3, 1 / 2]
    dice = [4 / 6, 4 / 5, 2 / 3]  # 2TP / (2TP + FP + FN)
    assert scores.per_class_iou[:3] == pytest.approx(iou)
    assert scores.per_class_dice[:3] == pytest.approx(dice)
    assert math.isnan(scores.per_class_iou[3])  # absent: neither 0 nor 1
    assert scores.miou == pytest.approx(sum(iou) / 3)
    assert scores.mean_dice == pytest.approx(sum(dice) / 3)
    assert scores.pixel_accuracy == pytest.approx(5 / 7)
    assert scores.num_pixels == 7
    as_json = scores.to_dict()
    assert as_json["per_class_iou"][3] is None and as_json["dice"] == pytest.approx(sum(dice) / 3)


def test_updates_accumulate_like_one_big_batch():
    generator = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 5, (6, 9, 11), generator=generator)
    target = torch.randint(0, 5, (6, 9, 11), generator=generator)
    target[0, :3] = 255
    whole, parts = ConfusionMatrix(5), ConfusionMatrix(5)
    whole.update(pred, target)
    for index in range(6):
        parts.update(pred[index], target[index])
    assert torch.equal(whole.matrix, parts.matrix)
    # And against a direct count, pixel by pixel.
    direct = torch.zeros(5, 5, dtype=torch.int64)
    for p, t in zip(pred.flatten().tolist(), target.flatten().tolist(), strict=True):
        if t != 255:
            direct[t, p] += 1
    assert torch.equal(whole.matrix, direct)


def test_labels_out_of_range_are_named():
    matrix = ConfusionMatrix(3)
    with pytest.raises(FcnsegError, match=r"\[7\]"):
        matrix.update(torch.zeros(2, 2, dtype=torch.long), torch.tensor([[0, 7], [1, 2]]))


def test_float_predictions_are_rejected():
    with pytest.raises(TypeError):
        ConfusionMatrix(3).update(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long))


def _hand_example() -> ConfusionMatrix:
    """The matrix of the first test: rows truth, columns prediction, class 3 absent."""
    matrix = ConfusionMatrix(num_classes=4, ignore_index=255)
    matrix.update(
        torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]]), torch.tensor([[0, 0, 1, 1], [2, 2, 255, 0]])
    )
    return matrix


def test_precision_recall_class_accuracy_and_frequency_weighted_iou_by_hand():
    scores = _hand_example().compute()
    # Columns (predicted) sum to 3, 3, 1; rows (true) to 3, 2, 2.
    assert scores.per_class_precision[:3] == pytest.approx([2 / 3, 2 / 3, 1 / 1])
    assert scores.per_class_recall[:3] == pytest.approx([2 / 3, 2 / 2, 1 / 2])
    assert math.isnan(scores.per_class_precision[3]) and math.isnan(scores.per_class_recall[3])
    assert scores.mean_class_accuracy == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    assert scores.frequency_weighted_iou == pytest.approx(3 / 7 * 2 / 4 + 2 / 7 * 2 / 3 + 2 / 7 / 2)
    assert scores.per_class_pixels == (3, 2, 2, 0)
    as_json = scores.to_dict(["a", "b", "c", "d"])
    assert as_json["per_class_precision"][3] is None and as_json["class_names"][3] == "d"
    assert as_json["boundary_f1"] is None and as_json["miou_95ci"] is None  # not asked for


def test_precision_is_absent_for_a_class_never_predicted():
    matrix = ConfusionMatrix(2)
    matrix.update(torch.tensor([[0, 0]]), torch.tensor([[0, 1]]))
    scores = matrix.compute()
    assert math.isnan(scores.per_class_precision[1]) and scores.per_class_recall[1] == 0
    assert scores.per_class_iou[1] == 0  # in the truth, missed: a real 0, counted in the mean
    assert scores.miou == pytest.approx((1 / 2 + 0) / 2)


def _split_image(column: int) -> torch.Tensor:
    """(6, 6): class 0 left of `column`, class 1 from it on."""
    labels = torch.zeros(6, 6, dtype=torch.long)
    labels[:, column:] = 1
    return labels


@pytest.mark.parametrize(
    ("shift", "tolerance", "expected"), [(0, 0, 1.0), (1, 0, 0.0), (1, 1, 1.0), (2, 1, 0.0)]
)
def test_boundary_f1_of_a_shifted_edge(shift: int, tolerance: int, expected: float):
    # Truth edges: class 0 on column 2, class 1 on column 3 (6 pixels each); the prediction's
    # edges are `shift` columns to the right. The image border is no edge.
    matrix = ConfusionMatrix(2, boundary_tolerance=tolerance)
    matrix.update(_split_image(3 + shift), _split_image(3))
    scores = matrix.compute()
    assert scores.per_class_boundary_f1 == pytest.approx((expected, expected))
    assert scores.boundary_f1 == pytest.approx(expected)
    assert scores.boundary_tolerance == tolerance


def test_boundary_f1_counts_by_hand_with_a_missed_edge_and_an_absent_class():
    # Truth: one edge between classes 0 and 1; prediction: all class 0, so no predicted edge:
    # recall 0, precision undefined -> F1 0. Class 2 has no edge anywhere -> absent.
    from fcnseg.metrics.boundary import boundary_counts

    counts = boundary_counts(torch.zeros(6, 6, dtype=torch.long), _split_image(3), 3, 255, 1)
    assert counts.tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 0], [6, 6, 0]]
    matrix = ConfusionMatrix(3, boundary_tolerance=1)
    matrix.update(torch.zeros(6, 6, dtype=torch.long), _split_image(3))
    f1 = matrix.compute().per_class_boundary_f1
    assert f1[:2] == (0.0, 0.0) and math.isnan(f1[2])


def test_boundary_next_to_ignored_pixels_is_not_judged():
    truth = _split_image(3)
    truth[:, 2:4] = 255  # the edge itself is unlabelled
    matrix = ConfusionMatrix(2, boundary_tolerance=1)
    matrix.update(_split_image(4), truth)  # edges on columns 3, 4: both within reach of 255
    assert matrix.boundary[1].sum() == 0 and matrix.boundary[3].sum() == 0


def test_bootstrap_interval_of_two_images_spans_the_extreme_resamples():
    # Two images: resamples are {A, A}, {A, B}, {B, A}, {B, B} with probabilities 1/4, 1/2, 1/4.
    # The 2.5th and 97.5th percentiles then fall on the mIoUs of {A, A} and {B, B}.
    perfect = (torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))  # mIoU 1
    wrong = (torch.tensor([[1, 1]]), torch.tensor([[0, 1]]))  # IoU 0 and 1/2 -> mIoU 1/4
    matrix = ConfusionMatrix(2, per_image=True)
    matrix.update(torch.stack([perfect[0], wrong[0]]), torch.stack([perfect[1], wrong[1]]))
    scores = matrix.compute()
    assert scores.num_images == 2
    assert matrix.per_image_iou() == pytest.approx([1.0, 0.25])
    assert scores.miou_interval == pytest.approx((0.25, 1.0))
    # Pooled {A, B}: class 0 IoU 1/2, class 1 IoU 2/3 -> inside the interval.
    assert scores.miou == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert matrix.compute().miou_interval == scores.miou_interval  # seeded: reproducible


def test_bootstrap_interval_narrows_with_more_images():
    generator = torch.Generator().manual_seed(1)

    def interval(count: int) -> float:
        matrix = ConfusionMatrix(3, per_image=True)
        target = torch.randint(0, 3, (count, 8, 8), generator=generator)
        noise = torch.randint(0, 3, (count, 8, 8), generator=generator)
        pred = torch.where(torch.rand(count, 8, 8, generator=generator) < 0.7, target, noise)
        matrix.update(pred, target)
        low, high = matrix.compute().miou_interval
        return high - low

    assert interval(200) < interval(10)


def test_a_single_output_model_is_scored_on_background_and_foreground():
    # One sigmoid logit per pixel, thresholded at 0 (p = 0.5) by the Predictor's rule.
    assert [scored_classes(count) for count in (1, 2, 5)] == [2, 2, 5]
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 4.0]]).reshape(1, 1, 2, 3)
    target = torch.tensor([[[1, 0, 0], [0, 255, 1]]])
    matrix = ConfusionMatrix(num_classes=1, ignore_index=255)
    matrix.update(labels_from_logits(logits), target)
    # Predicted 1, 0, 1 / 0, (0, ignored), 1 against truth 1, 0, 0 / 0, -, 1:
    # background TP 2, FP 0, FN 1; foreground TP 2, FP 1, FN 0.
    assert matrix.matrix.tolist() == [[2, 1], [0, 2]]
    scores = matrix.compute()
    assert scores.per_class_iou == pytest.approx((2 / 3, 2 / 3))
    assert scores.per_class_dice == pytest.approx((4 / 5, 4 / 5))
    assert scores.pixel_accuracy == pytest.approx(4 / 5)
