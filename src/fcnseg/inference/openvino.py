"""OpenVINO as a backend for an exported model: `fcnseg predict/evaluate --backend openvino`.

The same .onnx file `fcnseg export` writes (float, or the int8 one with its quantize/dequantize
pairs, which OpenVINO runs as int8 kernels) is read by OpenVINO and compiled for the CPU, in
float32 or, with `--precision bf16`, in bfloat16 where the CPU has it (AVX-512 BF16, AMX).
fcnseg's metadata travels in the file (OpenVINO keeps ONNX metadata as the model's "framework"
runtime info), so the weights' fingerprint is checked as for ONNX Runtime.

Optional: `pip install 'fcnseg[openvino]'`. Nothing is downloaded at run time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fcnseg.errors import FcnsegError

PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # fcnseg's word -> OpenVINO's precision hint


def openvino_runtime() -> Any:
    """The openvino module, or a clear error saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise FcnsegError(
            "--backend openvino needs OpenVINO, which is not installed; install fcnseg's "
            "openvino extra: pip install 'fcnseg[openvino]'."
        ) from None
    return openvino


class OpenVinoModel:
    """An exported model compiled by OpenVINO for the CPU: (N, C, H, W) float tensor -> (N, K,
    H, W) logits, or an instance model's raw maps by name (`maps`); the interface of
    fcnseg.inference.backends.OnnxModel."""

    def __init__(self, path: str | Path, precision: str = "fp32", threads: int | None = None):
        runtime = openvino_runtime()
        self.path = Path(path)
        if precision not in PRECISIONS:
            raise FcnsegError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}.")
        if not self.path.is_file():
            raise FcnsegError(
                f"ONNX file {self.path} does not exist; write one with fcnseg export."
            )
        core = runtime.Core()
        try:
            model = core.read_model(str(self.path))
            settings = {
                "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
                "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
                "PERFORMANCE_HINT": "LATENCY",  # one image at a time, as the Predictor asks
            }
            self.compiled = core.compile_model(model, "CPU", settings)
        except Exception as error:  # OpenVINO raises its own untyped errors
            raise FcnsegError(f"{self.path} is not a model OpenVINO can run ({error}).") from None
        self.metadata = _fcnseg_metadata(model)
        self.output_names = [output.get_any_name() for output in self.compiled.outputs]
        self.request = self.compiled.create_infer_request()
        self.precision = precision
        self.in_channels = self.metadata.get("in_channels")
        self.bytes_per_pixel = self.metadata.get("bytes_per_pixel")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The first output: a semantic model's (N, K, H, W) logits."""
        return self.maps(images)[self.output_names[0]]

    def maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output by name (float32 whatever the precision the CPU computed in)."""
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        results = self.request.infer({0: array})
        return {
            name: torch.from_numpy(np.array(results[output], dtype=np.float32))
            for name, output in zip(self.output_names, self.compiled.outputs, strict=True)
        }

    def check_matches(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Refuse a file exported from other weights than these (or not by fcnseg at all)."""
        from fcnseg.inference.backends import check_fingerprint

        check_fingerprint(self.path, self.metadata, state_dict)


def _fcnseg_metadata(model: Any) -> dict[str, Any]:
    """fcnseg's metadata_props of the ONNX file, which OpenVINO keeps under "framework"."""
    info = model.get_rt_info()
    if "framework" not in info:
        return {}
    framework = info["framework"]
    return {
        key.removeprefix("fcnseg."): json.loads(framework[key].astype(str))
        for key in framework
        if key.startswith("fcnseg.")
    }
