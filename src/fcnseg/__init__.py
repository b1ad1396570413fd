"""fcnseg: semantic segmentation with fully convolutional networks.

The way one batch travels:

    config (YAML -> typed dataclasses)                     fcnseg.config
      -> dataset -> joint transforms -> loader             fcnseg.data
      -> backbone (features by stride) -> decoder -> head  fcnseg.models   => logits (N, K, H, W)
      -> loss -> trainer (optimizer, schedule, checkpoints) fcnseg.losses, .optim, .trainer
      -> predictor (whole / tiled / TTA) -> metrics        fcnseg.predict, fcnseg.metrics
      -> report (JSON, HTML) / export (ONNX, int8)         fcnseg.report, fcnseg.export
"""

from fcnseg.errors import FcnsegError
from fcnseg.metrics import ConfusionMatrix, Scores
from fcnseg.models import build_model, list_models
from fcnseg.predict import InferenceOptions, Predictor

__version__ = "0.1.0"

__all__ = [
    "ConfusionMatrix",
    "FcnsegError",
    "InferenceOptions",
    "Predictor",
    "Scores",
    "__version__",
    "build_model",
    "list_models",
]
