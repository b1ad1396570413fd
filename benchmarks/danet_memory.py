"""DANet's memory and time against the image size: its position attention weighs every pair of
stride-8 positions, (H/8 * W/8)^2 of them per image.

For each size and mode, a fresh process builds the model (the recipe's: ResNet-18, stride 8, head
width 128), runs it once at 64x64 (allocator and thread pools warm), then measures one pass:

    chunked    inference as fcnseg runs it (eval, no gradients): queries in 64 MB chunks
    whole      the same with the whole attention matrix at once (chunking switched off)
    training   forward and backward in train mode (refused above max_attention_mb)

"peak" is the growth of the process's peak resident memory (ru_maxrss) during that pass, so
model weights and the warm-up are not counted. Timed on this machine's threads; run it alone.

    .venv/bin/python benchmarks/danet_memory.py                      # 360x480, 720x960
    .venv/bin/python benchmarks/danet_memory.py --sizes 1440x1920 --modes chunked
    .venv/bin/python benchmarks/danet_memory.py --sizes 64x64 96x128 # smoke
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from fcnseg import FcnsegError
from fcnseg.models import build_model
from fcnseg.models.attention import PositionAttention

MODES = ("chunked", "whole", "training")
STRIDE = 8


def measure(height: int, width: int, mode: str, backbone: str, threads: int) -> dict:
    """One pass of `mode` at (height, width), in this process: peak memory growth and time."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model("danet", 11, backbone=backbone, output_stride=STRIDE)
    model.train(mode == "training")
    if mode == "whole":
        for module in model.modules():
            if isinstance(module, PositionAttention):
                module.chunk_mb = 2.0**40  # a terabyte: every query in one chunk
    run(model, torch.randn(1, 3, 64, 64), mode)  # warm-up
    before = peak_megabytes()
    start = time.perf_counter()
    try:
        run(model, torch.randn(1, 3, height, width), mode)
    except FcnsegError as error:
        return {"refused": str(error)}
    return {"seconds": time.perf_counter() - start, "peak_mb": peak_megabytes() - before}


def run(model: torch.nn.Module, images: torch.Tensor, mode: str) -> None:
    if mode == "training":
        logits = model(images)
        logits.sum().backward()
        model.zero_grad(set_to_none=True)
    else:
        with torch.no_grad():
            model(images)


def peak_megabytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def attention_megabytes(height: int, width: int) -> float:
    """float32 weights of one image's position attention: (H/8 * W/8)^2 x 4 bytes."""
    positions = -(-height // STRIDE) * -(-width // STRIDE)
    return positions**2 * 4 / 2**20


def table(results: list[tuple[str, str, dict]]) -> str:
    lines = [
        "| input | positions | attention weights | mode | peak memory | time |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for size, mode, result in results:
        height, width = parse_size(size)
        positions = -(-height // STRIDE) * -(-width // STRIDE)
        cells = f"| {size} | {positions} | {attention_megabytes(height, width):.1f} MB | {mode} |"
        if "refused" in result:
            lines.append(f"{cells} refused | - |")
        else:
            lines.append(f"{cells} {result['peak_mb']:.0f} MB | {result['seconds']:.2f} s |")
    return "\n".join(lines)


def parse_size(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["360x480", "720x960"], help="HxW")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", nargs=2, metavar=("SIZE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # one measurement in a fresh process, printed as JSON
        size, mode = args.worker
        print(json.dumps(measure(*parse_size(size), mode, args.backbone, args.threads)))
        return
    results = []
    for size in args.sizes:
        for mode in args.modes:
            command = [sys.executable, __file__, "--worker", size, mode]
            command += ["--backbone", args.backbone, "--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{size} {mode} failed:\n{done.stderr}")
            results.append((size, mode, json.loads(done.stdout.strip().splitlines()[-1])))
    print(table(results))
    for size, mode, result in results:
        if "refused" in result:
            print(f"\n{size} {mode}: {result['refused']}")


if __name__ == "__main__":
    main()
