"""The "camvid-cpu-20min" benchmark (issue 4): fcnseg's CamVid recipe beside the peer recipe.

Protocol: train on the 367 CamVid training images at half resolution (240x180) for 20 minutes of
wall clock on this machine's 2 CPU cores; then score the FINAL weights (last.pt, not the best
epoch: val is not used to pick them) on the 101 val images at full resolution: the network sees
the image at half resolution, its logits are upsampled to 360x480, void is ignored, and the
mIoU is the mean over the 11 classes.

The peer is the usual user recipe, ../shared/peers/camvid_peer.py (segmentation-models-pytorch
U-Net/ResNet-34 from scratch, Adam 1e-3, batch 8, cross-entropy). Run it on the same machine,
before or after this one and never at the same time, so that both see the same machine:

    .venv/bin/python benchmarks/camvid.py train                   # ~22 min: trains, evaluates
    HF_HUB_OFFLINE=1 NO_ALBUMENTATIONS_UPDATE=1 /tmp/peer-venv/bin/python \\
        ../shared/peers/camvid_peer.py --out /tmp/peer            # ~22 min (setup-peer-env.sh)
    .venv/bin/python benchmarks/camvid.py table --peer /tmp/peer/results.json [--also RUN ...]

`train` runs the public commands, `fcnseg train camvid` and `fcnseg evaluate RUN/last.pt`, so
the result is what a user gets from them; `table` prints the comparison as markdown; `pictures`
saves the pictures of last.pt's report.html under docs/images/ (the README shows them).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "camvid"
DEFAULT_RUN = ROOT / "runs" / "camvid-cpu-20min"
TRAIN_IMAGES = 367  # CamVid's training split: epochs = images seen / this
FCNSEG = [sys.executable, "-m", "fcnseg"]
EVALUATION = "evaluation-val-last"  # last.pt scored on val, inside the run folder


def train(run_dir: Path, config: str, overrides: list[str]) -> None:
    """Train the recipe into run_dir, then evaluate its last weights on val."""
    if not CAMVID.is_dir():
        raise SystemExit(f"CamVid is not at {CAMVID}; see ../shared/data/README.md.")
    sets = [argument for override in overrides for argument in ("--set", override)]
    command = [*FCNSEG, "train", config, "--out", str(run_dir), "--overwrite", "--no-progress"]
    subprocess.run([*command, "--set", f"data.root={CAMVID}", *sets], check=True, cwd=ROOT)
    evaluation = ["--data", str(CAMVID), "--split", "val", "--out", str(run_dir / EVALUATION)]
    last = str(run_dir / "last.pt")
    subprocess.run([*FCNSEG, "evaluate", last, *evaluation, "--overwrite"], check=True, cwd=ROOT)


def ours(run_dir: Path) -> dict:
    """The figures of an fcnseg run: its training history and last.pt's val scores."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    metrics = json.loads((run_dir / EVALUATION / "metrics.json").read_text())
    images = history[-1]["step"] * config["data"]["batch_size"]
    seconds = history[-1]["elapsed_seconds"]
    return {
        "recipe": f"fcnseg: {_recipe(config)}",
        "short": f"fcnseg, {config['loss'].get('class_weights') or 'no'} weights",
        "epochs": images / TRAIN_IMAGES,
        "images_per_second": images / seconds,
        "seconds": seconds,
        "miou": metrics["miou"],
        "pixel_accuracy": metrics["pixel_accuracy"],
        "per_class_iou": dict(zip(metrics["class_names"], metrics["per_class_iou"], strict=True)),
    }


def peer(results_path: Path) -> dict:
    """The figures of camvid_peer.py's results.json."""
    results = json.loads(results_path.read_text())
    train_stats, val = results["train"], results["val"]
    return {
        "recipe": "peer: smp U-Net/ResNet-34, Adam, cross-entropy (`camvid_peer.py`)",
        "short": "peer",
        "epochs": train_stats["epochs_float"],
        "images_per_second": train_stats["train_images_per_s"],
        "seconds": train_stats["train_seconds"],
        "miou": val["miou"],
        "pixel_accuracy": val["pixel_acc"],
        "per_class_iou": val["per_class_iou"],
    }


def table(rows: list[dict]) -> str:
    """Markdown: one row per recipe, then the per-class IoU side by side."""
    lines = [
        "| recipe | training | epochs | train img/s | val mIoU | pixel acc. | classes at 0 IoU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        zeros = sum(value < 0.005 for value in row["per_class_iou"].values())
        lines.append(
            f"| {row['recipe']} | {row['seconds'] / 60:.1f} min | {row['epochs']:.1f} "
            f"| {row['images_per_second']:.2f} | {100 * row['miou']:.1f} "
            f"| {100 * row['pixel_accuracy']:.1f} | {zeros} |"
        )
    names = list(rows[0]["per_class_iou"])
    lines += ["", "| class | " + " | ".join(row["short"] for row in rows) + " |"]
    lines.append("|---|" + "---:|" * len(rows))
    for name in names:
        values = " | ".join(f"{100 * row['per_class_iou'][name]:.1f}" for row in rows)
        lines.append(f"| {name} | {values} |")
    return "\n".join(lines)


def pictures(run_dir: Path, out_dir: Path) -> list[Path]:
    """Save the pictures embedded in last.pt's report.html as report_<alt text>.png files."""
    page = (run_dir / EVALUATION / "report.html").read_text()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for alt, encoded in re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"', page):
        path = out_dir / f"report_{re.sub(r'[^a-z0-9]+', '_', alt.lower()).strip('_')}.png"
        path.write_bytes(base64.b64decode(encoded))
        written.append(path)
    return written


def _recipe(config: dict) -> str:
    """E.g. "linknet/resnet18, cross_entropy, sqrt_median_frequency weights"."""
    model, loss = config["model"], config["loss"]
    backbone = (model.get("options") or {}).get("backbone")
    terms = " + ".join(term["name"] for term in loss["terms"])
    weights = loss.get("class_weights")
    named = f", {weights} weights" if isinstance(weights, str) else ""
    return f"{model['name']}{'/' + backbone if backbone else ''}, {terms}{named}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["train", "table", "pictures"])
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN, help="fcnseg run folder")
    parser.add_argument("--config", default="camvid", help="recipe name or YAML path")
    parser.add_argument("--set", action="append", default=[], help="config override k=v")
    parser.add_argument("--also", type=Path, action="append", default=[], help="more runs")
    parser.add_argument("--peer", type=Path, help="camvid_peer.py's results.json")
    args = parser.parse_args()
    if args.action == "pictures":
        for path in pictures(args.run, ROOT / "docs" / "images"):
            print(path.relative_to(ROOT))
        return
    if args.action == "train":
        train(args.run, args.config, args.set)
    rows = [ours(run) for run in (args.run, *args.also)]
    rows += [peer(args.peer)] if args.peer else []
    print(table(rows))


if __name__ == "__main__":
    main()
