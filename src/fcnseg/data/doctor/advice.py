"""The label doctor's loss advice: a loss and class weighting to start from, by a rule on how
unevenly the training pixels fall into classes, and why.

The rule reads the *spread*: the most frequent class's pixels over the rarest present class's.

    spread <= 10            balanced     plain cross-entropy
    10 < spread <= 1000     moderate     cross-entropy, loss.class_weights: sqrt_median_frequency
    spread > 1000           extreme      the same, plus Dice (a class of a few pixels still counts)
    two classes                          one sigmoid output and binary cross-entropy (+ Dice and
                                         a weighted foreground when a class is under 10 %)

The moderate band is where fcnseg has a measurement: CamVid's classes spread 109-fold, and there
square-root median-frequency weights beat the full ones (README, "CamVid in 20 CPU minutes":
57.2 against 51.3 val mIoU; full weights painted rare classes over buildings). The extreme band
and the binary rule are common practice, not measured here, and the advice says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BALANCED_SPREAD = 10.0  # up to this, the classes are near enough even for plain cross-entropy
EXTREME_SPREAD = 1000.0  # beyond this, a class has under about 0.1 % of the pixels
RARE_BINARY_SHARE = 0.1  # two classes: below this share, the foreground is weighted

# The measurement behind the moderate band, quoted in the advice (README's CamVid results).
CAMVID_EVIDENCE = (
    "on CamVid (classes 109-fold apart) they scored 57.2 val mIoU against 51.3 for the full "
    "median-frequency weights, which painted rare classes over common ones (Building 46.2 IoU "
    "against 74.7; README, 'CamVid in 20 CPU minutes')"
)

Sections = dict[str, dict[str, Any]]


def class_spread(class_pixels: np.ndarray) -> float:
    """Pixels of the most frequent class over those of the rarest present one (1.0 when fewer
    than two classes are present)."""
    present = np.asarray(class_pixels, np.float64)
    present = present[present > 0]
    return float(present.max() / present.min()) if len(present) > 1 else 1.0


def suggest_loss(class_pixels: np.ndarray) -> tuple[str, Sections]:
    """A loss to start from, from the class balance: in words (with the reason), and as config
    sections (`loss`, and `data` where two classes are best learned by one sigmoid output)."""
    class_pixels = np.asarray(class_pixels)
    if len(class_pixels) == 2:
        return _binary_loss(class_pixels / max(class_pixels.sum(), 1))
    spread = class_spread(class_pixels)
    if spread <= BALANCED_SPREAD:
        reason = f"classes within {spread:.0f}-fold: plain cross-entropy"
        return reason, {"loss": {"terms": [{"name": "cross_entropy"}]}}
    weighted = {"class_weights": "sqrt_median_frequency"}
    if spread <= EXTREME_SPREAD:
        reason = (
            f"class pixels differ {spread:.0f}-fold (moderately imbalanced): cross-entropy with "
            f"square-root median-frequency class weights. Why: {CAMVID_EVIDENCE}"
        )
        return reason, {"loss": {"terms": [{"name": "cross_entropy"}], **weighted}}
    terms = [{"name": "cross_entropy"}, {"name": "dice", "weight": 1.0}]
    reason = (
        f"class pixels differ {spread:.0f}-fold (extremely imbalanced: beyond "
        f"{EXTREME_SPREAD:.0f}-fold): cross-entropy with square-root median-frequency class "
        "weights, the measured choice for moderate imbalance, plus Dice, which scores each "
        "class's overlap as a whole so that a class of a few pixels still counts; fcnseg has "
        "not measured this band, so compare it with cross-entropy alone on your val split"
    )
    return reason, {"loss": {"terms": terms, **weighted}}


def _binary_loss(share: np.ndarray) -> tuple[str, Sections]:
    """Two classes: one sigmoid output (data.num_classes: 1) with binary cross-entropy; when a
    class is rare, its foreground weighted and Dice added, which scores the rare class's overlap
    as a whole rather than by its few pixels."""
    data = {"num_classes": 1}
    if share.min() >= RARE_BINARY_SHARE:
        reason = "binary, classes balanced: one sigmoid output and binary cross-entropy"
        return reason, {"data": data, "loss": {"terms": [{"name": "binary_cross_entropy"}]}}
    terms = [{"name": "binary_cross_entropy"}, {"name": "dice", "weight": 1.0}]
    reason = f"binary with a rare class ({share.min():.1%} of the pixels): one sigmoid output, "
    reason += "binary cross-entropy weighted by median frequency, plus Dice"
    return reason, {"data": data, "loss": {"terms": terms, "class_weights": "median_frequency"}}
