"""Instance metrics: hand-computed mask AP / DSB cases, and pycocotools' COCOeval as the reference.

pycocotools is the test's reference only (the dev extra); fcnseg.metrics never imports it.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import torch

from fcnseg.metrics import InstanceEvaluator, InstanceScores

mask_utils = pytest.importorskip("pycocotools.mask")
coco_module = pytest.importorskip("pycocotools.coco")
cocoeval_module = pytest.importorskip("pycocotools.cocoeval")

AREA_KEYS = ("ap", "ap_small", "ap_medium", "ap_large")  # COCO areaRng index 0..3


def boxes(shape: tuple[int, int], *regions: tuple[int, int, int, int]) -> torch.Tensor:
    """(len(regions), H, W) bool masks, one per (top, left, bottom, right) box."""
    masks = torch.zeros(len(regions), *shape, dtype=torch.bool)
    for index, (top, left, bottom, right) in enumerate(regions):
        masks[index, top:bottom, left:right] = True
    return masks


def id_map(masks: torch.Tensor) -> torch.Tensor:
    """Non-overlapping masks -> (H, W) IDs 1..N."""
    ids = torch.zeros(masks.shape[1:], dtype=torch.int64)
    for index, mask in enumerate(masks):
        ids[mask] = index + 1
    return ids


# --------------------------------------------------------------------------- hand-computed cases
def test_perfect_prediction_scores_one_everywhere():
    truth = boxes((40, 40), (0, 0, 10, 10), (20, 20, 30, 35), (0, 25, 5, 40))
    evaluator = InstanceEvaluator()
    classes = torch.tensor([1, 2, 1])
    evaluator.update(
        truth, torch.tensor([0.9, 0.5, 0.7]), classes, id_map(truth), {1: 1, 2: 2, 3: 1}
    )
    scores = evaluator.compute()
    for key in ("ap", "ap50", "ap75", "ap_small", "ar", "dsb_score"):
        # (COCO divides by TP + FP + 2^-52, so one true positive has precision 1 - 2^-52)
        assert getattr(scores, key) == pytest.approx(1.0, abs=1e-12), key
    assert math.isnan(scores.ap_medium) and math.isnan(scores.ap_large)  # no such truth
    assert scores.per_class_ap == pytest.approx({1: 1.0, 2: 1.0}, abs=1e-12)
    assert scores.precision_at_50 == pytest.approx((1.0,) * 101, abs=1e-12)
    as_dict = scores.to_dict(class_names=["background", "nucleus", "cell"])
    assert as_dict["ap_large"] is None
    assert as_dict["per_class_ap"] == pytest.approx({"nucleus": 1.0, "cell": 1.0}, abs=1e-12)


def test_one_missed_instance_halves_recall():
    truth = boxes((20, 20), (0, 0, 5, 5), (10, 10, 15, 15))
    evaluator = InstanceEvaluator()
    evaluator.update(truth[:1], torch.tensor([0.9]), torch.tensor([1]), id_map(truth), {1: 1, 2: 1})
    scores = evaluator.compute()
    # precision 1 at recall points 0, 0.01, ..., 0.50 (51 of 101), then nothing: 0
    assert scores.ap == pytest.approx(51 / 101, abs=1e-12)
    assert scores.ar == pytest.approx(0.5)
    assert scores.dsb_score == pytest.approx(1 / 2)  # TP 1, FN 1 at every threshold


def test_false_positive_above_the_true_one_halves_precision():
    truth = boxes((20, 20), (0, 0, 5, 5))
    predictions = boxes((20, 20), (10, 10, 15, 15), (0, 0, 5, 5))  # false first, then true
    evaluator = InstanceEvaluator()
    evaluator.update(
        predictions, torch.tensor([0.9, 0.8]), torch.tensor([1, 1]), id_map(truth), {1: 1}
    )
    # ranked: FP (precision 0, recall 0), TP (precision 1/2, recall 1); the envelope is 1/2
    assert evaluator.compute().ap == pytest.approx(0.5, abs=1e-12)
    assert evaluator.compute().dsb_score == pytest.approx(1 / 2)  # TP 1, FP 1
    below = InstanceEvaluator()  # the same false positive ranked last costs no AP
    below.update(predictions, torch.tensor([0.1, 0.8]), torch.tensor([1, 1]), id_map(truth), {1: 1})
    assert below.compute().ap == pytest.approx(1.0, abs=1e-12)


def test_iou_of_exactly_0_6_counts_up_to_threshold_0_6():
    truth = boxes((10, 10), (0, 0, 2, 5))  # 10 pixels
    prediction = boxes((10, 10), (0, 0, 2, 3))  # 6 of them: IoU 6 / 10
    evaluator = InstanceEvaluator()
    evaluator.update(prediction, torch.tensor([0.5]), torch.tensor([1]), id_map(truth), {1: 1})
    scores = evaluator.compute()
    # COCO matches at IoU >= t: t = 0.50, 0.55, 0.60 of the ten thresholds
    assert scores.ap == pytest.approx(3 / 10, abs=1e-12)
    assert (scores.ap50, scores.ap75) == (pytest.approx(1.0, abs=1e-12), 0.0)
    # DSB counts IoU > t: only 0.50 and 0.55
    assert scores.dsb_score == pytest.approx(2 / 10)
    assert scores.dsb_score == pytest.approx(reference_dsb(id_map(truth), id_map(prediction)))


def test_empty_images():
    nothing = InstanceEvaluator()
    assert math.isnan(nothing.compute().ap) and math.isnan(nothing.compute().dsb_score)
    assert nothing.compute().to_dict()["ap"] is None
    evaluator = InstanceEvaluator()
    empty_masks, no_values = torch.zeros(0, 8, 8, dtype=torch.bool), torch.zeros(0)
    blank = torch.zeros(8, 8, dtype=torch.int64)
    evaluator.update(empty_masks, no_values, no_values.long(), blank, {})
    assert evaluator.compute().per_image_dsb == (1.0,)  # nothing to find, nothing found
    assert math.isnan(evaluator.compute().ap)  # no class has truth
    evaluator.update(boxes((8, 8), (0, 0, 3, 3)), torch.tensor([0.7]), torch.tensor([1]), blank, {})
    assert evaluator.compute().per_image_dsb == (1.0, 0.0)  # predictions where there is no truth
    truth = boxes((8, 8), (4, 4, 8, 8))
    evaluator.update(truth, torch.tensor([0.6]), torch.tensor([1]), id_map(truth), {1: 1})
    # the earlier false positive outranks the true positive: AP 1/2 as above
    assert evaluator.compute().ap == pytest.approx(0.5, abs=1e-12)
    assert evaluator.compute().dsb_score == pytest.approx(2 / 3)


def test_max_detections_truncates_each_image():
    truth = boxes((20, 20), (0, 0, 5, 5))
    predictions = boxes((20, 20), (10, 10, 15, 15), (10, 0, 15, 5), (0, 0, 5, 5))
    scores, classes = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 1, 1])
    short, long = InstanceEvaluator(max_detections=2), InstanceEvaluator(max_detections=3)
    for evaluator in (short, long):
        evaluator.update(predictions, scores, classes, id_map(truth), {1: 1})
    assert short.compute().ap == 0.0 and short.compute().ar == 0.0  # the true one is third
    assert long.compute().ap == pytest.approx(1 / 3, abs=1e-12)
    assert long.compute().ar == 1.0


def test_area_ranges_include_both_ends_as_cocoeval():
    # COCOeval ignores a truth when area < low or area > high: 32^2 is small and medium,
    # 96^2 medium and large
    truth = boxes((100, 140), (0, 0, 32, 32), (0, 40, 96, 136))
    evaluator = InstanceEvaluator()
    evaluator.update(
        truth, torch.tensor([0.9, 0.8]), torch.tensor([1, 2]), id_map(truth), {1: 1, 2: 2}
    )
    scores = evaluator.compute()
    assert scores.per_class_ap == pytest.approx({1: 1.0, 2: 1.0}, abs=1e-12)
    for key in ("ap_small", "ap_medium", "ap_large"):
        assert getattr(scores, key) == pytest.approx(1.0, abs=1e-12), key
    smaller = InstanceEvaluator()  # one pixel less: 1023 is small only
    truth[0, 0, 0] = False
    smaller.update(truth[:1], torch.tensor([0.9]), torch.tensor([1]), id_map(truth[:1]), {1: 1})
    assert math.isnan(smaller.compute().ap_medium)


def test_crowd_and_void_matches_are_ignored_not_false():
    truth = boxes((30, 30), (0, 0, 5, 5), (10, 10, 20, 20))
    predictions = boxes((30, 30), (12, 12, 18, 18), (0, 0, 5, 5), (22, 22, 28, 28))
    scores, classes = torch.tensor([0.9, 0.5, 0.8]), torch.tensor([1, 1, 1])
    void = torch.zeros(30, 30, dtype=torch.bool)
    void[21:29, 21:29] = True
    evaluator = InstanceEvaluator()
    evaluator.update(predictions, scores, classes, id_map(truth), {1: 1, 2: 1}, void, crowd={2})
    # the detections inside the crowd truth and inside void are neither right nor wrong
    assert evaluator.compute().ap == pytest.approx(1.0, abs=1e-12)
    assert evaluator.compute().dsb_score == pytest.approx(1.0)
    plain = InstanceEvaluator()
    plain.update(predictions, scores, classes, id_map(truth), {1: 1, 2: 1})
    assert plain.compute().ap < 1.0


def test_dsb_pastes_overlapping_predictions_by_score():
    truth = boxes((20, 20), (0, 0, 4, 4))
    # the low-scoring box covers the truth and more; pasted under the exact one, it keeps
    # only its own 8 outer pixels: a false positive, not a second claim on the truth
    predictions = boxes((20, 20), (0, 0, 4, 6), (0, 0, 4, 4))
    evaluator = InstanceEvaluator()
    evaluator.update(
        predictions, torch.tensor([0.3, 0.9]), torch.tensor([1, 1]), id_map(truth), {1: 1}
    )
    assert evaluator.compute().dsb_score == pytest.approx(1 / 2)
    limited = InstanceEvaluator(dsb_min_score=0.5)  # the low one left out of the DSB map
    limited.update(
        predictions, torch.tensor([0.3, 0.9]), torch.tensor([1, 1]), id_map(truth), {1: 1}
    )
    assert limited.compute().dsb_score == 1.0


def test_id_map_and_masks_give_the_same_figures():
    generator = np.random.default_rng(3)
    truth_masks, truth_classes, predictions = random_image(generator, (64, 80), overlap=False)
    from_masks, from_ids = InstanceEvaluator(), InstanceEvaluator()
    from_masks.update(*predictions, truth_masks, truth_classes)
    # IDs need not be contiguous: 7, 14, 21, ...
    identities = {7 * (index + 1): int(value) for index, value in enumerate(truth_classes)}
    from_ids.update(*predictions, 7 * id_map(torch.from_numpy(truth_masks)), identities)
    assert from_masks.compute().to_dict() == from_ids.compute().to_dict()
    assert from_ids.compute().num_images == 1 and not math.isnan(from_ids.compute().ap)
    with pytest.raises(ValueError, match="no class"):
        from_ids.update(*predictions, 7 * id_map(torch.from_numpy(truth_masks)), {7: 1})


def test_large_image_with_many_instances_runs():
    height, width = 520, 696
    truth = torch.zeros(height, width, dtype=torch.int64)
    tops, lefts = torch.meshgrid(torch.arange(15) * 34, torch.arange(20) * 34, indexing="ij")
    for identity, (top, left) in enumerate(zip(tops.flatten(), lefts.flatten(), strict=True), 1):
        truth[top : top + 24, left : left + 28] = identity  # 300 nuclei
    generator = torch.Generator().manual_seed(0)
    tops = torch.randint(0, height - 24, (1000,), generator=generator).tolist()
    lefts = torch.randint(0, width - 28, (1000,), generator=generator).tolist()
    predictions = boxes(
        (height, width), *[(t, x, t + 24, x + 28) for t, x in zip(tops, lefts, strict=True)]
    )
    evaluator = InstanceEvaluator(max_detections=1000)
    scores = torch.rand(1000, generator=generator)
    evaluator.update(
        predictions,
        scores,
        torch.ones(1000, dtype=torch.int64),
        truth,
        dict.fromkeys(range(1, 301), 1),
    )
    result = evaluator.compute()
    assert 0.0 <= result.ap <= 1.0 and 0.0 <= result.dsb_score <= 1.0


# ------------------------------------------------------------------------------- random images
def ellipse(shape: tuple[int, int], center: np.ndarray, radii: np.ndarray) -> np.ndarray:
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    return ((rows - center[0]) / radii[0]) ** 2 + ((columns - center[1]) / radii[1]) ** 2 <= 1


def random_image(
    generator: np.random.Generator,
    shape: tuple[int, int],
    overlap: bool = True,
    num_false: int = 3,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Truth: 3-8 ellipses of classes 1-3, small, medium and large, overlapping unless told
    not to; predictions: most truths found again as a jittered ellipse (now and then twice, or
    with a wrong class), plus `num_false` stray ellipses; scores rounded to 0.05, so that ties
    occur and the stable order matters."""
    radius_ranges = [(2, 12), (14, 40), (56, 75)]
    truths, classes, shapes = [], [], []
    occupied = np.zeros(shape, dtype=bool)
    for _ in range(generator.integers(3, 9)):
        low, high = radius_ranges[generator.integers(0, 3)]
        radii = generator.uniform(low, high, size=2)
        center = generator.uniform(0, shape)
        mask = ellipse(shape, center, radii)
        if not overlap:
            mask &= ~occupied
            occupied |= mask
        if mask.any():
            truths.append(mask)
            classes.append(int(generator.integers(1, 4)))
            shapes.append((center, radii))
    found, found_classes = [], []
    for (center, radii), category in zip(shapes, classes, strict=True):
        for _ in range(int(generator.random() < 0.85) + int(generator.random() < 0.2)):
            jitter = generator.normal(0, 0.12 * radii, size=2)
            mask = ellipse(shape, center + jitter, radii * generator.uniform(0.8, 1.2, size=2))
            wrong = generator.random() < 0.1
            found.append(mask)
            found_classes.append(int(generator.integers(1, 4)) if wrong else category)
    for _ in range(num_false):
        radii = generator.uniform(3, 30, size=2)
        found.append(ellipse(shape, generator.uniform(0, shape), radii))
        found_classes.append(int(generator.integers(1, 4)))
    kept = [index for index, mask in enumerate(found) if mask.any()]
    predictions = (
        np.array([found[index] for index in kept]).reshape(len(kept), *shape),
        np.round(generator.uniform(0, 1, size=len(kept)) * 20) / 20,
        np.array([found_classes[index] for index in kept], dtype=np.int64),
    )
    return np.array(truths).reshape(len(truths), *shape), np.array(classes), predictions


def rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else math.nan


def coco_reference(images: list[dict], max_detections: int, num_classes: int = 3) -> dict:
    """COCOeval(iouType="segm") figures, read from eval["precision"] (T, R, K, A, M) and
    eval["recall"] (T, K, A, M) at the last (only) maxDets, mean over entries > -1. The void of
    an image goes in as one crowd annotation per category."""
    truths, results, entries = [], [], []
    for image_id, image in enumerate(images, start=1):
        height, width = image["truth_masks"].shape[1:]
        entries.append({"id": image_id, "height": height, "width": width})
        regions = [
            (mask, int(category), index in image["crowd"])
            for index, (mask, category) in enumerate(
                zip(image["truth_masks"], image["truth_classes"], strict=True)
            )
        ]
        if image["void"] is not None:
            regions += [(image["void"], category, True) for category in range(1, num_classes + 1)]
        for mask, category, crowd in regions:
            truths.append(
                {
                    "id": len(truths) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "segmentation": rle(mask),
                    "area": int(mask.sum()),
                    "iscrowd": int(crowd),
                }
            )
        for mask, score, category in zip(*image["predictions"], strict=True):
            segmentation = rle(mask)
            results.append(
                {"image_id": image_id, "category_id": int(category), "segmentation": segmentation}
                | {"score": float(score)}
            )
    categories = [{"id": category, "name": str(category)} for category in range(1, 4)]
    with contextlib.redirect_stdout(io.StringIO()):
        truth = coco_module.COCO()
        truth.dataset = {"images": entries, "annotations": truths, "categories": categories}
        truth.createIndex()
        evaluation = cocoeval_module.COCOeval(truth, truth.loadRes(results), "segm")
        evaluation.params.maxDets = [max_detections]
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][..., -1]  # (T, R, K, A)
    recall = evaluation.eval["recall"][..., -1]  # (T, K, A)
    figures = {key: mean_valid(precision[..., area]) for area, key in enumerate(AREA_KEYS)}
    figures |= {"ap50": mean_valid(precision[0, ..., 0]), "ap75": mean_valid(precision[5, ..., 0])}
    figures["ar"] = mean_valid(recall[..., 0])
    figures["per_class_ap"] = {
        category["id"]: mean_valid(precision[:, :, index, 0])
        for index, category in enumerate(categories)
    }
    figures["precision_at_50"] = [mean_valid(row) for row in precision[0, :, :, 0]]
    figures["precision_at_75"] = [mean_valid(row) for row in precision[5, :, :, 0]]
    return figures


def assert_agrees(ours: InstanceScores, reference: dict) -> None:
    for key in (*AREA_KEYS, "ap50", "ap75", "ar"):
        assert getattr(ours, key) == pytest.approx(reference[key], abs=1e-6, nan_ok=True), key
    for category, value in reference["per_class_ap"].items():
        assert ours.per_class_ap.get(category, math.nan) == pytest.approx(
            value, abs=1e-6, nan_ok=True
        )
    for key in ("precision_at_50", "precision_at_75"):
        assert list(getattr(ours, key)) == pytest.approx(reference[key], abs=1e-6, nan_ok=True)


def random_dataset(seed: int, num_images: int, crowd_and_void: bool, num_false: int = 3) -> list:
    generator = np.random.default_rng(seed)
    images = []
    for _ in range(num_images):
        truth_masks, truth_classes, predictions = random_image(
            generator, (160, 200), num_false=num_false
        )
        crowd, void = set(), None
        if crowd_and_void:
            crowd = {index for index in range(len(truth_classes)) if generator.random() < 0.15}
            top, left = generator.integers(0, 120), generator.integers(0, 160)
            void = np.zeros((160, 200), dtype=bool)
            void[top : top + 40, left : left + 40] = True
        images.append(
            {
                "truth_masks": truth_masks,
                "truth_classes": truth_classes,
                "predictions": predictions,
                "crowd": crowd,
                "void": void,
            }
        )
    return images


def evaluate(images: list[dict], max_detections: int) -> InstanceScores:
    evaluator = InstanceEvaluator(max_detections=max_detections)
    for image in images:
        evaluator.update(
            *image["predictions"],
            image["truth_masks"],
            image["truth_classes"],
            void=image["void"],
            crowd=image["crowd"],
        )
    return evaluator.compute()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("max_detections", [100, 3])
def test_mask_ap_agrees_with_pycocotools(seed: int, max_detections: int):
    images = random_dataset(seed, num_images=6, crowd_and_void=False)
    ours = evaluate(images, max_detections)
    reference = coco_reference(images, max_detections)
    assert_agrees(ours, reference)
    assert not math.isnan(ours.ap) and 0 < ours.ap < 1  # a case that can tell right from wrong


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_mask_ap_with_crowd_and_void_agrees_with_pycocotools(seed: int):
    images = random_dataset(seed, num_images=6, crowd_and_void=True)
    assert_agrees(evaluate(images, 100), coco_reference(images, 100))


def test_mask_ap_beyond_100_detections_agrees_with_pycocotools():
    images = random_dataset(20, num_images=2, crowd_and_void=False, num_false=400)
    at_100, at_1000 = evaluate(images, 100), evaluate(images, 1000)
    assert_agrees(at_100, coco_reference(images, 100))
    assert_agrees(at_1000, coco_reference(images, 1000))
    assert at_1000.ar >= at_100.ar and at_1000.ap != at_100.ap  # the limit changed something


# ---------------------------------------------------------------------------------- DSB score
def reference_dsb(truth: torch.Tensor, predicted: torch.Tensor) -> float:
    """The Kaggle DSB 2018 score of two non-overlapping ID maps, counted as in the peer script:
    TP = truths with exactly one prediction at IoU > t, FN = truths with none, FP = predictions
    with none."""
    truth, predicted = truth.numpy().ravel(), predicted.numpy().ravel()
    truth_ids, predicted_ids = np.unique(truth[truth > 0]), np.unique(predicted[predicted > 0])
    if truth_ids.size == 0 and predicted_ids.size == 0:
        return 1.0
    if truth_ids.size == 0 or predicted_ids.size == 0:
        return 0.0
    ious = np.array(
        [
            [((truth == t) & (predicted == p)).sum() / ((truth == t) | (predicted == p)).sum()]
            for t in truth_ids
            for p in predicted_ids
        ]
    ).reshape(truth_ids.size, predicted_ids.size)
    values = []
    for threshold in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        hits = ious > threshold
        true_positives = int((hits.sum(1) == 1).sum())
        misses, false = int((hits.sum(1) == 0).sum()), int((hits.sum(0) == 0).sum())
        values.append(true_positives / (true_positives + misses + false))
    return float(np.mean(values))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_dsb_score_agrees_with_a_direct_count_on_pasted_maps(seed: int):
    generator = np.random.default_rng(seed)
    truth_masks, truth_classes, (masks, scores, classes) = random_image(
        generator, (96, 120), overlap=False
    )
    truth = id_map(torch.from_numpy(truth_masks))
    pasted = torch.zeros(truth.shape, dtype=torch.int64)  # higher score first, earlier on ties
    for index in np.argsort(-scores, kind="stable"):
        pasted[torch.from_numpy(masks[index]) & (pasted == 0)] = int(index) + 1
    evaluator = InstanceEvaluator()
    identities = {index + 1: int(value) for index, value in enumerate(truth_classes)}
    evaluator.update(masks, scores, classes, truth, identities)
    assert evaluator.compute().dsb_score == pytest.approx(reference_dsb(truth, pasted), abs=1e-12)
