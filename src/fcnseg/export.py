"""ONNX export with a parity check, and the exported model run by ONNX Runtime.

    export_onnx(model, ...)     torch.onnx (the torch.export-based exporter) with dynamic batch,
                                height and width; fcnseg's facts in the file's metadata
    check_parity(model, onnx)   logits of both on two input sizes: max |difference| and argmax
                                agreement, an error past tolerance
    OnnxModel(path)             an InferenceSession behind the Predictor's network interface

The metadata makes an .onnx file self-describing for serving without fcnseg (normalisation,
class names; docs/deployment.md) and ties it to its checkpoint: `fingerprint` is a SHA-256 of the
checkpoint's weights, so running a file with another checkpoint is refused rather than silently
giving another model's answers. Int8 quantization lives in fcnseg.quantize.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fcnseg.errors import FcnsegError
from fcnseg.predict import InferenceOptions, Predictor, labels_from_logits

INPUT_NAME, OUTPUT_NAME = "image", "logits"
PARITY_SIZES = ((1, 75, 101), (2, 160, 224))  # (N, H, W): an odd and a stride-aligned size
LOGIT_TOLERANCE = 1e-3  # max |torch - onnx| relative to the logits' scale (at least 1)
MIN_AGREEMENT = 0.999  # share of pixels whose argmax must agree


def fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the weights' names and bytes, in name order (first 16 hex digits)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]


def onnx_runtime() -> Any:
    """The onnxruntime module, or a clear error saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise FcnsegError(
            "onnxruntime is not installed; install fcnseg's export extra: "
            "pip install 'fcnseg[export]'."
        ) from None
    return onnxruntime


def export_onnx(model: nn.Module, path: Path, channels: int, metadata: dict[str, Any]) -> Path:
    """Export `model` (eval mode, CPU) to `path` with dynamic (N, H, W) and metadata.

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
            output_names=[OUTPUT_NAME],
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
    agreement: float  # share of pixels with the same argmax

    @property
    def passed(self) -> bool:
        return (
            self.max_abs_difference <= LOGIT_TOLERANCE * max(1.0, self.logit_scale)
            and self.agreement >= MIN_AGREEMENT
        )

    def describe(self) -> str:
        return (
            f"max |logit difference| {self.max_abs_difference:.2e} (logits up to "
            f"{self.logit_scale:.2f}), argmax agreement {100 * self.agreement:.3f}%"
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


class OnnxModel:
    """An exported model in ONNX Runtime: (N, C, H, W) float tensor -> (N, K, H, W) logits."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        runtime = onnx_runtime()
        self.path = Path(path)
        if not self.path.is_file():
            raise FcnsegError(
                f"ONNX file {self.path} does not exist; write one with fcnseg export."
            )
        options = runtime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = runtime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = runtime.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise FcnsegError(f"{self.path} is not a usable ONNX model ({error}).") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {
            key.removeprefix("fcnseg."): json.loads(value)
            for key, value in meta.items()
            if key.startswith("fcnseg.")
        }
        self.input_name = self.session.get_inputs()[0].name
        self.in_channels = self.metadata.get("in_channels")
        self.bytes_per_pixel = self.metadata.get("bytes_per_pixel")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])

    def check_matches(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a file exported from another checkpoint (or not by fcnseg at all)."""
        if "fingerprint" not in self.metadata:
            raise FcnsegError(
                f"{self.path} was not written by fcnseg export (no fcnseg metadata); export the "
                "checkpoint with: fcnseg export CHECKPOINT --format onnx."
            )
        expected = fingerprint(checkpoint["state_dict"])
        if self.metadata["fingerprint"] != expected:
            raise FcnsegError(
                f"{self.path} was exported from a different checkpoint (weights fingerprint "
                f"{self.metadata['fingerprint']}, this checkpoint's is {expected}); export this "
                "checkpoint again with fcnseg export, or pass the matching --onnx file."
            )
