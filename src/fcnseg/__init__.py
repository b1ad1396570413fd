"""fcnseg: semantic segmentation with fully convolutional networks.

The way one batch travels, and the package that handles each step:

    config (YAML -> typed dataclasses)                      fcnseg.config
      -> dataset -> joint transforms -> loader              fcnseg.data (masks/, doctor/)
      -> backbone (features by stride) -> decoder -> head   fcnseg.models  => logits (N, K, H, W)
      -> loss -> trainer (optimizer, schedule, checkpoints) fcnseg.losses, fcnseg.training
      -> predictor (whole / tiled / TTA, backends)          fcnseg.inference
      -> metrics (confusion matrix, boundary F1)            fcnseg.metrics
      -> report (JSON, HTML) / export (ONNX, int8)          fcnseg.report, fcnseg.export

    predictor = fcnseg.load("runs/demo/best.pt")            # a checkpoint or an .onnx file
    labels = predictor.predict_image(image)                 # (H, W, C) uint8 -> (H, W)
    # an instance checkpoint gives an InstancePredictor: predict_image -> Instances

The names below are imported when first used, not with the package: `fcnseg --help` and
`fcnseg --version` then answer at once, and a command's first line appears before PyTorch has
loaded (seconds on a cold start).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from fcnseg.checkpoint import ModelSpec
    from fcnseg.errors import FcnsegError
    from fcnseg.inference import InferenceOptions, InstancePredictor, Predictor, load
    from fcnseg.metrics import ConfusionMatrix, Scores
    from fcnseg.models import build_model, list_models
    from fcnseg.models.instances import Instances

__version__ = "0.1.0"  # as in pyproject.toml; `fcnseg --version` reads the installed one first

_EXPORTS: dict[str, str] = {  # name -> the module that defines it
    "ConfusionMatrix": "fcnseg.metrics",
    "FcnsegError": "fcnseg.errors",
    "InferenceOptions": "fcnseg.inference",
    "InstancePredictor": "fcnseg.inference",
    "Instances": "fcnseg.models.instances",
    "ModelSpec": "fcnseg.checkpoint",
    "Predictor": "fcnseg.inference",
    "Scores": "fcnseg.metrics",
    "build_model": "fcnseg.models",
    "list_models": "fcnseg.models",
    "load": "fcnseg.inference",
}

__all__ = [
    "ConfusionMatrix",
    "FcnsegError",
    "InferenceOptions",
    "InstancePredictor",
    "Instances",
    "ModelSpec",
    "Predictor",
    "Scores",
    "__version__",
    "build_model",
    "list_models",
    "load",
]


def __getattr__(name: str) -> Any:
    """`fcnseg.load` and the other public names, imported on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fcnseg' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups do not come here again
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
