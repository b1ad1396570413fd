"""The instance task's inference path: trainer validation, `fcnseg evaluate`, `predict`, `load`.

    image (H, W, C) uint8 -> normalised as in training                      (C, H, W) float
      -> scaled by data.inference_scale (bilinear), when it is not 1        (C, h, w)
      -> model.predict: the model's own post-processing (for InstanceFCN: dense windows,
         objectness, mask NMS), in eval mode                                 Instances at (h, w)
      -> masks brought back to (H, W) (bilinear, > 0.5)                     Instances at (H, W)

An exported instance model (`fcnseg export`) runs the same way: ONNX Runtime gives the raw maps,
and the model's own post-processing, built from its spec without weights, turns them into
Instances (ExportedInstanceModel).

The semantic Predictor's tiles and test-time augmentation do not apply: an instance is one
object across the whole image, and averaging views of a set of masks is no longer an average of
logits. Those options are refused in their flags' own words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.checkpoint import ModelSpec
from fcnseg.config import DataConfig
from fcnseg.data.transforms import build_transform
from fcnseg.errors import FcnsegError
from fcnseg.inference.backends import OnnxModel
from fcnseg.inference.options import InferenceOptions
from fcnseg.inference.predictor import eval_mode
from fcnseg.metrics.instances import InstanceEvaluator
from fcnseg.models.instances import Instances, classes_of
from fcnseg.palette import PALETTE, full_palette

# COCO's maxDets: at most this many detections per image and class are ranked for AP.
EVALUATION_MAX_DETECTIONS = 100
RESIZE_CHUNK_PIXELS = 2**25  # mask pixels resized at once: 128 MB in float32

Transform = Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]]


class ExportedInstanceModel:
    """An instance model exported by `fcnseg export`: ONNX Runtime computes the raw maps (the
    network), and the model's own `postprocess` turns them into Instances. That post-processing
    comes from the model rebuilt from its spec on the meta device: its settings (windows,
    thresholds) without memory for weights, so it is the very code the checkpoint runs."""

    def __init__(self, runner: OnnxModel, spec: ModelSpec) -> None:
        self.runner = runner
        # Pretrained backbone weights are already in the exported network: not read again.
        options = {k: None if k == "backbone_weights" else v for k, v in spec.options.items()}
        with torch.device("meta"):  # no weights are allocated, let alone initialised
            self.postprocessor = ModelSpec(
                spec.name, spec.num_classes, spec.in_channels, options
            ).build()
        self.max_detections = getattr(self.postprocessor, "max_detections", 0)

    def predict(self, images: torch.Tensor) -> list[Instances]:
        """The instances in each of (N, C, H, W) images, at (H, W), as the model's predict."""
        maps = self.runner.maps(images)
        return self.postprocessor.postprocess(maps, (images.shape[-2], images.shape[-1]))


class InstancePredictor:
    """Runs an instance model (INSTANCE_MODELS: `predict(images) -> list[Instances]`) on raw or
    normalised images, at their own size (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module | ExportedInstanceModel,
        device: torch.device | str,
        transform: Transform,
        scale: float,
        class_names: list[str],
        palette: np.ndarray,
        data: DataConfig,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device) if isinstance(model, nn.Module) else model
        self.transform = transform
        self.scale = scale  # data.inference_scale: the model saw images scaled by this
        self.class_names = class_names  # class 0 is background, never an instance's
        self.palette = palette  # (256, 3) colour of each class
        self.data = data  # how the model's images are read: mode, alpha, bit depth, scaling
        self.checkpoint: dict[str, Any] = {}  # the checkpoint's facts, without its tensors
        self.source: Path | None = None  # the file it was loaded from

    def normalise(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, C) uint8 -> (C, H, W) float32, as the training data was."""
        tensor, _ = self.transform(image, np.zeros(image.shape[:2], dtype=np.int64))
        return tensor

    def predict_image(self, image: np.ndarray) -> Instances:
        """A raw (H, W, C) uint8 image -> its instances at (H, W)."""
        return self.instances(self.normalise(image)[None])[0]

    def instances(self, images: torch.Tensor) -> list[Instances]:
        """(N, C, H, W) normalised images -> the instances of each, at (H, W), on the CPU."""
        height, width = images.shape[-2:]
        scaled = images
        if self.scale != 1.0:
            size = (max(1, round(height * self.scale)), max(1, round(width * self.scale)))
            scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        if not isinstance(self.model, nn.Module):  # an exported model, run by ONNX Runtime
            return [resized(found, (height, width)) for found in self.model.predict(scaled)]
        with torch.inference_mode(), eval_mode(self.model):
            found = self.model.predict(scaled.to(self.device))
        return [resized(instances, (height, width)) for instances in found]

    def evaluate(
        self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], evaluator: InstanceEvaluator
    ) -> InstanceEvaluator:
        """Add every (images (N, C, H, W), targets (N, 2, H, W)) batch to `evaluator`."""
        for images, targets in batches:
            for instances, target in zip(self.instances(images), targets, strict=True):
                add_to_evaluator(evaluator, instances, target, self.data.ignore_index)
        return evaluator


def add_to_evaluator(
    evaluator: InstanceEvaluator, instances: Instances, target: torch.Tensor, ignore_index: int
) -> None:
    """One image's instances against its (2, H, W) target; void pixels are not judged."""
    evaluator.update(
        instances.masks,
        instances.scores,
        instances.classes,
        target[0],
        classes_of(target),
        void=target[1] == ignore_index,
    )


def resized(instances: Instances, size: tuple[int, int]) -> Instances:
    """The instances' masks at `size` (bilinear, > 0.5), unchanged when already there.

    A few masks at a time: in float, all of them at once would be 4 bytes per mask pixel (a
    thousand nuclei of a 2776 x 2080 image, doubled for inference: 23 GB)."""
    if tuple(instances.masks.shape[-2:]) == tuple(size):
        return instances
    if len(instances) == 0:
        return Instances.empty(*size)
    chunk = max(1, RESIZE_CHUNK_PIXELS // instances.masks[0].numel())
    masks = torch.cat(
        [
            F.interpolate(part[:, None].float(), size, mode="bilinear", align_corners=False)[:, 0]
            > 0.5
            for part in instances.masks.split(chunk)
        ]
    )  # (M, H, W) bool
    return Instances(masks, instances.classes, instances.scores)


def check_options(options: InferenceOptions | None) -> None:
    """Refuse what only semantic inference offers, naming the flags to drop."""
    if options is None:
        return
    refused = []
    if options.flip or tuple(options.scales) != (1.0,):
        refused.append("--flip / --scales (test-time augmentation)")
    if options.mode == "tiled":
        refused.append("--mode tiled")
    if options.precision != "fp32":
        refused.append(f"--precision {options.precision}")
    if refused:
        raise FcnsegError(
            f"an instance model runs whole images in fp32; {' and '.join(refused)} apply to "
            "semantic models only. Run it again without them."
        )


def instance_predictor_for(
    model: nn.Module | ExportedInstanceModel,
    data: DataConfig,
    device: torch.device | str = "cpu",
    class_names: list[str] | None = None,
    palette: np.ndarray | None = None,
    options: InferenceOptions | None = None,
) -> InstancePredictor:
    """An InstancePredictor that reads, normalises and scales images as `data` says its model
    was trained: the instance counterpart of `predictor_for`, shared by validation, the final
    report and `load` so that the three can never disagree."""
    check_options(options)
    transform = build_transform("none", data.mean, data.std, len(data.mean))
    names = class_names or [f"class {index}" for index in range(max(data.num_classes, 2))]
    colours = PALETTE if palette is None else full_palette(palette, data.ignore_index)
    return InstancePredictor(model, device, transform, data.inference_scale, names, colours, data)


def evaluation_max_detections(model: nn.Module) -> int:
    """COCO's 100 detections per image, or more for a model told to keep more (its
    `max_detections`, e.g. 1000 for nuclei, up to 375 an image): otherwise the metric, not the
    model, would cap recall and AP on crowded images."""
    return max(EVALUATION_MAX_DETECTIONS, int(getattr(model, "max_detections", 0)))
