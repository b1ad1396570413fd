"""Training beside a competing CPU load: images/s relative to an idle machine.

Users train on shared servers and laptops. This runs the CamVid recipe (`fcnseg train camvid`,
LinkNet/ResNet-18, 2 training threads and 1 loader worker) for a short budget, once on the idle
machine and once beside a competitor: one process multiplying matrices on `--competitor-threads`
BLAS threads (NumPy), the way another user's job loads a shared server. Each setting of the
environment is measured both ways:

    default           fcnseg as it ships (its command line sets OMP_WAIT_POLICY=PASSIVE unless
                      the environment sets it; before 2026-12-03 it left OpenMP's default)
    spin              OMP_WAIT_POLICY=ACTIVE: OpenMP threads spin while they wait for work
                      (what GNU OpenMP does by default for a while after each parallel region)
    passive           OMP_WAIT_POLICY=PASSIVE: they sleep instead

The training images/s is read from the run's history.json (the mean over its epochs, the first
epoch left out when there are more). Run on an otherwise idle machine, nothing beside it:

    .venv/bin/python benchmarks/shared_cpu.py [--minutes 1.5] [--competitor-threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "camvid"
SETTINGS = {
    "default": {},
    "spin": {"OMP_WAIT_POLICY": "ACTIVE"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}


COMPETITOR = "import numpy as np\na = np.random.rand(1024, 1024)\nwhile True:\n    a @ a\n"


def start_competitor(threads: int) -> subprocess.Popen:
    """One process multiplying matrices on `threads` BLAS threads for ever (killed after)."""
    count = str(threads)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": count,
        "OPENBLAS_NUM_THREADS": count,
        "MKL_NUM_THREADS": count,
    }
    return subprocess.Popen([sys.executable, "-c", COMPETITOR], env=env)


def train_images_per_second(run_dir: Path, minutes: float, environment: dict[str, str]) -> float:
    """Train the CamVid recipe for `minutes` into run_dir; the mean training images/s."""
    command = [
        sys.executable,
        "-m",
        "fcnseg",
        "train",
        "camvid",
        "--out",
        str(run_dir),
        "--overwrite",
        "--no-progress",
        "--set",
        f"data.root={CAMVID}",
        "--set",
        f"train.max_minutes={minutes}",
        "--set",
        "data.synthetic_val=1",
        "--set",
        "train.val_images=8",
    ]
    env = {**os.environ, **environment}
    subprocess.run(command, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    history = json.loads((run_dir / "history.json").read_text())
    rates = [entry["images_per_second"] for entry in history]
    rates = rates[1:] if len(rates) > 1 else rates
    return sum(rates) / len(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.5, help="training budget per run")
    parser.add_argument("--competitor-threads", type=int, default=2)
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    if not (CAMVID / "train").is_dir():
        raise SystemExit(f"CamVid is not at {CAMVID}; see ../shared/data/README.md.")
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.settings:
            idle = train_images_per_second(
                Path(scratch) / f"{name}-idle", args.minutes, SETTINGS[name]
            )
            competitor = start_competitor(args.competitor_threads)
            try:
                shared = train_images_per_second(
                    Path(scratch) / f"{name}-shared", args.minutes, SETTINGS[name]
                )
            finally:
                competitor.kill()
                competitor.wait()
            rows.append((name, idle, shared))
            print(f"measured {name}", file=sys.stderr, flush=True)
    baseline = rows[0][1]
    print(
        f"\n{args.minutes} min of `fcnseg train camvid` per run; competitor: "
        f"one process of {args.competitor_threads} BLAS threads\n"
    )
    print("| setting | idle img/s | shared img/s | shared / idle | idle / default idle |")
    print("|---|---:|---:|---:|---:|")
    for name, idle, shared in rows:
        print(
            f"| {name} | {idle:.2f} | {shared:.2f} | {shared / idle:.2f} | {idle / baseline:.2f} |"
        )


if __name__ == "__main__":
    main()
