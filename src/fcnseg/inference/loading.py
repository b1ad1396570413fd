"""`fcnseg.load`: a checkpoint or an exported model -> a ready Predictor.

    predictor = fcnseg.load("runs/demo/best.pt")        # or "runs/demo/best.onnx"
    mask = predictor.predict_image(image)               # (H, W, C) uint8 -> (H, W) labels
    predictor.class_names, predictor.palette            # what each label means and its colour

The Predictor comes with everything its training fixed: how images are read (data.image_mode,
alpha, bit depth) and normalised (data.mean, data.std), the scale it sees them at
(data.inference_scale) and the class names and colours. `predictor_for` is the one place where a
run's data config turns into a Predictor: the trainer's validation, `fcnseg train`'s final
report and `load` all go through it, so the three can never disagree.

A checkpoint of an instance model (task: instance), or its export, loads as an
InstancePredictor instead, made by `instance_predictor_for` (fcnseg.inference.instances):

    found = fcnseg.load("runs/demo-instance/best.pt").predict_image(image)  # Instances at (H, W)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fcnseg.checkpoint import ModelSpec, load_checkpoint, load_weights
from fcnseg.config import Config, DataConfig, from_dict, scored_classes
from fcnseg.data.transforms import build_transform
from fcnseg.errors import FcnsegError
from fcnseg.inference.backends import OnnxModel
from fcnseg.inference.instances import (
    ExportedInstanceModel,
    InstancePredictor,
    instance_predictor_for,
)
from fcnseg.inference.predictor import InferenceOptions, Predictor
from fcnseg.models import task_of
from fcnseg.palette import full_palette

# What `Predictor.checkpoint` keeps of a checkpoint: everything but tensors and optimizer state.
HEAVY_KEYS = ("state_dict", "optimizer", "scaler", "rng")


def resolve_device(name: str) -> torch.device:
    """ "auto" (a GPU when there is one), "cpu", "cuda", "cuda:1", ..."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FcnsegError(f"device is '{name}' but no CUDA GPU is available; use 'cpu'.")
    try:
        return torch.device(name)
    except RuntimeError:
        raise FcnsegError(f"device '{name}' is not one of auto, cpu, cuda, cuda:N.") from None


def predictor_for(
    network: nn.Module | Any,
    data: DataConfig,
    device: torch.device | str = "cpu",
    options: InferenceOptions | None = None,
    class_names: list[str] | None = None,
    palette: np.ndarray | None = None,
) -> Predictor:
    """A Predictor that reads, normalises and scales images as `data` says its model was
    trained (see the module docstring)."""
    channels = len(data.mean)
    transform = build_transform("none", data.mean, data.std, channels)
    options = (options or InferenceOptions()).at_scale(data.inference_scale)
    names = class_names or [f"class {i}" for i in range(scored_classes(data.num_classes))]
    colours = full_palette(palette, data.ignore_index) if palette is not None else None
    return Predictor(network, device, transform, options, names, colours, data)


def load(
    path: str | Path, device: str = "auto", options: InferenceOptions | None = None
) -> Predictor | InstancePredictor:
    """A ready Predictor for a checkpoint (.pt) or an ONNX file written by `fcnseg export`; an
    InstancePredictor (fcnseg.inference.instances) for a checkpoint of an instance model."""
    path = Path(path)
    if path.suffix == ".onnx":
        return _load_onnx(path, options)
    checkpoint = load_checkpoint(path)
    for key in ("model", "state_dict", "config"):
        if key not in checkpoint:
            raise FcnsegError(
                f"{path} has no '{key}' entry; it is not a model checkpoint. Use best.pt or "
                "last.pt from a run folder."
            )
    spec = ModelSpec.from_dict(checkpoint["model"], path)
    model = spec.build()
    load_weights(model, checkpoint, path)
    model.eval()  # a model for inference: even a forward outside the Predictor uses eval mode
    config = _config_of(checkpoint["config"], path)
    data = replace(config.data, num_classes=spec.num_classes)
    names = _class_names(checkpoint.get("class_names"), scored_classes(spec.num_classes), path)
    palette = checkpoint.get("palette")
    colours = np.asarray(palette, dtype=np.uint8) if palette is not None else _old_palette(data)
    chosen_device = resolve_device(device)
    predictor: Predictor | InstancePredictor
    if task_of(spec.name) == "instance":  # the model says what it outputs
        predictor = instance_predictor_for(model, data, chosen_device, names, colours, options)
    else:
        predictor = predictor_for(model, data, chosen_device, options, names, colours)
    predictor.checkpoint = {k: v for k, v in checkpoint.items() if k not in HEAVY_KEYS}
    predictor.source = path
    return predictor


def _load_onnx(path: Path, options: InferenceOptions | None) -> Predictor | InstancePredictor:
    """A Predictor over an exported file, configured from the metadata export wrote into it (an
    InstancePredictor over an exported instance model)."""
    runner = OnnxModel(path)
    meta = runner.metadata
    if "model" not in meta:
        raise FcnsegError(
            f"{path} was not written by fcnseg export (no fcnseg metadata); export a checkpoint "
            "with: fcnseg export CHECKPOINT."
        )
    spec = ModelSpec.from_dict(meta["model"], path)
    fields = ("mean", "std", "image_mode", "image_alpha", "inference_scale")
    data = replace(
        DataConfig(),
        num_classes=spec.num_classes,
        **{key: _plain(meta[key]) for key in fields if key in meta},
    )
    palette = meta.get("palette")
    colours = None if palette is None else np.asarray(palette, dtype=np.uint8)
    names = _class_names(meta.get("class_names"), scored_classes(spec.num_classes), path)
    predictor: Predictor | InstancePredictor
    if task_of(spec.name) == "instance":
        exported = ExportedInstanceModel(runner, spec)
        predictor = instance_predictor_for(exported, data, "cpu", names, colours, options)
    else:
        predictor = predictor_for(runner, data, "cpu", options, names, colours)
    predictor.source = path
    return predictor


def _config_of(plain: Any, path: Path) -> Config:
    try:
        return from_dict(Config, plain)
    except FcnsegError as error:
        raise FcnsegError(f"{path}: its saved config does not load ({error})") from None


def _class_names(names: Any, count: int, path: Path) -> list[str]:
    if names is None:
        return [f"class {i}" for i in range(count)]
    if not isinstance(names, list) or len(names) != count:
        raise FcnsegError(
            f"{path}: it names {len(names) if isinstance(names, list) else 'no list of'} "
            f"classes for a model of {count}; the file is damaged or not fcnseg's."
        )
    return [str(name) for name in names]


def _old_palette(data: DataConfig) -> np.ndarray | None:
    """Checkpoints from before palettes were stored: the class table beside the data, if it is
    still there (None: fcnseg's fixed palette)."""
    from fcnseg.data.masks.labels import palette_for

    try:
        return palette_for(data)[: scored_classes(data.num_classes)]
    except FcnsegError:
        return None


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
