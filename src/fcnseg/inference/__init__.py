"""Inference: a checkpoint or an exported model -> labels for images of any size.

loading.py          fcnseg.load(path) -> Predictor (or InstancePredictor), with the model's
                    preprocessing and classes
options.py          InferenceOptions: whole or tiled, test-time augmentation, precision
predictor.py        the one inference path: whole image or tiles, test-time augmentation
instances.py        the instance task's path: Instances at each image's size
tiling.py           overlapping tiles and their blending; bands for huge images
backends.py         eager PyTorch (batch norm folded, channels-last) or ONNX Runtime
files.py            `fcnseg predict`: image files in, index masks and overlays out
instance_files.py   `fcnseg predict` of an instance model: ID maps, JSON, overlays
instance_pictures.py  instances drawn in their own colours with contours (numpy only)
watershed.py        instances from a semantic (background, interior, boundary) model
streaming.py        huge images read and written in row bands
"""

from fcnseg.inference.instances import InstancePredictor
from fcnseg.inference.loading import load, predictor_for
from fcnseg.inference.predictor import InferenceOptions, Predictor

__all__ = ["InferenceOptions", "InstancePredictor", "Predictor", "load", "predictor_for"]
