"""CPU inference speed: fcnseg's deployment paths beside segmentation-models-pytorch (smp).

For U-Net/ResNet-34, DeepLabv3+/ResNet-50 and LinkNet/ResNet-18 (11 classes, CamVid's), images
per second at 1x3x360x480 and 4x3x360x480 through:

    smp eager fp32         what users run today: smp's model, plain eager PyTorch (NCHW,
                           inference_mode), input padded to 32 and logits cropped
    fcnseg torch fp32      batch norm folded, channels-last, inference_mode (inference.backends)
    fcnseg onnxrt fp32     the exported model in ONNX Runtime: the default CPU path once exported
    fcnseg torch bf16      the folded channels-last model under bf16 autocast (AVX-512 BF16)
    fcnseg onnxrt int8     static int8 (QDQ, per-channel weights) via fcnseg.export.int8
    fcnseg openvino ...    the same two files in OpenVINO (fp32, bf16 hint, int8), when the
                           openvino extra is installed

All paths are timed in one process, alternating between them, so that a change in the machine's
load hits them alike. GFLOP per image are counted with torch.utils.flop_counter (a multiply-add
is two), achieved GFLOP/s at batch 4 against this machine's peak measured in the same run (a
2048x2048 float32 matmul, best of the measurements taken around each architecture). bf16 and
int8 rows give float32-equivalent GFLOP/s and no share of the float32 peak.

Precision changes are reported as the mIoU change on CamVid val against the float32 model when
trained checkpoints are given (--checkpoint unet=runs/x/best.pt ...); with untrained weights
only the share of pixels whose label agrees with float32 is printed (its accuracy is then moot).

smp lives in a separate environment (never an fcnseg dependency); see models_speed.py for how
it was built. Run:

    HF_HUB_OFFLINE=1 /tmp/bench-venv/bin/python benchmarks/inference_speed.py
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import fcnseg
from fcnseg.export.int8 import quantize_static_int8
from fcnseg.export.onnx import export_onnx
from fcnseg.inference.backends import OnnxModel, prepare_for_cpu
from fcnseg.models import build_model
from fcnseg.models.base import pad_to_multiple

NUM_CLASSES = 11
HEIGHT, WIDTH = 360, 480
CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"
# (label, fcnseg name, fcnseg options, smp class, smp encoder)
ARCHITECTURES = [
    ("U-Net / ResNet-34", "unet", {"backbone": "resnet34"}, "Unet", "resnet34"),
    ("DeepLabv3+ / ResNet-50", "deeplabv3plus", {}, "DeepLabV3Plus", "resnet50"),
    ("LinkNet / ResNet-18", "linknet", {}, "Linknet", "resnet18"),
]
Run = Callable[[torch.Tensor], torch.Tensor]


def import_smp():
    """smp, or None. torchvision 0.28's CUDA wheel cannot register its nms operators on this
    CPU-only torch; defining them first lets it import."""
    try:
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import_smp.library = library  # must outlive the import
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import segmentation_models_pytorch as smp
    except ImportError:
        return None
    return smp


def peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    """The best float32 matmul rate of this machine, threads as set."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def gflop_per_image(model: nn.Module) -> float:
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model.eval()(torch.randn(1, 3, HEIGHT, WIDTH))
    return counter.get_total_flops() / 1e9


def eager(model: nn.Module, channels_last: bool = False, bf16: bool = False) -> Run:
    model.eval()

    def run(images: torch.Tensor) -> torch.Tensor:
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast("cpu", torch.bfloat16) if bf16 else nullcontext()
        with torch.inference_mode(), autocast:
            return model(images).float()

    return run


def smp_eager(smp, class_name: str, encoder: str) -> tuple[Run, nn.Module]:
    """smp's model as users run it: pad to 32 (smp requires it), crop the logits back."""
    model = getattr(smp, class_name)(
        encoder_name=encoder, encoder_weights=None, classes=NUM_CLASSES
    ).eval()

    class Padded(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return model(pad_to_multiple(x, 32))[..., : x.shape[-2], : x.shape[-1]]

    return eager(Padded()), Padded()


def alternate(runs: dict[str, Run], batch: int, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each run on a (batch, 3, 360, 480) input, interleaved."""
    images = torch.randn(batch, 3, HEIGHT, WIDTH)
    for run in runs.values():
        for _ in range(warmup):
            run(images)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(_seconds(lambda run=run: run(images)))
    return {name: statistics.median(values) for name, values in times.items()}


def camvid_images(split: str, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Up to `count` normalised CamVid (image, mask) pairs, evenly spread; [] without CamVid."""
    if not (CAMVID / split).is_dir():
        return []
    from fcnseg.config import DataConfig
    from fcnseg.data import make_dataset

    data = DataConfig(kind="folder", root=str(CAMVID), num_classes=NUM_CLASSES)  # void: 255
    dataset = make_dataset(data, split, train=False)
    step = max(1, len(dataset) // count)
    return [dataset[index] for index in range(0, len(dataset), step)][:count]


def label_change(reference: Run, other: Run, pairs, trained: bool) -> str:
    """mIoU change in points (trained weights), else label agreement with the reference."""
    from fcnseg.metrics.confusion import ConfusionMatrix

    if not pairs:
        return "n/a (no CamVid)"
    matrices = [ConfusionMatrix(NUM_CLASSES, 255) for _ in range(2)]
    agreeing = total = 0
    for image, mask in pairs:
        labels = [run(image[None]).argmax(1) for run in (reference, other)]
        for matrix, label in zip(matrices, labels, strict=True):
            matrix.update(label, mask[None])
        agreeing, total = agreeing + int((labels[0] == labels[1]).sum()), total + mask.numel()
    if not trained:
        return f"labels agree {100 * agreeing / total:.2f}%"
    before, after = (m.compute().miou for m in matrices)
    return f"{100 * (after - before):+.2f} mIoU ({100 * before:.2f} -> {100 * after:.2f})"


def fcnseg_runs(model: nn.Module, scratch: Path, calibration: list) -> dict[str, Run]:
    """fcnseg's paths for one model: folded eager, ONNX Runtime fp32, bf16, int8."""
    float_path = export_onnx(model, scratch / "float.onnx", 3, {"precision": "fp32"})
    images = [image for image, _ in calibration] or [torch.randn(3, HEIGHT, WIDTH)]
    int8_path = quantize_static_int8(float_path, scratch / "int8.onnx", images)
    folded, _ = prepare_for_cpu(model, channels=3)
    threads = torch.get_num_threads()
    runs: dict[str, Run] = {
        "fcnseg torch fp32": eager(folded, channels_last=True),
        "fcnseg onnxrt fp32": OnnxModel(float_path, threads),
        "fcnseg torch bf16": eager(folded, channels_last=True, bf16=True),
        "fcnseg onnxrt int8": OnnxModel(int8_path, threads),
    }
    if importlib.util.find_spec("openvino") is not None:  # the openvino extra
        from fcnseg.inference.openvino import OpenVinoModel

        runs["fcnseg openvino fp32"] = OpenVinoModel(float_path, "fp32", threads)
        runs["fcnseg openvino bf16"] = OpenVinoModel(float_path, "bf16", threads)
        runs["fcnseg openvino int8"] = OpenVinoModel(int8_path, "fp32", threads)
    return runs


def trained_model(name: str, options: dict, checkpoint: str | None) -> tuple[nn.Module, bool]:
    """The checkpoint's model (fcnseg.load: spec, weights, all checked), else untrained."""
    if checkpoint is None:
        return build_model(name, NUM_CLASSES, **options).eval(), False
    predictor = fcnseg.load(checkpoint, device="cpu")
    spec = predictor.checkpoint["model"]
    if spec["name"] != name or spec["num_classes"] != NUM_CLASSES:
        raise SystemExit(f"{checkpoint} holds a {spec}, not a {NUM_CLASSES}-class {name}")
    return predictor.model.eval(), True


def table_rows(label: str, result: dict, peak: float) -> list[str]:
    """Markdown rows of one architecture; "of peak" for float32 rows only (bf16 and int8 run
    other instructions, so their float32-equivalent rate is not a share of the float32 peak)."""
    rows = []
    one, four, gflop = result["one"], result["four"], result["gflop"]
    smp_one, smp_four = one.get("smp eager fp32"), four.get("smp eager fp32")
    for name in one:
        rate_one, rate_four = 1 / one[name], 4 / four[name]
        achieved = gflop[name] * rate_four
        share = f"{100 * achieved / peak:.0f}%" if name.endswith("fp32") else "-"
        versus = (
            f"{smp_one / one[name]:.2f}x | {smp_four / four[name]:.2f}x" if smp_one else "- | -"
        )
        rows.append(
            f"| {label} | {name} | {1e3 * one[name]:.0f} | {rate_one:.2f} | {rate_four:.2f} "
            f"| {gflop[name]:.1f} | {achieved:.0f} | {share} | {versus} "
            f"| {result['changes'].get(name, '')} |"
        )
    return rows


def benchmark(architecture: tuple, smp, args: argparse.Namespace) -> dict:
    """Timings at batch 1 and 4, GFLOP per image and precision changes of every path."""
    _, name, options, smp_class, encoder = architecture
    torch.manual_seed(0)
    model, trained = trained_model(name, options, dict(args.checkpoint).get(name))
    gflop = {}
    runs: dict[str, Run] = {}
    if smp is not None:
        runs["smp eager fp32"], padded = smp_eager(smp, smp_class, encoder)
        gflop["smp eager fp32"] = gflop_per_image(padded)
    with tempfile.TemporaryDirectory() as scratch:
        calibration = camvid_images("train", args.calibration)
        runs.update(fcnseg_runs(model, Path(scratch), calibration))
        ours = gflop_per_image(model)
        gflop.update({key: ours for key in runs if key.startswith("fcnseg")})
        one = alternate(runs, 1, args.warmup, args.repeats)
        four = alternate(runs, 4, 1, max(2, args.repeats // 2))
        pairs = camvid_images("val", 101 if trained else args.agreement_images)
        reference = runs["fcnseg onnxrt fp32"]
        changes = {
            key: label_change(reference, runs[key], pairs, trained)
            for key in runs
            if key.startswith("fcnseg") and not key.endswith("fp32")
        }
    return {"one": one, "four": four, "gflop": gflop, "changes": changes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--calibration", type=int, default=16, help="CamVid train images")
    parser.add_argument("--agreement-images", type=int, default=8)
    parser.add_argument(
        "--checkpoint",
        nargs="*",
        default=[],
        type=lambda s: s.split("=", 1),
        metavar="NAME=PATH",
        help="trained fcnseg weights, e.g. unet=best.pt",
    )
    parser.add_argument("--only", nargs="*", help="fcnseg model names, e.g. linknet")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    smp = import_smp()
    print(
        f"torch {torch.__version__}, {args.threads} threads, smp "
        f"{getattr(smp, '__version__', 'not installed')}, load at the start {os.getloadavg()}"
    )
    # The peak is measured before and after each architecture and the best kept: on a shared
    # machine a single measurement may catch a busy moment.
    peaks, results = [peak_gflops()], []
    for architecture in ARCHITECTURES:
        if args.only and architecture[1] not in args.only:
            continue
        results.append((architecture[0], benchmark(architecture, smp, args)))
        peaks.append(peak_gflops())
        print(f"measured {architecture[0]}", file=sys.stderr, flush=True)
    peak = max(peaks)
    print(
        f"peak: 2048x2048 float32 matmul {peak:.0f} GFLOP/s (best of "
        f"{', '.join(f'{p:.0f}' for p in peaks)})\n"
    )
    print(
        "| model | path | ms @1 | img/s @1 | img/s @4 | GFLOP/img | GFLOP/s @4 | of fp32 peak "
        "| vs smp @1 | vs smp @4 | precision change |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for label, result in results:
        print("\n".join(table_rows(label, result, peak)))
    print(f"\nload average (1, 5, 15 min) at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
