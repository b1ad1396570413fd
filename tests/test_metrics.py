import math

import pytest
import torch

from fcnseg import ConfusionMatrix, FcnsegError


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
