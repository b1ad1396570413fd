"""ONNX export with a parity check.

    export_onnx(model, ...)     torch.onnx (the torch.export-based exporter) with dynamic batch,
                                height and width; fcnseg's facts in the file's metadata
    check_parity(model, onnx)   logits of both on two input sizes: max |difference| and argmax
                                agreement, an error past tolerance
    RawMaps, check_map_parity   the same for an instance model's network: its raw maps (named
                                outputs) without the post-processing, which stays Python

The metadata makes an .onnx file self-describing for serving without fcnseg (normalisation,
class names, palette; docs/deployment.md) and ties it to its checkpoint: its `fingerprint` is a
SHA-256 of the checkpoint's weights, so running a file with another checkpoint is refused rather
than silently giving another model's answers. The exported file is run by
fcnseg.inference.backends.OnnxModel; int8 quantization lives in fcnseg.export.int8.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcnseg.inference.backends import INPUT_NAME, OUTPUT_NAME, OnnxModel
from fcnseg.inference.predictor import InferenceOptions, Predictor, labels_from_logits

PARITY_SIZES = ((1, 75, 101), (2, 160, 224))  # (N, H, W): an odd and a stride-aligned size
LOGIT_TOLERANCE = 1e-3  # max |torch - onnx| relative to the logits' scale (at least 1)
MIN_AGREEMENT = 0.999  # share of pixels whose argmax must agree


class RawMaps(nn.Module):
    """An instance model's network without its post-processing: forward's dict of raw maps as
    a tuple in `names` order, the outputs of the exported graph."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.model(x)
        return tuple(maps[name] for name in self.names)


def map_names(model: nn.Module, channels: int) -> list[str]:
    """The names of an instance model's raw maps (its forward's keys), from one small pass."""
    with torch.inference_mode():
        return list(model.eval()(torch.zeros(1, channels, 32, 32)))


def export_onnx(
    model: nn.Module,
    path: Path,
    channels: int,
    metadata: dict[str, Any],
    output_names: list[str] | None = None,
) -> Path:
    """Export `model` (eval mode, CPU) to `path` with dynamic (N, H, W) and metadata; its
    outputs are named `output_names` (default: one, the logits).

    The example is 97 x 131, odd on purpose: the model's pad-to-stride branch must be the one
    traced (padding by zero is then still right for aligned sizes), and its amounts and the
    final crop stay symbolic in the graph, so the file takes any size.
    """
    model = model.eval().cpu()
    example = torch.randn(1, channels, 97, 131)
    dynamic = torch.export.Dim.DYNAMIC
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        exporter_log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            verbose=False,
            input_names=[INPUT_NAME],
            output_names=output_names or [OUTPUT_NAME],
            dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},),
        )
        exporter_log.setLevel(level)
    proto = program.model_proto
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"fcnseg.{key}", json.dumps(value)
    path = Path(path)
    path.write_bytes(proto.SerializeToString())
    return path


@dataclass(frozen=True)
class Parity:
    """How far an exported model's logits are from PyTorch's, over the parity inputs."""

    max_abs_difference: float
    logit_scale: float
    agreement: float  # share of pixels with the same argmax (raw maps: the same sign)
    agreeing_on: str = "argmax"

    @property
    def passed(self) -> bool:
        return (
            self.max_abs_difference <= LOGIT_TOLERANCE * max(1.0, self.logit_scale)
            and self.agreement >= MIN_AGREEMENT
        )

    def describe(self) -> str:
        return (
            f"max |logit difference| {self.max_abs_difference:.2e} (logits up to "
            f"{self.logit_scale:.2f}), {self.agreeing_on} agreement {100 * self.agreement:.3f}%"
        )


def check_parity(model: nn.Module, exported: OnnxModel, channels: int) -> Parity:
    """Compare PyTorch and the exported model on PARITY_SIZES inputs (seeded normal noise),
    both through the Predictor's plain whole-image path."""
    whole = InferenceOptions(mode="whole")
    expected_path, actual_path = Predictor(model, options=whole), Predictor(exported, options=whole)
    generator = torch.Generator().manual_seed(0)
    worst, scale, agreeing, pixels = 0.0, 0.0, 0, 0
    for count, height, width in PARITY_SIZES:
        images = torch.randn(count, channels, height, width, generator=generator)
        expected, actual = expected_path.logits(images), actual_path.logits(images)
        worst = max(worst, float((actual - expected).abs().max()))
        scale = max(scale, float(expected.abs().max()))
        agreeing += int((labels_from_logits(actual) == labels_from_logits(expected)).sum())
        pixels += count * height * width
    return Parity(worst, scale, agreeing / pixels)


def check_map_parity(model: nn.Module, exported: OnnxModel, channels: int) -> Parity:
    """An instance model's raw maps from PyTorch and from the exported model on PARITY_SIZES
    inputs; agreement is the share of map values on the same side of 0 (the post-processing
    thresholds logits at 0 and ranks by them), so a sign flip anywhere shows."""
    generator = torch.Generator().manual_seed(0)
    worst, scale, agreeing, values = 0.0, 0.0, 0, 0
    for count, height, width in PARITY_SIZES:
        images = torch.randn(count, channels, height, width, generator=generator)
        with torch.inference_mode():
            expected = model.eval()(images)
        actual = exported.maps(images)
        for name, reference in expected.items():
            worst = max(worst, float((actual[name] - reference).abs().max()))
            scale = max(scale, float(reference.abs().max()))
            agreeing += int(((actual[name] > 0) == (reference > 0)).sum())
            values += reference.numel()
    return Parity(worst, scale, agreeing / values, "sign")
