"""What runs the network for the Predictor: eager PyTorch with batch norm folded into the
convolutions and channels-last, or an exported model in ONNX Runtime (OnnxModel), whichever is
fastest here.

In eval mode a batch norm after a convolution is an affine map per channel, so it folds into the
convolution's weights and bias (per output channel o):

    scale_o = gamma_o / sqrt(running_var_o + eps)
    W'_o = W_o * scale_o            b'_o = (b_o - running_mean_o) * scale_o + beta_o

which saves a pass over every activation. Which convolution feeds which batch norm is found by
watching one small forward pass (a norm whose input is exactly a convolution's output tensor),
so no architecture has to declare its pairs; the folded copy is then checked against the original
on the probe, and folding is abandoned if they differ. The caller's model is never changed.

Backends, measured on this project's 2-core AVX-512 CPU (see docs/deployment.md and
benchmarks/inference_speed.py): ONNX Runtime on an exported model beat eager PyTorch with
channels-last by 5-14 % in float32 at batch 1 (-1 to +10 % at batch 4), and torch.compile
(inductor, freezing) was slower than both after a minute of compiling. So on CPU the choice is
ONNX Runtime when an exported model for the checkpoint is at hand and onnxruntime is installed,
else this eager path; on a GPU, eager.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fcnseg.errors import FcnsegError

INPUT_NAME, OUTPUT_NAME = "image", "logits"  # of an exported model
BACKENDS = ("auto", "torch", "onnx", "openvino")
FOLD_TOLERANCE = 1e-3  # relative to the logits' scale; folding only reorders float rounding


def fold_batch_norms(model: nn.Module, channels: int, probe: int = 64) -> tuple[nn.Module, int]:
    """A copy of `model` (eval) with every Conv2d -> BatchNorm2d pair folded; and how many."""
    folded = copy.deepcopy(model).eval()
    pairs = _conv_norm_pairs(folded, channels, probe)
    if not pairs:
        return folded, 0
    x = torch.randn(1, channels, probe, probe, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = folded(x)
        for conv, norm in pairs:
            _fold_into(conv, norm)
        _replace_modules(folded, {id(norm) for _, norm in pairs})
        result = folded(x)
    scale = reference.abs().max().clamp(min=1.0)
    if (result - reference).abs().max() > FOLD_TOLERANCE * scale:
        return copy.deepcopy(model).eval(), 0  # some norm's input fed something else as well
    return folded, len(pairs)


def _conv_norm_pairs(
    model: nn.Module, channels: int, probe: int
) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """(conv, norm) pairs where the norm's input is the conv's output, each called once."""
    outputs: dict[int, tuple[nn.Conv2d, torch.Tensor]] = {}  # id(output) -> (conv, output)
    calls: dict[int, int] = {}
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []

    def after_conv(conv: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        calls[id(conv)] = calls.get(id(conv), 0) + 1
        outputs[id(output)] = (conv, output)  # holding the tensor keeps its id unique

    def before_norm(norm: nn.Module, inputs: tuple) -> None:
        calls[id(norm)] = calls.get(id(norm), 0) + 1
        source = outputs.get(id(inputs[0]))
        if source is not None:
            pairs.append((source[0], norm))

    hooks = [
        module.register_forward_hook(after_conv)
        if isinstance(module, nn.Conv2d)
        else module.register_forward_pre_hook(before_norm)
        for module in model.modules()
        if isinstance(module, nn.Conv2d | nn.BatchNorm2d)
    ]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, channels, probe, probe))
    finally:
        for hook in hooks:
            hook.remove()
    return [(c, n) for c, n in pairs if calls[id(c)] == 1 and calls[id(n)] == 1]


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    gamma = norm.weight if norm.affine else torch.ones_like(norm.running_var)
    beta = norm.bias if norm.affine else torch.zeros_like(norm.running_mean)
    scale = gamma / torch.sqrt(norm.running_var + norm.eps)  # (C_out,)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    conv.bias = nn.Parameter((bias - norm.running_mean) * scale + beta)


def _replace_modules(model: nn.Module, targets: set[int]) -> None:
    """Swap every module whose id is in `targets` for an Identity, wherever it sits."""
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if id(child) in targets:
                setattr(parent, name, nn.Identity())


def prepare_for_cpu(model: nn.Module, channels: int) -> tuple[nn.Module, int]:
    """The eager fast path: a folded, channels-last copy in eval mode (run under inference_mode
    by the Predictor), and how many batch norms were folded into it."""
    folded, count = fold_batch_norms(model, channels)
    return folded.to(memory_format=torch.channels_last), count


def default_onnx_path(checkpoint_path: str | Path) -> Path:
    """Where `fcnseg export` writes a checkpoint's float model by default: beside it."""
    return Path(checkpoint_path).with_suffix(".onnx")


def select_backend(
    model: nn.Module,
    checkpoint_path: str | Path,
    backend: str = "auto",
    onnx_path: str | Path | None = None,
    device: torch.device | None = None,
    precision: str = "fp32",
) -> tuple[Any, str]:
    """The network for the Predictor and a few words on it, by the rule in the module docstring.

    "auto" takes ONNX Runtime only for a float export that matches the checkpoint; a stale or
    foreign file beside the checkpoint is passed over with a note. "onnx" insists on it, and
    "openvino" runs the same file in OpenVINO (fcnseg.inference.openvino) at `precision`.
    """
    if backend not in BACKENDS:
        raise FcnsegError(f"backend '{backend}' is not one of {', '.join(BACKENDS)}.")
    weights = model.state_dict()
    onnx_file = Path(onnx_path) if onnx_path else default_onnx_path(checkpoint_path)
    on_cpu = device is None or device.type == "cpu"
    if backend in ("onnx", "openvino"):
        runner = matching_export(checkpoint_path, onnx_path, weights, backend, precision)
        name = "onnxruntime" if backend == "onnx" else f"openvino {precision}"
        return runner, f"{name} ({onnx_file})"
    note = ""
    if backend == "auto" and on_cpu and onnx_file.is_file() and _has_onnxruntime():
        try:
            runner = OnnxModel(onnx_file)
            runner.check_matches(weights)
            return runner, f"onnxruntime ({onnx_file})"
        except FcnsegError as error:
            note = f"; {onnx_file} passed over: {error}"
    if not on_cpu:
        return model, f"torch on {device}{note}"
    channels = next(p for p in model.parameters() if p.dim() == 4).shape[1]
    fast, folded = prepare_for_cpu(model, channels)
    folding = f"{folded} batch norms folded" if folded else "no batch norm to fold"
    return fast, f"torch ({folding}, channels-last){note}"


def matching_export(
    checkpoint_path: str | Path,
    onnx_path: str | Path | None,
    weights: dict[str, torch.Tensor],
    backend: str = "onnx",
    precision: str = "fp32",
) -> Any:
    """The export --backend onnx / openvino asks for (--onnx FILE, else the one beside the
    checkpoint), refused unless it exists and was exported from these weights."""
    onnx_file = Path(onnx_path) if onnx_path else default_onnx_path(checkpoint_path)
    if not onnx_file.is_file():
        raise FcnsegError(
            f"--backend {backend} needs an exported model, and {onnx_file} does not exist; run "
            f"fcnseg export {checkpoint_path} first, or pass --onnx FILE."
        )
    if backend == "openvino":
        from fcnseg.inference.openvino import OpenVinoModel  # optional: only when asked for

        runner: Any = OpenVinoModel(onnx_file, precision)
    else:
        runner = OnnxModel(onnx_file)
    runner.check_matches(weights)
    return runner


def _has_onnxruntime() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


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


class OnnxModel:
    """An exported model in ONNX Runtime: (N, C, H, W) float tensor -> (N, K, H, W) logits, or
    for an instance model its raw maps by name (`maps`)."""

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
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.in_channels = self.metadata.get("in_channels")
        self.bytes_per_pixel = self.metadata.get("bytes_per_pixel")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The first output: a semantic model's (N, K, H, W) logits."""
        return self.maps(images)[self.output_names[0]]

    def maps(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output by name: an instance model's raw maps (its forward's dict)."""
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        outputs = self.session.run(None, {self.input_name: array})
        return {
            name: torch.from_numpy(value)
            for name, value in zip(self.output_names, outputs, strict=True)
        }

    def check_matches(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Refuse a file exported from other weights than these (or not by fcnseg at all)."""
        check_fingerprint(self.path, self.metadata, state_dict)


def check_fingerprint(
    path: Path, metadata: dict[str, Any], state_dict: dict[str, torch.Tensor]
) -> None:
    """Refuse an exported file whose metadata names other weights than these, or none."""
    if "fingerprint" not in metadata:
        raise FcnsegError(
            f"{path} was not written by fcnseg export (no fcnseg metadata); export the "
            "checkpoint with: fcnseg export CHECKPOINT."
        )
    expected = fingerprint(state_dict)
    if metadata["fingerprint"] != expected:
        raise FcnsegError(
            f"{path} was exported from a different checkpoint (weights fingerprint "
            f"{metadata['fingerprint']}, this checkpoint's is {expected}); export this "
            "checkpoint again with fcnseg export, or pass the matching --onnx file."
        )
