"""Inference: a checkpoint or an exported model -> labels for images of any size.

loading.py     fcnseg.load(path) -> Predictor, with the model's preprocessing and classes
predictor.py   the one inference path: whole image or tiles, test-time augmentation
tiling.py      overlapping tiles and their blending; bands for huge images
backends.py    eager PyTorch (batch norm folded, channels-last) or ONNX Runtime
files.py       `fcnseg predict`: image files in, index masks and overlays out
streaming.py   huge images read and written in row bands
"""

from fcnseg.inference.loading import load, predictor_for
from fcnseg.inference.predictor import InferenceOptions, Predictor

__all__ = ["InferenceOptions", "Predictor", "load", "predictor_for"]
