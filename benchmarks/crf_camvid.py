"""Dense CRF post-processing on CamVid val: a small search of its settings, then with and without.

    .venv/bin/python benchmarks/crf_camvid.py RUN/last.pt [--data ../shared/data/camvid]
        [--search-images 20] [--limit N] [--threads 2]

1. Search, on the first `--search-images` val images (tune on val only: test is kept out): the
   network's scores are computed once, then the CRF runs with each of the 18 settings
   w1 in {3, 5, 10} x theta_beta in {5, 13, 20} x theta_alpha in {40, 80}, with w2 = 3,
   theta_gamma = 3, 5 iterations and the default window (11 samples, 4 pixels apart).
   Table: mIoU and boundary F1 of each, beside no CRF.
2. The full val split without and with the best setting (by mIoU): mIoU, boundary F1, per-class
   IoU (thin classes first: Pole, SignSymbol, Pedestrian), and the seconds per image of the
   network (as the checkpoint sees it: camvid.yaml's half resolution, logits back at 360x480)
   and of the CRF itself at 360x480.

Every score comes from fcnseg's own code: `fcnseg.load` makes the Predictor (whole images), the
CRF is what `fcnseg evaluate --crf` runs after the network (Predictor.scores: dense_crf on the
logits with the de-normalised image), and fcnseg.metrics.ConfusionMatrix scores the labels with
the boundary tolerance of fcnseg.report.evaluation, as `fcnseg evaluate` does.
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import replace
from pathlib import Path

import torch

import fcnseg
from fcnseg.config import CRFParameters
from fcnseg.data import make_dataset
from fcnseg.inference.predictor import labels_from_logits
from fcnseg.metrics import ConfusionMatrix, Scores
from fcnseg.models.crf import colour_image, dense_crf
from fcnseg.report.evaluation import BOUNDARY_TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "camvid"
THIN = ("Pole", "SignSymbol", "Pedestrian")


def grid() -> list[CRFParameters]:
    """The 18 settings searched (the issue's grid)."""
    return [
        CRFParameters(
            iterations=5,
            appearance_weight=w1,
            appearance_position_sigma=theta_alpha,
            appearance_colour_sigma=theta_beta,
            smoothness_weight=3.0,
            smoothness_sigma=3.0,
        )
        for w1, theta_beta, theta_alpha in itertools.product(
            (3.0, 5.0, 10.0), (5, 13, 20), (40, 80)
        )
    ]


def network_scores(predictor: fcnseg.Predictor, dataset, index: int):
    """(image (1, C, H, W) normalised, mask (1, H, W), logits (1, K, H, W), seconds)."""
    image, mask = dataset[index]
    start = time.perf_counter()
    logits = predictor.logits(image[None])
    return image[None], mask[None], logits, time.perf_counter() - start


def refine(predictor: fcnseg.Predictor, image, logits, parameters: CRFParameters):
    """The CRF as the Predictor runs it, and its seconds."""
    data = predictor.data
    start = time.perf_counter()
    with torch.inference_mode():
        refined = dense_crf(logits, colour_image(image, data.mean, data.std), parameters)
    return refined, time.perf_counter() - start


def new_matrix(predictor: fcnseg.Predictor) -> ConfusionMatrix:
    data = predictor.data
    return ConfusionMatrix(data.num_classes, data.ignore_index, False, BOUNDARY_TOLERANCE)


def search(predictor, dataset, count: int) -> tuple[CRFParameters, str]:
    """Score every setting of grid() on the first `count` images: the best and the table."""
    cached = [network_scores(predictor, dataset, i)[:3] for i in range(count)]
    rows, best = [], None
    plain = new_matrix(predictor)
    for _, mask, logits in cached:
        plain.update(labels_from_logits(logits), mask)
    rows.append(("no CRF", "", "", plain.compute()))
    for parameters in grid():
        matrix = new_matrix(predictor)
        for image, mask, logits in cached:
            matrix.update(labels_from_logits(refine(predictor, image, logits, parameters)[0]), mask)
        scores = matrix.compute()
        p = parameters
        rows.append((f"{p.appearance_weight:g}", f"{p.appearance_position_sigma:g}",
                     f"{p.appearance_colour_sigma:g}", scores))  # fmt: skip
        if best is None or scores.miou > best[1].miou:
            best = (parameters, scores)
        print(f"  searched {len(rows) - 1}/{len(grid())}", flush=True)
    lines = [
        f"Search on the first {count} val images (w2 = 3, theta_gamma = 3, 5 iterations, "
        "window 11 x dilation 4):",
        "",
        "| w1 | theta_alpha | theta_beta | mIoU | boundary F1 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for w1, alpha, beta, scores in rows:
        lines.append(f"| {w1 or 'no CRF'} | {alpha} | {beta} | {_percent(scores.miou)} "
                     f"| {_percent(scores.boundary_f1)} |")  # fmt: skip
    assert best is not None
    return best[0], "\n".join(lines)


def full_val(predictor, dataset, parameters: CRFParameters, count: int) -> str:
    """Both ways over `count` val images: the scores and the time per image, as markdown."""
    plain, refined = new_matrix(predictor), new_matrix(predictor)
    network_seconds, crf_seconds = [], []
    for index in range(count):
        image, mask, logits, seconds = network_scores(predictor, dataset, index)
        better, crf_time = refine(predictor, image, logits, parameters)
        plain.update(labels_from_logits(logits), mask)
        refined.update(labels_from_logits(better), mask)
        network_seconds.append(seconds)
        crf_seconds.append(crf_time)
    names = predictor.class_names
    size = "x".join(str(side) for side in dataset[0][0].shape[-2:])
    results = {"no CRF": plain.compute(), "dense CRF": refined.compute()}
    thin = [name for name in THIN if name in names]
    lines = [
        f"Val, {count} images at {size}; CRF: {parameters}",
        "",
        "| | mIoU | boundary F1 | " + " | ".join(thin) + " | network s/img | CRF s/img |",
        "|---|---:|---:|" + "---:|" * len(thin) + "---:|---:|",
    ]
    for label, scores in results.items():
        per_class = [_percent(scores.per_class_iou[names.index(name)]) for name in thin]
        crf = f"{_median(crf_seconds):.3f}" if label == "dense CRF" else "-"
        lines.append(
            f"| {label} | {_percent(scores.miou)} | {_percent(scores.boundary_f1)} | "
            + " | ".join(per_class)
            + f" | {_median(network_seconds):.3f} | {crf} |"
        )
    return "\n".join([*lines, "", per_class_table(names, results)])


def per_class_table(names: list[str], results: dict[str, Scores]) -> str:
    plain, refined = results["no CRF"], results["dense CRF"]
    lines = ["| class | IoU, no CRF | IoU, CRF | change |", "|---|---:|---:|---:|"]
    for index, name in enumerate(names):
        before, after = plain.per_class_iou[index], refined.per_class_iou[index]
        lines.append(
            f"| {name} | {_percent(before)} | {_percent(after)} | {100 * (after - before):+.1f} |"
        )
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.1f}"


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkpoint", help="a CamVid checkpoint, e.g. runs/camvid-cpu-20min/last.pt"
    )
    parser.add_argument("--data", type=Path, default=CAMVID, help="CamVid folder (val split)")
    parser.add_argument("--search-images", type=int, default=20, help="val images searched on")
    parser.add_argument("--limit", type=int, help="at most this many images anywhere (smoke)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    if not (args.data / "val").is_dir():
        raise SystemExit(f"CamVid val is not at {args.data}/val; see ../shared/data/README.md.")
    torch.set_num_threads(args.threads)
    options = fcnseg.InferenceOptions(mode="whole")
    predictor = fcnseg.load(args.checkpoint, device="cpu", options=options)
    data = replace(predictor.data, kind="folder", root=str(args.data), val_split="val")
    dataset = make_dataset(data, "val", train=False)
    limit = args.limit or len(dataset)
    best, table = search(predictor, dataset, min(args.search_images, limit, len(dataset)))
    print(table, "\n", flush=True)
    print(full_val(predictor, dataset, best, min(limit, len(dataset))))


if __name__ == "__main__":
    main()
