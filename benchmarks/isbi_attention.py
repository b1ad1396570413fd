"""U-Net against Attention U-Net on the ISBI 2012 EM membranes (the U-Net paper's data).

Protocol: both recipes, configs/isbi_unet.yaml and configs/isbi_attention_unet.yaml (the same
but for `attention: true`), train on slices 00-24 of ../shared/data/isbi2012_em/train with the
same seed for the same wall-clock budget (8 minutes each by default) on this machine's 2 CPU
cores, one after the other. Their FINAL weights (last.pt: the held-out slices pick nothing) are
scored on slices 25-29, whole 512x512 slices: Dice and IoU of the membrane class (mask value 0),
with the training time and images/s. The Attention U-Net's evaluation report (report.html and
attention.png in its evaluation folder) shows each gate's coefficients on the held-out slices.

    .venv/bin/python benchmarks/isbi_attention.py train              # ~2 x 8 min + evaluation
    .venv/bin/python benchmarks/isbi_attention.py table              # the table again

`split` (run by `train` too) writes the split as a lists-layout folder, runs/isbi2012-split:
images/ and masks/ are links to the shared folders (nothing is copied or changed there),
train.txt and val.txt name the slices. `train` runs the public commands, `fcnseg train` and
`fcnseg evaluate RUN/last.pt`, so the figures are what a user gets from them. Smoke run (not
the protocol): `--minutes 0.2 --runs /tmp/isbi-smoke`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012_em"
RECIPES = ("isbi_unet", "isbi_attention_unet")
TRAIN_SLICES, HELD_OUT = range(25), range(25, 30)
MEMBRANE = 0  # class index of the membrane (mask value 0)
FCNSEG = [sys.executable, "-m", "fcnseg"]
EVALUATION = "evaluation-val-last"  # last.pt scored on the held-out slices, inside the run


def write_split(folder: Path) -> Path:
    """The lists layout of the split: links to the slices and masks, and the two name lists."""
    if not (ISBI / "train" / "masks").is_dir():
        raise SystemExit(f"ISBI 2012 is not at {ISBI}; see ../shared/data/README.md.")
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("images", "masks"):
        link = folder / name
        if not link.is_symlink():
            link.symlink_to((ISBI / "train" / name).resolve(), target_is_directory=True)
    for split, slices in (("train", TRAIN_SLICES), ("val", HELD_OUT)):
        (folder / f"{split}.txt").write_text("".join(f"{index:02d}\n" for index in slices))
    return folder


def train(run_dir: Path, recipe: str, split: Path, minutes: float, sets: list[str]) -> None:
    """Train one recipe into run_dir, then evaluate its last weights on the held-out slices."""
    overrides = [f"data.root={split}", f"train.max_minutes={minutes}", *sets]
    command = [*FCNSEG, "train", recipe, "--out", str(run_dir), "--overwrite", "--no-progress"]
    command += [argument for override in overrides for argument in ("--set", override)]
    subprocess.run(command, check=True, cwd=ROOT)
    evaluation = ["--data", str(split), "--split", "val", "--out", str(run_dir / EVALUATION)]
    last = str(run_dir / "last.pt")
    subprocess.run([*FCNSEG, "evaluate", last, *evaluation, "--overwrite"], check=True, cwd=ROOT)


def figures(run_dir: Path) -> dict:
    """Membrane Dice and IoU of last.pt on the held-out slices, training time and speed."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    metrics = json.loads((run_dir / EVALUATION / "metrics.json").read_text())
    images = history[-1]["step"] * config["data"]["batch_size"]
    seconds = history[-1]["elapsed_seconds"]
    attention = bool(config["model"]["options"].get("attention"))
    return {
        "model": "Attention U-Net" if attention else "U-Net",
        "epochs": images / len(TRAIN_SLICES),
        "seconds": seconds,
        "images_per_second": images / seconds,
        "dice": metrics["per_class_dice"][MEMBRANE],
        "iou": metrics["per_class_iou"][MEMBRANE],
        "pixel_accuracy": metrics["pixel_accuracy"],
    }


def table(rows: list[dict]) -> str:
    """Markdown: one row per model."""
    lines = [
        "| model | training | epochs (crops) | train img/s | membrane Dice | membrane IoU "
        "| pixel acc. |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['seconds'] / 60:.1f} min | {row['epochs']:.1f} "
            f"| {row['images_per_second']:.2f} | {100 * row['dice']:.1f} "
            f"| {100 * row['iou']:.1f} | {100 * row['pixel_accuracy']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["split", "train", "table"])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs", help="where the runs go")
    parser.add_argument("--minutes", type=float, default=8.0, help="training budget per model")
    parser.add_argument("--set", action="append", default=[], help="config override k=v")
    args = parser.parse_args()
    split = args.runs / "isbi2012-split"
    runs = [args.runs / f"isbi-{recipe.removeprefix('isbi_')}" for recipe in RECIPES]
    if args.action in ("split", "train"):
        print(f"split: {write_split(split)}")
    if args.action == "train":
        for recipe, run_dir in zip(RECIPES, runs, strict=True):
            train(run_dir, recipe, split, args.minutes, args.set)
    if args.action in ("train", "table"):
        print(table([figures(run_dir) for run_dir in runs]))
        print(f"\nattention maps: {runs[1] / EVALUATION / 'attention.png'} (and report.html)")


if __name__ == "__main__":
    main()
