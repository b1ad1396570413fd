"""Instance metrics, accumulated image by image: COCO mask AP / AR and the DSB 2018 score.

Mask AP follows pycocotools' COCOeval with iouType "segm" (cocoeval.py, evaluateImg and
accumulate), so that the figures can be compared with published ones:

- per image and class, detections sorted by score (stable mergesort), the first
  `max_detections` kept (COCO's maxDets: per image *and class*; 100 by default, nuclei need 1000);
- at each IoU threshold 0.50:0.05:0.95 the greedy match of metrics/matching.py; a truth marked
  crowd, and the void region (one crowd region of every class), are matched last and a detection
  matched to them is ignored; for an area range, truths outside it are ignored and so are
  unmatched detections outside it (areas: all, small < 32^2, medium 32^2..96^2, large > 96^2
  pixels, both ends inclusive as in COCOeval; truth area = its mask's pixels);
- per class, detections of all images pooled by score, precision made monotone (non-increasing in
  recall) and sampled at the 101 recall points 0:0.01:1 (0 past the highest recall reached);
- AP = mean over recall points, thresholds and the classes with truth; a class without truth in
  the range has no precision at all (-1 in COCO's array) and is left out. A figure with no class
  to average is NaN here (None in `to_dict`) where COCO prints -1.

AR is the recall reached with `max_detections`, averaged over thresholds and classes. The DSB
2018 score ignores classes: see metrics/matching.py for its matching and void rule.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fcnseg.metrics.matching import (
    COCO_IOU_THRESHOLDS,
    Truth,
    coco_match,
    dsb_image_score,
    flatten_masks,
    intersections,
    mask_ious,
    paint_by_score,
    truth_from_id_map,
    truth_from_masks,
)

RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCOeval's recThrs
# COCOeval's areaRng: [0, 1e5^2], [0, 32^2], [32^2, 96^2], [96^2, 1e5^2]
AREA_RANGES = ((0.0, 1e10), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e10))
ALL, SMALL, MEDIUM, LARGE = range(4)


@dataclass(frozen=True)
class ImageRecord:
    """One image's detections of one class in one area range, in score order."""

    scores: np.ndarray  # (D,)
    matched: np.ndarray  # (T, D) bool: matched a truth at threshold t
    ignored: np.ndarray  # (T, D) bool: neither true nor false positive at threshold t
    num_truths: int  # truths that count (not crowd, inside the area range)


@dataclass(frozen=True)
class InstanceScores:
    """Instance figures as fractions in [0, 1]; NaN where nothing could be scored."""

    ap: float  # mask AP @ IoU 0.50:0.95
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    ar: float  # recall at max_detections, mean over thresholds and classes
    dsb_score: float  # mean over images of the DSB 2018 score
    per_class_ap: dict[int, float]  # class -> AP @ 0.50:0.95, NaN for a class without truth
    per_image_dsb: tuple[float, ...]
    recall_points: tuple[float, ...]  # 0, 0.01, ..., 1
    precision_at_50: tuple[float, ...]  # precision at each recall point, IoU 0.5, class mean
    precision_at_75: tuple[float, ...]
    max_detections: int
    num_images: int

    def to_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready: NaN becomes None; classes by name where `class_names[class]` exists."""

        names = list(class_names or [])

        def name(category: int) -> str:
            return names[category] if 0 <= category < len(names) else str(category)

        figures = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar", "dsb_score")
        result: dict[str, Any] = {key: _json(getattr(self, key)) for key in figures}
        result["per_class_ap"] = {
            name(category): _json(value) for category, value in self.per_class_ap.items()
        }
        result["per_image_dsb"] = [_json(value) for value in self.per_image_dsb]
        result["precision_recall"] = {
            "recall": list(self.recall_points),
            "precision_iou50": [_json(value) for value in self.precision_at_50],
            "precision_iou75": [_json(value) for value in self.precision_at_75],
        }
        result["max_detections"] = self.max_detections
        result["num_images"] = self.num_images
        return result


def _json(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


class InstanceEvaluator:
    """Accumulates instance predictions against the truth, one image per `update`."""

    def __init__(self, max_detections: int = 100, dsb_min_score: float = 0.0) -> None:
        """`max_detections`: COCO's maxDets; `dsb_min_score`: predictions scoring less are left
        out of the DSB score only (AP ranks every detection, a DSB submission is a final map)."""
        if max_detections < 1:
            raise ValueError(f"max_detections must be at least 1, got {max_detections}")
        self.max_detections = max_detections
        self.dsb_min_score = dsb_min_score
        self.records: defaultdict[tuple[int, int], list[ImageRecord]] = defaultdict(list)
        self.classes: set[int] = set()
        self.per_image_dsb: list[float] = []

    def update(
        self,
        pred_masks: torch.Tensor | np.ndarray,
        pred_scores: torch.Tensor | np.ndarray,
        pred_classes: torch.Tensor | np.ndarray,
        truth_ids: torch.Tensor | np.ndarray,
        truth_classes: Mapping[int, int] | Sequence[int] | torch.Tensor | np.ndarray,
        void: torch.Tensor | np.ndarray | None = None,
        crowd: Collection[int] = (),
    ) -> None:
        """Add one image.

        pred_masks (M, H, W) bool, pred_scores (M,), pred_classes (M,): the detections.
        Truth, either an (H, W) instance-ID map (0 = none) with `truth_classes` {ID: class}, or
        (N, H, W) masks (may overlap) with `truth_classes` (N,). `crowd`: truth IDs (ID map) or
        indices (masks) of crowd regions. `void`: (H, W) bool pixels that are not judged.
        """
        predictions = flatten_masks(pred_masks)
        scores = torch.as_tensor(pred_scores).cpu().double().numpy().reshape(-1)
        classes = torch.as_tensor(pred_classes).cpu().long().numpy().reshape(-1)
        if not len(scores) == len(classes) == predictions.shape[0]:
            raise ValueError("pred_masks, pred_scores and pred_classes differ in length")
        truth = to_truth(truth_ids, truth_classes, crowd)
        if truth.pixel_count != predictions.shape[1]:
            raise ValueError("predicted and true masks differ in size")
        void_flat = flat_void(void, truth.pixel_count)
        rows, pixels = predictions.nonzero(as_tuple=True)  # every predicted pixel, once
        void_label = torch.where(void_flat, len(truth.classes) + 1, 0)
        shared = intersections(
            rows, pixels, len(scores), [*truth.label_maps, void_label], len(truth.classes) + 1
        )
        areas = torch.bincount(rows, minlength=len(scores)).numpy()
        self.add_coco(scores, classes, areas, shared, truth, int(void_flat.sum()))
        self.add_dsb(rows, pixels, scores, truth, void_flat)

    def add_dsb(
        self,
        rows: torch.Tensor,
        pixels: torch.Tensor,
        scores: np.ndarray,
        truth: Truth,
        void: torch.Tensor,
    ) -> None:
        """Score one image for DSB 2018: predictions pasted by score, crowd truths as void."""
        eligible = torch.from_numpy(scores >= self.dsb_min_score)[rows]
        owner = paint_by_score(rows[eligible], pixels[eligible], scores, truth.pixel_count)
        void = void | truth.pixels_of(np.flatnonzero(truth.crowd))
        score = dsb_image_score(owner, len(scores), truth.label_maps, ~truth.crowd, void)
        self.per_image_dsb.append(score)

    def add_coco(
        self,
        scores: np.ndarray,
        classes: np.ndarray,
        areas: np.ndarray,
        shared: np.ndarray,
        truth: Truth,
        void_area: int,
    ) -> None:
        """Match one image's detections class by class; `shared` (M, N + 1) has the void last."""
        void_columns = [len(truth.classes)] if void_area else []
        for category in np.union1d(classes, truth.classes).tolist():
            self.classes.add(category)
            picked = np.flatnonzero(classes == category)
            picked = picked[np.argsort(-scores[picked], kind="mergesort")][: self.max_detections]
            columns = [*np.flatnonzero(truth.classes == category).tolist(), *void_columns]
            crowd = np.append(truth.crowd, True)[columns]
            truth_areas = np.append(truth.areas, void_area)[columns]
            ious = mask_ious(shared[np.ix_(picked, columns)], areas[picked], truth_areas, crowd)
            for area_index, (low, high) in enumerate(AREA_RANGES):
                ignored = crowd | (truth_areas < low) | (truth_areas > high)
                matches = coco_match(ious, ignored, crowd)
                matched = matches >= 0
                outside = (areas[picked] < low) | (areas[picked] > high)
                matched_ignored = np.append(ignored, False)[matches]  # -1: the False
                ignored_detections = np.where(matched, matched_ignored, outside[None, :])
                record = ImageRecord(
                    scores[picked], matched, ignored_detections, int((~ignored).sum())
                )
                self.records[(category, area_index)].append(record)

    def compute(self) -> InstanceScores:
        """The figures over every image so far."""
        categories = sorted(self.classes)
        thresholds, points = len(COCO_IOU_THRESHOLDS), len(RECALL_POINTS)
        precision = -np.ones((thresholds, points, len(categories), len(AREA_RANGES)))
        recall = -np.ones((thresholds, len(categories), len(AREA_RANGES)))
        for index, category in enumerate(categories):
            for area_index in range(len(AREA_RANGES)):
                curves = accumulate(self.records.get((category, area_index), []))
                if curves is not None:
                    precision[:, :, index, area_index], recall[:, index, area_index] = curves
        at_50, at_75 = (int(np.argmin(abs(COCO_IOU_THRESHOLDS - value))) for value in (0.5, 0.75))
        everything = precision[..., ALL]
        return InstanceScores(
            ap=mean_valid(everything),
            ap50=mean_valid(everything[at_50]),
            ap75=mean_valid(everything[at_75]),
            ap_small=mean_valid(precision[..., SMALL]),
            ap_medium=mean_valid(precision[..., MEDIUM]),
            ap_large=mean_valid(precision[..., LARGE]),
            ar=mean_valid(recall[..., ALL]),
            dsb_score=float(np.mean(self.per_image_dsb)) if self.per_image_dsb else math.nan,
            per_class_ap={
                category: mean_valid(everything[:, :, index])
                for index, category in enumerate(categories)
            },
            per_image_dsb=tuple(self.per_image_dsb),
            recall_points=tuple(RECALL_POINTS.tolist()),
            precision_at_50=tuple(mean_valid(row) for row in everything[at_50]),
            precision_at_75=tuple(mean_valid(row) for row in everything[at_75]),
            max_detections=self.max_detections,
            num_images=len(self.per_image_dsb),
        )


def to_truth(
    truth_ids: torch.Tensor | np.ndarray,
    truth_classes: Mapping[int, int] | Sequence[int] | torch.Tensor | np.ndarray,
    crowd: Collection[int],
) -> Truth:
    """An (H, W) ID map with {ID: class}, or (N, H, W) masks with (N,) classes, as `Truth`."""
    truth_ids = torch.as_tensor(truth_ids).cpu()
    if truth_ids.dim() == 2:
        if not isinstance(truth_classes, Mapping):
            raise TypeError("an instance-ID map needs truth_classes as {ID: class}")
        return truth_from_id_map(truth_ids, truth_classes, crowd)
    if isinstance(truth_classes, Mapping):
        raise TypeError("truth masks (N, H, W) need truth_classes as a sequence of N classes")
    return truth_from_masks(truth_ids, truth_classes, crowd)


def flat_void(void: torch.Tensor | np.ndarray | None, pixel_count: int) -> torch.Tensor:
    """(P,) bool void pixels; none when `void` is None."""
    if void is None:
        return torch.zeros(pixel_count, dtype=torch.bool)
    flat = torch.as_tensor(void).cpu().reshape(-1) != 0
    if flat.numel() != pixel_count:
        raise ValueError("void differs in size from the masks")
    return flat


def accumulate(records: list[ImageRecord]) -> tuple[np.ndarray, np.ndarray] | None:
    """(T, R) precision at the recall points and (T,) final recall of one class and area range,
    as COCOeval.accumulate; None when no truth counts (COCO leaves -1 there)."""
    num_truths = sum(record.num_truths for record in records)
    if num_truths == 0:
        return None
    scores = np.concatenate([record.scores for record in records])
    order = np.argsort(-scores, kind="mergesort")
    matched = np.concatenate([record.matched for record in records], axis=1)[:, order]
    ignored = np.concatenate([record.ignored for record in records], axis=1)[:, order]
    true_positives = np.cumsum(matched & ~ignored, axis=1).astype(float)
    false_positives = np.cumsum(~matched & ~ignored, axis=1).astype(float)
    count = len(scores)
    recalls = true_positives / num_truths
    precisions = true_positives / (true_positives + false_positives + np.spacing(1))
    # the envelope: precision at recall r is the best precision at any recall >= r
    precisions = np.maximum.accumulate(precisions[:, ::-1], axis=1)[:, ::-1]
    sampled = np.zeros((len(recalls), len(RECALL_POINTS)))
    for threshold_index, curve in enumerate(recalls):
        indices = np.searchsorted(curve, RECALL_POINTS, side="left")
        reached = indices < count
        sampled[threshold_index, reached] = precisions[threshold_index, indices[reached]]
    final_recall = recalls[:, -1] if count else np.zeros(len(recalls))
    return sampled, final_recall


def mean_valid(values: np.ndarray) -> float:
    """Mean of the entries COCO counts (> -1), NaN when there are none."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else math.nan
