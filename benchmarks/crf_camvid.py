"""Dense CRF post-processing on CamVid val: a small search of its settings, then with and without.

    .venv/bin/python benchmarks/crf_camvid.py RUN/last.pt [--data ../shared/data/camvid]
        [--search-images 20] [--limit N] [--threads 2]

1. Search, on the first `--search-images` val images (tune on val only: test is kept out): the
   network's scores are computed once, then the CRF runs with each setting of the grid, by
   default the 18 of w1 (appearance_weight) in {3, 5, 10} x theta_beta (appearance_colour_sigma)
   in {5, 13, 20} x theta_alpha (appearance_position_sigma) in {40, 80}, the rest at the
   defaults (w2 = 3, theta_gamma = 3, 5 iterations, a window of 11 samples 4 pixels apart);
   `--grid FIELD=v1,v2` sets any CRFParameters field's values. Table: mIoU and boundary F1 of
   each, beside no CRF.
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
from dataclasses import fields, replace
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


# The searched values of each CRF setting (CRFParameters field -> values); --grid changes any.
GRID: dict[str, tuple[float, ...]] = {
    "appearance_weight": (3.0, 5.0, 10.0),
    "appearance_colour_sigma": (5, 13, 20),
    "appearance_position_sigma": (40, 80),
}


def grid(values: dict[str, tuple[float, ...]]) -> list[CRFParameters]:
    """Every combination of the searched values (the other settings at their defaults)."""
    names = list(values)
    return [
        CRFParameters(**dict(zip(names, combination, strict=True)))
        for combination in itertools.product(*values.values())
    ]


def parse_grid(items: list[str]) -> dict[str, tuple[float, ...]]:
    """--grid appearance_weight=1,2,3 ... -> GRID with those fields replaced or added."""
    values = dict(GRID)
    for item in items:
        name, _, numbers = item.partition("=")
        values[name.strip()] = tuple(float(n) if "." in n else int(n) for n in numbers.split(","))
    return values


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


def search(predictor, dataset, count: int, settings: list[CRFParameters]):
    """Score every setting on the first `count` images: the best (by mIoU) and the table, whose
    columns are the settings that vary."""
    cached = [network_scores(predictor, dataset, i)[:3] for i in range(count)]
    varied = [
        f.name for f in fields(CRFParameters) if len({getattr(p, f.name) for p in settings}) > 1
    ]
    plain = new_matrix(predictor)
    for _, mask, logits in cached:
        plain.update(labels_from_logits(logits), mask)
    rows = [(["no CRF"] + [""] * (len(varied) - 1), plain.compute())]
    best = None
    for number, parameters in enumerate(settings, start=1):
        matrix = new_matrix(predictor)
        for image, mask, logits in cached:
            matrix.update(labels_from_logits(refine(predictor, image, logits, parameters)[0]), mask)
        scores = matrix.compute()
        rows.append(([f"{getattr(parameters, name):g}" for name in varied], scores))
        if best is None or scores.miou > best[1].miou:
            best = (parameters, scores)
        print(f"  searched {number}/{len(settings)}", flush=True)
    fixed = [f"{f.name} {getattr(settings[0], f.name):g}" for f in fields(CRFParameters)]
    fixed = [text for text in fixed if text.split()[0] not in varied]
    lines = [f"Search on the first {count} val images ({', '.join(fixed)}):", ""]
    lines += ["| " + " | ".join(varied) + " | mIoU | boundary F1 |"]
    lines += ["|" + "---:|" * (len(varied) + 2)]
    for values, scores in rows:
        lines.append(f"| {' | '.join(values)} | {_percent(scores.miou)} "
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
    parser.add_argument(
        "--grid", action="append", default=[], help="searched values, e.g. window=5,7 (repeatable)"
    )
    args = parser.parse_args()
    if not (args.data / "val").is_dir():
        raise SystemExit(f"CamVid val is not at {args.data}/val; see ../shared/data/README.md.")
    torch.set_num_threads(args.threads)
    options = fcnseg.InferenceOptions(mode="whole")
    predictor = fcnseg.load(args.checkpoint, device="cpu", options=options)
    data = replace(predictor.data, kind="folder", root=str(args.data), val_split="val")
    dataset = make_dataset(data, "val", train=False)
    limit = args.limit or len(dataset)
    settings = grid(parse_grid(args.grid))
    best, table = search(predictor, dataset, min(args.search_images, limit, len(dataset)), settings)
    print(table, "\n", flush=True)
    print(full_val(predictor, dataset, best, min(limit, len(dataset))))


if __name__ == "__main__":
    main()
