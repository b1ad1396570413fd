"""An instance model over a split: mask AP / AR and the DSB score, and a gallery judged by eye.

    evaluate_instances(predictor, dataset)  -> InstanceEvaluation: every image once through
                                               the InstancePredictor into an InstanceEvaluator
                                               (fcnseg.metrics.instances) at up to
                                               evaluation_max_detections(model) per image;
                                               the best and worst
                                               images by their own DSB score, predicted again
                                               for the gallery
    match_instances(masks, scores, truth)   -> InstanceMatch: each prediction matched or false,
                                               each true instance matched or missed

The gallery's judgement is class-agnostic, as the DSB score is: best score first, a prediction
takes the untaken true instance it overlaps most at IoU >= 0.5 (above 0.5 at most one can
qualify). AP's own matching, per class and at ten IoU thresholds, is the metrics'. Void pixels
are judged by neither.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from rich.progress import track

from fcnseg.data.instances.dataset import InstanceDataset
from fcnseg.inference.instances import (
    InstancePredictor,
    add_to_evaluator,
    evaluation_max_detections,
)
from fcnseg.metrics.instances import InstanceEvaluator, InstanceScores
from fcnseg.models.instances import Instances

MATCH_IOU = 0.5
GALLERY_SIZE = 3  # best and worst images each


@dataclass(frozen=True)
class InstanceMatch:
    """One image's instances judged at IoU >= MATCH_IOU."""

    predicted_matched: np.ndarray  # (M,) bool, one per prediction in the order given
    truth_ids: np.ndarray  # (N,) int64, the true instances' IDs, ascending
    truth_matched: np.ndarray  # (N,) bool

    @property
    def missed_ids(self) -> np.ndarray:
        return self.truth_ids[~self.truth_matched]


@dataclass(frozen=True)
class InstanceGalleryItem:
    """One image of the gallery, with what the model found in it and how that was judged."""

    name: str
    dsb: float  # the image's DSB 2018 score
    image: np.ndarray  # (H, W, C) uint8
    truth_ids: np.ndarray  # (H, W) int64, 0 background and void
    found: Instances
    match: InstanceMatch


@dataclass(frozen=True)
class InstanceEvaluation:
    scores: InstanceScores
    image_names: list[str]
    best: list[InstanceGalleryItem]
    worst: list[InstanceGalleryItem]
    # Seconds spent in the predictor over the split: network, post-processing and pasting at
    # each image's size; not the loading, the scoring or the gallery.
    inference_seconds: float = math.nan


def overlap_counts(masks: np.ndarray, truth_index: np.ndarray, truths: int) -> np.ndarray:
    """(M, N + 1) pixels each of (M, P) bool masks shares with each true instance (column
    1..N of the (P,) index map; column 0: background), counted over predicted pixels only."""
    rows, pixels = np.nonzero(masks)
    pairs = rows * (truths + 1) + truth_index[pixels]
    counts = np.bincount(pairs, minlength=len(masks) * (truths + 1))
    return counts.reshape(len(masks), truths + 1)


def match_instances(
    masks: np.ndarray,
    scores: np.ndarray,
    truth_ids: np.ndarray,
    void: np.ndarray | None = None,
    threshold: float = MATCH_IOU,
) -> InstanceMatch:
    """Judge (M, H, W) bool predicted masks with (M,) scores against an (H, W) ID map."""
    truth_flat = np.asarray(truth_ids, dtype=np.int64).ravel()  # (P,)
    masks = np.asarray(masks, dtype=bool).reshape(len(masks), truth_flat.size)  # (M, P)
    if void is not None:  # not judged: neither a prediction's pixels nor the truth's
        judged = ~np.asarray(void, dtype=bool).ravel()
        masks, truth_flat = masks & judged, np.where(judged, truth_flat, 0)
    labels = np.unique(truth_flat[truth_flat > 0])
    index = np.zeros(int(truth_flat.max(initial=0)) + 1, dtype=np.int64)
    index[labels] = np.arange(1, len(labels) + 1)
    truth_index = index[truth_flat]  # (P,) 1..N, 0 for none
    counts = overlap_counts(masks, truth_index, len(labels))  # (M, N + 1)
    truth_areas = np.bincount(truth_index, minlength=len(labels) + 1)[1:]  # (N,)
    shared = counts[:, 1:]  # (M, N)
    union = counts.sum(axis=1, keepdims=True) + truth_areas[None, :] - shared
    ious = shared / np.maximum(union, 1)
    predicted_matched = np.zeros(len(masks), dtype=bool)
    truth_matched = np.zeros(len(labels), dtype=bool)
    for prediction in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        candidates = np.where(truth_matched, -1.0, ious[prediction])
        best = int(np.argmax(candidates)) if len(labels) else -1
        if best >= 0 and candidates[best] >= threshold:
            predicted_matched[prediction] = truth_matched[best] = True
    return InstanceMatch(predicted_matched, labels, truth_matched)


def evaluate_instances(
    predictor: InstancePredictor,
    dataset: InstanceDataset,
    gallery_size: int = GALLERY_SIZE,
    show_progress: bool = False,
) -> InstanceEvaluation:
    """Every score of the predictor over every item of `dataset` (see the module docstring);
    `show_progress`: a bar with the time left on the terminal meanwhile."""
    ignore_index = dataset.ignore_index
    evaluator = InstanceEvaluator(evaluation_max_detections(predictor.model))
    inference_seconds = 0.0
    images = range(len(dataset))
    for index in track(images, "evaluating", disable=not show_progress, transient=True):
        image, target = dataset[index]  # (C, H, W) normalised, (2, H, W)
        started = time.perf_counter()
        found = predictor.instances(image[None])[0]
        inference_seconds += time.perf_counter() - started
        add_to_evaluator(evaluator, found, target, ignore_index)
    scores = evaluator.compute()
    per_image = list(scores.per_image_dsb)
    scored = [i for i, value in enumerate(per_image) if not math.isnan(value)]
    # Each image in one gallery only: with fewer than 2 x gallery_size, split them.
    count = min(gallery_size, max(1, len(scored) // 2)) if scored else 0
    best = sorted(scored, key=lambda i: (-per_image[i], i))[:count]
    worst = [i for i in sorted(scored, key=lambda i: (per_image[i], i)) if i not in best][:count]
    names = list(getattr(dataset.source, "names", [str(i) for i in range(len(dataset))]))

    def item(index: int) -> InstanceGalleryItem:
        image, target = dataset.source.load(index)  # (H, W, C) uint8, (2, H, W)
        found = predictor.predict_image(image)
        void = target[1] == ignore_index
        match = match_instances(found.masks.numpy(), found.scores.numpy(), target[0], void)
        return InstanceGalleryItem(names[index], per_image[index], image, target[0], found, match)

    galleries = [item(i) for i in best], [item(i) for i in worst]
    return InstanceEvaluation(scores, names, *galleries, inference_seconds=inference_seconds)
