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
"""

from fcnseg.checkpoint import ModelSpec
from fcnseg.errors import FcnsegError
from fcnseg.inference import InferenceOptions, InstancePredictor, Predictor, load
from fcnseg.metrics import ConfusionMatrix, Scores
from fcnseg.models import build_model, list_models
from fcnseg.models.instances import Instances

__version__ = "0.1.0"

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
