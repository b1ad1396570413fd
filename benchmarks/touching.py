"""Touching instances on the generated shapes (issue 11): are objects that touch told apart?

A trained instance checkpoint (default: the instance demo's, made by `fcnseg demo --task
instance`) runs on freshly generated scenes of the demo's kind (a seed no training split uses),
and is scored three ways with fcnseg's mask AP (COCO's definition, fcnseg.metrics.instances):

- all instances;
- touching instances alone: the truth instances with a 4-adjacent neighbour are the targets, and
  every other truth instance is a crowd region (COCO's iscrowd), so a detection of an isolated
  shape is neither a hit nor a false positive;
- isolated instances alone, the other way round.

It also counts the touching pairs (a, b) whose two shapes were both found, each by its own
detection at mask IoU >= 0.5 (score >= 0.5, the model's own threshold): "separated"; and those
where one detection covers most of both: "merged".

    .venv/bin/fcnseg demo --task instance                    # runs/demo-instance (2-3 min)
    .venv/bin/python benchmarks/touching.py [--checkpoint runs/demo-instance/best.pt]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import fcnseg
from fcnseg.config import load_config
from fcnseg.data.instances import generate_instances, touching_pairs
from fcnseg.metrics.instances import InstanceEvaluator

ROOT = Path(__file__).resolve().parents[1]
SEED = 777_000  # training splits use train.seed + 1000 x split: far from this
MATCH_IOU = 0.5


@dataclass
class PairCounts:
    pairs: int = 0
    separated: int = 0  # both found, by two different detections
    merged: int = 0  # one detection holds most of both


def mask_iou(first: np.ndarray, second: np.ndarray) -> float:
    union = np.logical_or(first, second).sum()
    return float(np.logical_and(first, second).sum() / union) if union else 0.0


def count_pairs(masks: np.ndarray, ids: np.ndarray, counts: PairCounts) -> None:
    """Add one image's touching pairs to `counts`; `masks` (M, H, W) are the kept detections."""
    for a, b in touching_pairs(ids):
        counts.pairs += 1
        best = []
        for instance in (a, b):
            truth = ids == instance
            ious = [mask_iou(mask, truth) for mask in masks]
            best.append(int(np.argmax(ious)) if ious and max(ious) >= MATCH_IOU else -1)
        if best[0] >= 0 and best[1] >= 0 and best[0] != best[1]:
            counts.separated += 1
        for mask in masks:  # one detection with more than half of each shape's pixels
            if all(np.logical_and(mask, ids == i).sum() > 0.5 * (ids == i).sum() for i in (a, b)):
                counts.merged += 1
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "runs/demo-instance/best.pt"))
    parser.add_argument("--images", type=int, default=300, help="generated scenes to score")
    args = parser.parse_args()
    torch.set_num_threads(2)
    predictor = fcnseg.load(args.checkpoint, device="cpu")
    config = load_config(Path(args.checkpoint).parent / "config.yaml")
    size = tuple(config.data.synthetic_size)
    threshold = float(getattr(predictor.model, "score_threshold", 0.5))
    maximum = max(100, int(getattr(predictor.model, "max_detections", 100)))
    evaluators = {name: InstanceEvaluator(maximum) for name in ("all", "touching", "isolated")}
    counts, with_pairs = PairCounts(), 0
    for index in range(args.images):
        sample = generate_instances(SEED, index, size)
        found = predictor.predict_image(sample.image)
        pairs = touching_pairs(sample.ids)
        touching = {i for pair in pairs for i in pair}
        isolated = set(range(1, len(sample.classes))) - touching
        classes = {i: int(sample.classes[i]) for i in range(1, len(sample.classes))}
        for name, crowd in (("all", set()), ("touching", isolated), ("isolated", touching)):
            evaluators[name].update(
                found.masks, found.scores, found.classes, sample.ids, classes, crowd=crowd
            )
        kept = found.masks[found.scores >= threshold].numpy()
        count_pairs(kept, sample.ids, counts)
        with_pairs += bool(pairs)
    print(
        f"{args.images} generated scenes of {size[0]}x{size[1]} (seed {SEED}), "
        f"{with_pairs} with touching shapes; checkpoint {args.checkpoint}\n"
    )
    print("| instances scored | AP | AP50 | AP75 |")
    print("|---|---|---|---|")
    for name, evaluator in evaluators.items():
        scores = evaluator.compute()
        print(
            f"| {name} | {100 * scores.ap:.1f} | {100 * scores.ap50:.1f} | "
            f"{100 * scores.ap75:.1f} |"
        )
    share = 100 / max(counts.pairs, 1)
    print(
        f"\ntouching pairs: {counts.pairs}; separated (both found at IoU >= {MATCH_IOU}, by two "
        f"detections): {counts.separated} ({share * counts.separated:.1f}%); merged (one "
        f"detection holds most of both): {counts.merged} ({share * counts.merged:.1f}%)"
    )


if __name__ == "__main__":
    main()
