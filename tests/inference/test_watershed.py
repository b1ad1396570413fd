"""The watershed baseline's post-processing and predictor, on hand-built probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fcnseg.data.instances.boundaries import boundary_mask
from fcnseg.errors import FcnsegError
from fcnseg.inference.predictor import Predictor
from fcnseg.inference.watershed import WatershedPredictor, flood, instances_from_probabilities
from fcnseg.metrics.instances import InstanceEvaluator


def one_hot(mask: np.ndarray) -> np.ndarray:
    """(H, W) of 0/1/2 -> (3, H, W) float32 perfect probabilities."""
    return (np.arange(3)[:, None, None] == mask[None]).astype(np.float32)


def touching_squares() -> np.ndarray:
    ids = np.zeros((20, 24), dtype=np.int64)
    ids[3:13, 2:12] = 1
    ids[3:13, 12:22] = 2  # touches the first square along a whole side
    return ids


def test_perfect_probabilities_of_touching_squares_give_them_back_exactly() -> None:
    ids = touching_squares()
    found = instances_from_probabilities(torch.from_numpy(one_hot(boundary_mask(ids))))
    assert len(found) == 2
    assert found.classes.tolist() == [1, 1]
    assert torch.allclose(found.scores, torch.ones(2))
    truths = sorted(
        (torch.from_numpy(ids == k) for k in (1, 2)), key=lambda m: int(m.nonzero()[0, 1])
    )
    predicted = sorted(found.masks, key=lambda m: int(m.nonzero()[0, 1]))
    for mask, truth in zip(predicted, truths, strict=True):
        assert torch.equal(mask, truth)  # IoU 1: no watershed line is left between them


def test_blob_without_seed_becomes_an_instance() -> None:
    ids = np.zeros((12, 12), dtype=np.int64)
    ids[2:10, 4:7] = 1  # 3 px wide: all boundary band, no interior, so no seed
    probabilities = one_hot(boundary_mask(ids))
    assert not (probabilities[1] > 0.5).any()
    found = instances_from_probabilities(probabilities)
    assert len(found) == 1
    assert torch.equal(found.masks[0], torch.from_numpy(ids == 1))


def test_tiny_instances_and_seeds_are_dropped() -> None:
    mask = np.zeros((16, 16), dtype=np.int64)
    mask[1:4, 1:4] = 2  # a 9 px blob: under min_size 10
    mask[6:15, 6:15] = 2  # one 81 px blob with two seeds: 9 px and 2 px
    mask[8:11, 8:11] = 1
    mask[13, 12:14] = 1
    probabilities = one_hot(mask)
    found = instances_from_probabilities(probabilities)
    assert len(found) == 1  # the 2 px seed is dropped, so the 9 px seed floods the whole blob
    assert int(found.masks[0].sum()) == 81
    assert len(instances_from_probabilities(probabilities, min_seed_size=2)) == 2
    assert len(instances_from_probabilities(probabilities, min_size=9)) == 2


def test_score_is_the_mean_foreground_probability() -> None:
    probabilities = np.zeros((3, 6, 6), dtype=np.float32)
    probabilities[0] = 1.0
    probabilities[:, 1:5, 1:5] = np.array([0.2, 0.8, 0.0])[:, None, None]
    probabilities[:, 1, 1] = [0.4, 0.6, 0.0]
    found = instances_from_probabilities(probabilities)
    assert len(found) == 1
    assert found.scores.item() == pytest.approx((15 * 0.8 + 0.6) / 16)


def test_flood_follows_the_elevation() -> None:
    markers = np.zeros((1, 10), dtype=np.int64)
    markers[0, 0], markers[0, 9] = 1, 2
    elevation = np.zeros((1, 10))
    elevation[0, 3] = 1.0  # a ridge nearer the first seed: the second takes 4..8
    mask = np.ones((1, 10), dtype=bool)
    labels = flood(elevation, markers, mask)
    assert labels[0, :3].tolist() == [1, 1, 1]
    assert labels[0, 4:].tolist() == [2] * 6
    mask[0, 6] = False  # a gap: the far side is reached only by its own seed, the gap by none
    labels = flood(elevation, markers, mask)
    assert labels[0, 6] == 0 and labels[0, 7:].tolist() == [2, 2, 2]
    assert labels[0, 4:6].tolist() == [1, 1]


def test_wrong_shape_raises() -> None:
    with pytest.raises(FcnsegError, match="3, H, W"):
        instances_from_probabilities(np.zeros((2, 4, 4)))


def test_watershed_predictor_scores_perfect_probabilities_as_ap_1() -> None:
    ids = touching_squares()
    logits = torch.log(torch.from_numpy(one_hot(boundary_mask(ids))).clamp_min(1e-6))

    def network(images: torch.Tensor) -> torch.Tensor:
        return logits[None].expand(len(images), -1, -1, -1)

    predictor = WatershedPredictor(Predictor(network))
    images = torch.zeros(2, 3, *ids.shape)
    targets = torch.from_numpy(np.stack([ids, (ids > 0).astype(np.int64)]))[None].repeat(2, 1, 1, 1)
    evaluator = predictor.evaluate([(images, targets)], InstanceEvaluator(max_detections=1000))
    scores = evaluator.compute()
    assert scores.ap == pytest.approx(1.0) and scores.dsb_score == pytest.approx(1.0)
    assert predictor.class_names == ["background", "object"]
