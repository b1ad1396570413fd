"""The "dsb-cpu-20min" benchmark (issues 11, 12): fcnseg's nuclei recipes beside the peers.

Protocol: train on the 464 DSB 2018 training images (../shared/data/dsb2018_nuclei) for 20
minutes on this machine's 2 CPU cores, counted from the first step; then score the FINAL weights
(last.pt, not the best epoch: val is not used to pick them) on the 100 val images, each in full at
its own size: COCO mask AP / AP50 / AP75 / AP_small / AP_medium ranking up to 1000 detections per
image (an image holds up to 375 nuclei), and the DSB 2018 score, overall and per image type.

The peers are the usual user recipes, ../shared/peers/dsb_peer.py (U-Net + watershed, Mask
R-CNN). Run them on the same machine, before or after this one and never at the same time:

    .venv/bin/python benchmarks/dsb.py train                      # ~20 min + validations
    .venv/bin/python benchmarks/dsb.py train --config dsb_fcis --run runs/dsb-cpu-20min-fcis
    /tmp/peer-venv/bin/python ../shared/peers/dsb_peer.py --recipe unet-watershed \\
        --out /tmp/dsb-peer-unet                                  # see ../shared/peers/README.md
    .venv/bin/python benchmarks/dsb_watershed.py                  # fcnseg's watershed baseline
    .venv/bin/python benchmarks/dsb.py table --peer /tmp/dsb-peer-unet/results.json \\
        [--peer /tmp/dsb-peer-maskrcnn/results.json] [--watershed runs/dsb-watershed] \\
        [--also RUN ...]

`train` runs the public commands, `fcnseg train dsb_instancefcn` (or --config) and `fcnseg evaluate
RUN/last.pt`, so the result is what a user gets from them (`--minutes` shortens the budget for a
smoke run); `table` prints the comparison as markdown. fcnseg's metrics.json has no image types,
so they are computed here from the val images with the data README's rule (`image_type`), which
the peer applies too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DSB = ROOT.parent / "shared" / "data" / "dsb2018_nuclei"
DEFAULT_RUN = ROOT / "runs" / "dsb-cpu-20min"
TRAIN_IMAGES = 464  # the training split: epochs = images seen / this
FCNSEG = [sys.executable, "-m", "fcnseg"]
EVALUATION = "evaluation-val-last"  # last.pt scored on val, inside the run folder
TYPES = ("fluorescence", "brightfield", "histology")
GREY_SPREAD = 2.0  # mean R, G, B max-min spread under this: a greyscale image
DARK_MEDIAN = 100.0  # greyscale with a median intensity under this: fluorescence


def image_type(image: np.ndarray) -> str:
    """The data README's rule on an (H, W, 3) uint8 RGB image: greyscale when the mean over
    pixels of the max-min spread across R, G, B is under 2 levels, then fluorescence (dark
    background, median < 100) or brightfield; colour images are stained tissue (histology)."""
    pixels = image.astype(np.float32)
    if (pixels.max(axis=2) - pixels.min(axis=2)).mean() >= GREY_SPREAD:
        return "histology"
    return "fluorescence" if np.median(pixels.mean(axis=2)) < DARK_MEDIAN else "brightfield"


def image_types(images_dir: Path) -> dict[str, str]:
    """Image name (file stem, as metrics.json's per_image_dsb keys) -> image type."""
    return {
        path.stem: image_type(np.asarray(Image.open(path).convert("RGB")))
        for path in sorted(images_dir.glob("*.png"))
    }


def train(run_dir: Path, config: str, data: Path, minutes: float | None, sets: list[str]) -> None:
    """Train the recipe into run_dir, then evaluate its last weights on val."""
    if not data.is_dir():
        raise SystemExit(f"The DSB nuclei are not at {data}; see ../shared/data/README.md.")
    overrides = [f"data.root={data}", *sets]
    overrides += [f"train.max_minutes={minutes}"] if minutes is not None else []
    command = [*FCNSEG, "train", config, "--out", str(run_dir), "--overwrite", "--no-progress"]
    command += [argument for override in overrides for argument in ("--set", override)]
    subprocess.run(command, check=True, cwd=ROOT)
    evaluation = ["--data", str(data), "--split", "val", "--out", str(run_dir / EVALUATION)]
    last = str(run_dir / "last.pt")
    subprocess.run([*FCNSEG, "evaluate", last, *evaluation, "--overwrite"], check=True, cwd=ROOT)


def dsb_by_type(per_image: dict[str, float | None], types: dict[str, str]) -> dict[str, float]:
    """Mean DSB score of each image type; NaN for a type without scored images (None: an image
    without nuclei or predictions, which the DSB score leaves undefined)."""
    scores: dict[str, list[float]] = {name: [] for name in TYPES}
    for image, score in per_image.items():
        if score is not None:
            scores[types[image]].append(score)
    return {name: float(np.mean(values)) if values else np.nan for name, values in scores.items()}


def ours(run_dir: Path, types: dict[str, str]) -> dict:
    """The figures of an fcnseg run: its training history and last.pt's val scores."""
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    metrics = json.loads((run_dir / EVALUATION / "metrics.json").read_text())
    images = history[-1]["step"] * config["data"]["batch_size"]
    seconds = history[-1]["elapsed_seconds"]
    options = config["model"].get("options") or {}
    data = config["data"]
    return {
        "recipe": f"fcnseg: {config['model']['name']}/{options.get('backbone')}, "
        f"width {options.get('width')}, images x{data.get('train_scale', 1.0):g}, "
        f"{data.get('augment')} (`{config['name']}`)",
        "seconds": seconds,
        "epochs": images / TRAIN_IMAGES,
        "images_per_second": images / seconds,
        "inference_images_per_second": metrics.get("inference_images_per_second"),
        **{key: metrics[key] for key in ("ap", "ap50", "ap75", "dsb_score")},
        "max_detections": metrics["max_detections"],
        "dsb_by_type": dsb_by_type(metrics["per_image_dsb"], types),
    }


def watershed(run_dir: Path, types: dict[str, str]) -> dict:
    """The figures of benchmarks/dsb_watershed.py's run: a semantic run, scored by the
    watershed into results.json (per-image DSB keyed by image name)."""
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    results = json.loads((run_dir / "results.json").read_text())
    images = history[-1]["step"] * config["data"]["batch_size"]
    seconds = history[-1]["elapsed_seconds"]
    backbone = (config["model"].get("options") or {}).get("backbone", "")
    return {
        "recipe": f"fcnseg: {config['model']['name']}/{backbone} + watershed (`dsb_watershed.py`)",
        "seconds": seconds,
        "epochs": images / TRAIN_IMAGES,
        "images_per_second": images / seconds,
        "inference_images_per_second": results.get("inference_images_per_second"),
        **{key: results[key] for key in ("ap", "ap50", "ap75", "dsb_score")},
        "max_detections": results["max_detections"],
        "dsb_by_type": dsb_by_type(results["per_image_dsb"], types),
    }


def peer(results_path: Path) -> dict:
    """The figures of dsb_peer.py's results.json (fractions, as ours; its log prints %)."""
    results = json.loads(results_path.read_text())
    train_stats, val = results["train"], results["val"]
    coco = val["coco_mask"]
    by_type = val["dsb_score_by_type"]
    return {
        "recipe": f"peer: {results['info']['recipe']} (`dsb_peer.py`)",
        "seconds": train_stats["train_seconds"],
        "epochs": train_stats["epochs_float"],
        "images_per_second": train_stats["train_images_per_s"],
        "inference_images_per_second": val.get("eval_images_per_s_predict"),
        "ap": coco["AP"],
        "ap50": coco["AP50"],
        "ap75": coco["AP75"],
        "dsb_score": val["dsb_score"],
        "max_detections": coco["max_dets"],
        "dsb_by_type": {
            name: by_type[name]["dsb_score"] if name in by_type else float("nan") for name in TYPES
        },
    }


def table(rows: list[dict]) -> str:
    """Markdown: one row per recipe, figures in %."""
    header = "| recipe | training | epochs | train img/s | inference img/s | AP | AP50 | AP75 "
    header += "| DSB | " + " | ".join(f"DSB {name}" for name in TYPES) + " |"
    lines = [header, "|---|" + "---:|" * (8 + len(TYPES))]
    for row in rows:
        figures = [row[key] for key in ("ap", "ap50", "ap75", "dsb_score")]
        figures += [row["dsb_by_type"][name] for name in TYPES]
        lines.append(
            f"| {row['recipe']} | {row['seconds'] / 60:.1f} min | {row['epochs']:.1f} "
            f"| {row['images_per_second']:.2f} | {_rate(row['inference_images_per_second'])} | "
            + " | ".join(map(_percent, figures))
            + " |"
        )
    limits = sorted({row["max_detections"] for row in rows})
    lines += ["", f"COCO mask AP at up to {'/'.join(map(str, limits))} detections per image."]
    return "\n".join(lines)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{100 * value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["train", "table"])
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN, help="fcnseg run folder")
    parser.add_argument("--config", default="dsb_instancefcn", help="recipe name or YAML path")
    parser.add_argument("--data", type=Path, default=DSB, help="the DSB nuclei folder")
    parser.add_argument("--minutes", type=float, help="training budget (smoke runs); default 20")
    parser.add_argument("--set", action="append", default=[], help="config override k=v")
    parser.add_argument("--also", type=Path, action="append", default=[], help="more runs")
    parser.add_argument("--peer", type=Path, action="append", default=[], help="results.json")
    parser.add_argument(
        "--watershed", type=Path, action="append", default=[], help="dsb_watershed.py run"
    )
    args = parser.parse_args()
    if args.action == "train":
        train(args.run, args.config, args.data, args.minutes, args.set)
    types = image_types(args.data / "val" / "images")
    rows = [ours(run, types) for run in (args.run, *args.also)]
    rows += [watershed(run, types) for run in args.watershed]
    rows += [peer(path) for path in args.peer]
    print(table(rows))


if __name__ == "__main__":
    main()
