"""How an instance model's post-processing moves its val scores (issue 11): mask NMS threshold,
score threshold, and the score floor of the DSB map, on one trained checkpoint's predictions.

The model predicts each val image once per NMS threshold, keeping every detection down to the
lowest score threshold asked for; a higher threshold then keeps a subset, which is exactly what
the model would have kept (greedy NMS never lets a lower score suppress a higher one). AP ranks
every kept detection; the DSB score pastes only those at or above the DSB floor.

    .venv/bin/python benchmarks/instance_postprocessing.py runs/dsb-cpu-20min/last.pt \
        --data ../shared/data/dsb2018_nuclei --nms 0.5 0.3
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

import fcnseg
from fcnseg.data.instances import make_instance_dataset
from fcnseg.inference.instances import add_to_evaluator, evaluation_max_detections
from fcnseg.metrics.instances import InstanceEvaluator
from fcnseg.models.instances import Instances


def kept_above(found: Instances, threshold: float) -> Instances:
    keep = found.scores >= threshold
    return Instances(found.masks[keep], found.classes[keep], found.scores[keep])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data", required=True, help="the dataset root (folder layout)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--nms", type=float, nargs="+", default=[0.5, 0.3])
    parser.add_argument("--scores", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--dsb-floors", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9])
    args = parser.parse_args()
    torch.set_num_threads(2)
    predictor = fcnseg.load(args.checkpoint, device="cpu")
    data = replace(predictor.data, kind="folder", root=args.data)
    dataset = make_instance_dataset(data, args.split, train=False)
    items = [dataset[index] for index in range(len(dataset))]
    model = predictor.model
    model.score_threshold = min(args.scores)
    print("| mask NMS | score >= | DSB floor | AP | AP50 | AP75 | DSB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for nms in args.nms:
        model.nms_threshold = nms
        found = [predictor.instances(image[None])[0] for image, _ in items]
        for threshold in sorted(args.scores):
            kept = [kept_above(one, threshold) for one in found]
            for floor in sorted({max(threshold, floor) for floor in args.dsb_floors}):
                evaluator = InstanceEvaluator(evaluation_max_detections(model), floor)
                for one, (_, target) in zip(kept, items, strict=True):
                    add_to_evaluator(evaluator, one, target, data.ignore_index)
                scores = evaluator.compute()
                figures = (scores.ap, scores.ap50, scores.ap75, scores.dsb_score)
                row = " | ".join(f"{100 * value:.1f}" for value in figures)
                print(f"| {nms} | {threshold} | {floor} | {row} |", flush=True)


if __name__ == "__main__":
    main()
