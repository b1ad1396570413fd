"""Speed of every architecture on CPU, and of segmentation-models-pytorch's (smp) counterparts.

For each model: parameters, GFLOPs of one 1x3x360x480 forward pass (counted by
torch.utils.flop_counter, multiply and add counted as two), eval latency at 1x3x360x480 (median
after warm-up, under inference_mode) and one training step at 4x3x256x256 (forward, cross-entropy,
backward, SGD step). Where smp has the same architecture on the same encoder it is measured in
the same run, its input padded to a multiple of 32 (it requires that) and its output cropped, and
the ratio fcnseg / smp is printed (below 1: fcnseg is faster): runs alternate between the two,
and the ratio is the median over runs of the two times in the same round. Both use the same
memory format: channels-last by default, as fcnseg's trainer does.

smp is never a dependency of fcnseg; it lives in a separate environment:

    python3 -m venv /tmp/bench-venv
    /tmp/bench-venv/bin/pip install -c constraints.txt torch==2.13.0
    /tmp/bench-venv/bin/pip install -c constraints.txt torchvision==0.28.0 timm \
        segmentation-models-pytorch
    /tmp/bench-venv/bin/pip install -e .
    HF_HUB_OFFLINE=1 /tmp/bench-venv/bin/python benchmarks/models_speed.py

Without smp the script measures fcnseg alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fcnseg.models import build_model
from fcnseg.models.base import pad_to_multiple

NUM_CLASSES = 21
EVAL_SHAPE = (1, 3, 360, 480)
TRAIN_SHAPE = (4, 3, 256, 256)

# The papers' ASPP rates at output stride 16, as fcnseg uses. smp's default, (12, 24, 36), is the
# setting for stride 8; at stride 16 most taps of such filters fall into the padding of the small
# map, which oneDNN skips, so they would make smp's ASPP cheaper than the architecture's.
PAPER_RATES = (6, 12, 18)

# (label, fcnseg model name, its options, smp counterpart's class name and arguments or None)
MODELS = [
    ("FCN-32s / VGG-16", "fcn32s", {}, None),
    ("FCN-16s / VGG-16", "fcn16s", {}, None),
    ("FCN-8s / VGG-16", "fcn8s", {}, None),
    ("U-Net (classic, width 64)", "unet", {}, None),
    ("U-Net / ResNet-34", "unet", {"backbone": "resnet34"}, ("Unet", {})),
    (
        "DeepLabv3 / ResNet-50, OS 16",
        "deeplabv3",
        {},
        ("DeepLabV3", {"encoder_output_stride": 16, "decoder_atrous_rates": PAPER_RATES}),
    ),
    (
        "DeepLabv3+ / ResNet-50, OS 16",
        "deeplabv3plus",
        {},
        ("DeepLabV3Plus", {"decoder_atrous_rates": PAPER_RATES}),
    ),
    ("LinkNet / ResNet-18", "linknet", {}, ("Linknet", {})),
    ("SegNet / VGG-16-BN", "segnet", {}, None),
]
ENCODERS = {"unet": "resnet34", "deeplabv3": "resnet50", "deeplabv3plus": "resnet50"}


def import_smp():
    """segmentation_models_pytorch, or None. torchvision 0.28's wheel is a CUDA build whose nms
    operators fail to register on a CPU-only torch; defining them first lets it import."""
    try:
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import_smp.library = library  # keep it alive
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import segmentation_models_pytorch as smp
    except ImportError:
        return None
    return smp


class PadToMultiple(nn.Module):
    """smp needs sizes divisible by 32: pad the input and crop the logits, as fcnseg does."""

    def __init__(self, model: nn.Module, multiple: int = 32) -> None:
        super().__init__()
        self.model = model
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        return self.model(pad_to_multiple(x, self.multiple))[..., :height, :width]


def count_gflops(model: nn.Module) -> float:
    counter = FlopCounterMode(display=False)
    model.eval()
    with torch.inference_mode(), counter:
        model(torch.randn(EVAL_SHAPE))
    return counter.get_total_flops() / 1e9


def eval_step(model: nn.Module, memory_format: torch.memory_format) -> Callable[[], None]:
    model.eval()
    image = torch.randn(EVAL_SHAPE).contiguous(memory_format=memory_format)

    def step() -> None:
        with torch.inference_mode():
            model(image)

    return step


def train_step(model: nn.Module, memory_format: torch.memory_format) -> Callable[[], None]:
    model.train()
    images = torch.randn(TRAIN_SHAPE).contiguous(memory_format=memory_format)
    masks = torch.randint(0, NUM_CLASSES, (TRAIN_SHAPE[0], *TRAIN_SHAPE[2:]))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), masks).backward()
        optimizer.step()

    return step


def timed_runs(steps: list[Callable[[], None]], warmup: int, runs: int) -> list[list[float]]:
    """Seconds of each run of each step. Runs alternate between the steps, so that a change in
    the machine's speed during the measurement affects fcnseg and smp alike."""
    for step in steps:
        for _ in range(warmup):
            step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(runs):
        for step, seconds in zip(steps, times, strict=True):
            start = time.perf_counter()
            step()
            seconds.append(time.perf_counter() - start)
    return times


def measure(
    models: list[nn.Module], memory_format: torch.memory_format, warmup: int, runs: int
) -> list[dict[str, float]]:
    """Parameters, GFLOPs, and the median eval latency and training-step time of each model;
    for a second model (smp's), the ratios: the median over runs of fcnseg's time over smp's
    in the same round, which cancels the machine's drift better than a ratio of medians."""
    results = [
        {"params": sum(p.numel() for p in m.parameters()) / 1e6, "gflops": count_gflops(m)}
        for m in models
    ]
    models = [m.to(memory_format=memory_format) for m in models]
    for kind, make_step in (("eval", eval_step), ("train", train_step)):
        times = timed_runs([make_step(m, memory_format) for m in models], warmup, runs)
        for result, seconds in zip(results, times, strict=True):
            result[kind] = statistics.median(seconds)
        if len(times) == 2:
            ratios = [ours / theirs for ours, theirs in zip(*times, strict=True)]
            results[0][f"{kind}_ratio"] = statistics.median(ratios)
    return results


def smp_model(smp, name: str, class_name: str, arguments: dict) -> nn.Module:
    encoder = ENCODERS.get(name, "resnet18")
    model = getattr(smp, class_name)(
        encoder_name=encoder, encoder_weights=None, classes=NUM_CLASSES, **arguments
    )
    return PadToMultiple(model)


def row(label: str, result: dict[str, float], ratios: str = "| |") -> str:
    return (
        f"| {label} | {result['params']:.1f} | {result['gflops']:.0f} "
        f"| {1e3 * result['eval']:.0f} | {1e3 * result['train']:.0f} {ratios}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--only", nargs="*", help="fcnseg model names to measure")
    parser.add_argument(
        "--memory-format",
        choices=["channels_last", "contiguous"],
        default="channels_last",
        help="for fcnseg and smp alike; fcnseg's trainer uses channels_last by default",
    )
    parser.add_argument(
        "--plain-atrous",
        action="store_true",
        help="ablation: fcnseg's atrous convolutions as plain nn.Conv2d, without the shortcuts",
    )
    args = parser.parse_args()
    memory_format = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}[
        args.memory_format
    ]
    torch.set_num_threads(args.threads)
    smp = import_smp()
    smp_version = getattr(smp, "__version__", "not installed")
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.memory_format}, "
        f"{'plain' if args.plain_atrous else 'fcnseg'} atrous convolutions, "
        f"smp {smp_version}, load average (1 min) at the start: {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| model | params (M) | GFLOPs 1x3x360x480 | eval 1x3x360x480 (ms) "
        "| train step 4x3x256x256 (ms) | eval / smp | train / smp |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, name, options, counterpart in MODELS:
        if args.only and name not in args.only:
            continue
        torch.manual_seed(0)
        if args.plain_atrous and name.startswith("deeplab"):
            options = {**options, "atrous_shortcuts": False}  # the model option, documented
        models = [build_model(name, NUM_CLASSES, **options)]
        if smp is not None and counterpart is not None:
            models.append(smp_model(smp, name, *counterpart))
        ours, *theirs = measure(models, memory_format, args.warmup, args.runs)
        if not theirs:
            print(row(label, ours), flush=True)
            continue
        theirs = theirs[0]
        ratios = f"| {ours['eval_ratio']:.2f} | {ours['train_ratio']:.2f} |"
        print(row(label, ours, ratios), flush=True)
        print(row(f"smp {counterpart[0]} (same encoder)", theirs), flush=True)
    print(f"\nload average (1 min) at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
