"""Atrous 3x3 convolutions on CPU: PyTorch's plain convolution against fcnseg's AtrousConv2d.

Two tables. First, the time of a plain depthwise 3x3 convolution against its rate, forward and
forward + backward, which locates the rates past which oneDNN's fast kernels give way
(`FAST_FORWARD_RATE` in fcnseg.models.atrous). Second, ASPP's atrous convolutions on
ResNet-50's 2048-channel map at the sizes that the model benchmark (benchmarks/models_speed.py)
uses: a 4x3x256x256 training batch and a 1x3x360x480 image, at output stride 16 (rates 6, 12,
18) and 8 (12, 24, 36). For each: the route AtrousConv2d takes, and the median time of the
forward pass (under inference_mode) and of forward + backward, for both.

    python benchmarks/atrous_speed.py [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from models_speed import timed_runs  # this folder's model benchmark: the same timing loop

from fcnseg.models.atrous import AtrousConv2d

CHANNELS = 2048  # ResNet-50's last stage, ASPP's input
# (what it is, feature map shape, rates)
CASES = [
    ("train 4x256x256, OS 16", (4, CHANNELS, 16, 16), (6, 12, 18)),
    ("eval 360x480, OS 16", (1, CHANNELS, 23, 30), (6, 12, 18)),
    ("train 4x256x256, OS 8", (4, CHANNELS, 32, 32), (12, 24, 36)),
    ("eval 360x480, OS 8", (1, CHANNELS, 46, 60), (12, 24, 36)),
]


def median_ms(step: Callable[[], object], warmup: int = 2, runs: int = 9) -> float:
    return 1e3 * statistics.median(timed_runs([step], warmup, runs)[0])


def plain(conv: AtrousConv2d) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: F.conv2d(x, conv.weight, None, 1, conv.rate, conv.rate, conv.groups)


def forward_ms(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    def step() -> None:
        with torch.inference_mode():
            function(x)

    return median_ms(step)


def training_ms(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    x = x.detach().requires_grad_()

    def step() -> None:
        function(x).sum().backward()

    return median_ms(step)


def route(conv: AtrousConv2d, x: torch.Tensor) -> str:
    """How AtrousConv2d computes conv(x), in words (its backward convolves the gradient by the
    same route; see DepthwiseAtrousFunction)."""
    keep_rows, keep_columns, block = conv.plan(x)
    kernel = f"{3 if keep_rows else 1}x{3 if keep_columns else 1}"
    if kernel == "1x1":
        return "1x1 (centre tap)"
    if block == 1:
        return f"{kernel}, direct"
    return f"{kernel}, split {block}x{block}, rate {conv.rate // block}"


def rate_table(channels_last: torch.memory_format) -> None:
    print("Plain depthwise 3x3 convolution, 1x512x32x32 (ms):\n")
    rates = list(range(1, 11))
    print("| rate | " + " | ".join(str(rate) for rate in rates) + " |")
    print("|---|" + "---:|" * len(rates))
    x = torch.randn(1, 512, 32, 32).contiguous(memory_format=channels_last)
    convs = [
        AtrousConv2d(512, 512, rate, groups=512).to(memory_format=channels_last) for rate in rates
    ]
    forward = [forward_ms(plain(conv), x) for conv in convs]
    training = [training_ms(plain(conv), x) for conv in convs]
    print("| forward | " + " | ".join(f"{t:.2f}" for t in forward) + " |")
    print("| forward + backward | " + " | ".join(f"{t:.2f}" for t in training) + " |\n")


def aspp_table(channels_last: torch.memory_format) -> None:
    print("ASPP's depthwise atrous convolutions (ms), plain F.conv2d vs AtrousConv2d:\n")
    print(
        "| map | rate | route | forward plain | forward fcnseg | fwd+bwd plain | fwd+bwd fcnseg |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for label, shape, rates in CASES:
        x = torch.randn(shape).contiguous(memory_format=channels_last)
        for rate in rates:
            torch.manual_seed(0)
            conv = AtrousConv2d(CHANNELS, CHANNELS, rate, groups=CHANNELS)
            conv = conv.to(memory_format=channels_last)
            routes = route(conv, x)
            times = [
                forward_ms(plain(conv), x),
                forward_ms(conv, x),
                training_ms(plain(conv), x),
                training_ms(conv, x),
            ]
            cells = " | ".join(f"{t:.1f}" for t in times)
            print(f"| {label} | {rate} | {routes} | {cells} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, channels-last, "
        f"load average (1 min) at the start: {os.getloadavg()[0]:.2f}\n"
    )
    rate_table(torch.channels_last)
    aspp_table(torch.channels_last)
    print(f"\nload average (1 min) at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
