"""The "semantic + watershed" instance baseline on DSB 2018 nuclei (issue 11, "dsb-cpu-20min").

    1. 3-class masks (background, interior, 2-px boundary band) of ../shared/data/dsb2018_nuclei
       written into runs/dsb-boundaries (skipped when that folder is there already);
    2. `fcnseg train dsb_watershed.yaml` on them: a plain semantic run, 20 minutes of wall clock;
    3. the FINAL weights (last.pt: val does not pick them) scored on val's instances: the
       semantic probabilities through fcnseg.inference.watershed.WatershedPredictor, into an
       InstanceEvaluator at up to 1000 detections per image (nuclei are many);
    4. a markdown row (AP, AP50, AP75, DSB, in %) printed and results.json written into the run.

The peer is ../shared/peers/dsb_peer.py --recipe unet-watershed. Smoke run (minutes, not the
protocol): .venv/bin/python benchmarks/dsb_watershed.py --limit 8 --set train.max_minutes=0.5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

import fcnseg
from fcnseg.config import DataConfig
from fcnseg.data.instances import InstanceFolder, write_boundary_masks
from fcnseg.inference.instances import add_to_evaluator
from fcnseg.inference.watershed import WatershedPredictor
from fcnseg.metrics.instances import InstanceEvaluator

ROOT = Path(__file__).resolve().parents[1]
DSB = ROOT.parent / "shared" / "data" / "dsb2018_nuclei"
RECIPE = ROOT / "src" / "fcnseg" / "configs" / "dsb_watershed.yaml"
FCNSEG = [sys.executable, "-m", "fcnseg"]
MAX_DETECTIONS = 1000
VAL_CROP = 256  # the smallest DSB images are 256x256


def boundaries(data: Path, out: Path, limit: int | None) -> Path:
    """The 3-class dataset, written unless already there (a limited one goes to its own folder)."""
    folder = out if limit is None else out.with_name(f"{out.name}-first{limit}")
    if (folder / "val" / "masks").is_dir():
        print(f"boundary masks: {folder} (already written)")
        return folder
    started = time.perf_counter()
    # Val at 256x256 centre crops: the trainer's per-epoch semantic check batches it. The
    # instance scores below read the original val images whole.
    written = write_boundary_masks(data, folder, ["train"], limit=limit)
    written |= write_boundary_masks(data, folder, ["val"], limit=limit, center_crop=VAL_CROP)
    print(f"boundary masks: {written} into {folder} in {time.perf_counter() - started:.1f} s")
    return folder


def train(dataset: Path, run: Path, sets: list[str]) -> None:
    """The public command, so that the weights are what a user gets from it."""
    overrides = [f"data.root={dataset}", *sets]
    command = [*FCNSEG, "train", str(RECIPE), "--out", str(run), "--overwrite", "--no-progress"]
    subprocess.run([*command, *(f"--set={item}" for item in overrides)], check=True, cwd=ROOT)


def score(run: Path, data: Path, limit: int | None) -> dict:
    """last.pt's instances on val, through the watershed, as InstanceScores.to_dict."""
    predictor = WatershedPredictor(fcnseg.load(run / "last.pt", device="cpu"))
    source = InstanceFolder(DataConfig(kind="folder", root=str(data), layout="folder"), "val")
    count = len(source) if limit is None else min(limit, len(source))
    evaluator = InstanceEvaluator(max_detections=MAX_DETECTIONS)
    seconds = 0.0  # in the predictor only (network, watershed, pasting), as fcnseg evaluate
    for index in range(count):
        image, target = source.load(index)  # (H, W, C) uint8, (2, H, W) int64
        started = time.perf_counter()
        found = predictor.predict_image(image)
        seconds += time.perf_counter() - started
        add_to_evaluator(evaluator, found, torch.from_numpy(target), source.config.ignore_index)
    result = evaluator.compute().to_dict(predictor.class_names)
    result["per_image_dsb"] = dict(zip(source.names[:count], result["per_image_dsb"], strict=True))
    result["inference_images_per_second"] = count / seconds
    return result


def markdown_row(result: dict) -> str:
    def percent(key: str) -> str:
        value = result[key]
        return "n/a" if value is None else f"{100 * value:.1f}"

    figures = " | ".join(percent(key) for key in ("ap", "ap50", "ap75", "dsb_score"))
    return (
        "| recipe | AP | AP50 | AP75 | DSB |\n|---|---|---|---|---|\n"
        f"| fcnseg LinkNet/ResNet-18 + watershed | {figures} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DSB, help="the DSB instance folder")
    parser.add_argument("--boundaries", type=Path, default=ROOT / "runs" / "dsb-boundaries")
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "dsb-watershed")
    parser.add_argument("--limit", type=int, help="first N images of each split (smoke runs)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--skip-training", action="store_true", help="score the run as it is")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no DSB data at {args.data}; see ../shared/data/README.md")
    dataset = boundaries(args.data, args.boundaries, args.limit)
    if not args.skip_training:
        train(dataset, args.run, args.sets)
    result = score(args.run, args.data, args.limit)
    result["protocol"] = {"limit": args.limit, "overrides": args.sets, "weights": "last.pt"}
    (args.run / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown_row(result))
    print(f"inference: {result['inference_images_per_second']:.2f} images/s")
    print(f"results: {args.run / 'results.json'}")


if __name__ == "__main__":
    main()
