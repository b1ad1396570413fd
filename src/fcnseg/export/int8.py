"""Post-training int8 quantization of an exported model, judged on validation data.

    calibrate     a few images through the float model; each activation's observed range
                  (min..max) fixes its int8 scale and zero point
    quantize      ONNX Runtime's static quantization, QDQ format: int8 weights per output channel,
                  uint8 activations (the pairing ONNX Runtime runs fastest on x86 with VNNI)
    judge         mIoU of the float and the int8 model on the validation split, and their speed;
                  an int8 model that loses more than `max_drop` mIoU points is not kept

The float model is first run through ONNX Runtime's pre-processing (graph optimisation), with
symbolic shape inference skipped: the model's pad-to-stride arithmetic on dynamic sizes is more
than it can follow, and quantization does not need it.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fcnseg.errors import FcnsegError
from fcnseg.inference.backends import INPUT_NAME, OnnxModel
from fcnseg.inference.predictor import Predictor
from fcnseg.metrics.confusion import ConfusionMatrix

DEFAULT_MAX_DROP = 1.0  # mIoU points


@dataclass(frozen=True)
class QuantizationResult:
    float_miou: float
    int8_miou: float
    float_seconds: float  # median per validation image
    int8_seconds: float
    kept: bool  # within the margin
    images: int  # validation images judged on

    @property
    def drop_points(self) -> float:
        return 100 * (self.float_miou - self.int8_miou)

    @property
    def speedup(self) -> float:
        return self.float_seconds / self.int8_seconds

    def describe(self) -> str:
        change = round(-self.drop_points, 2) + 0  # + 0 turns -0.0 into 0.0
        return (
            f"mIoU float32 {100 * self.float_miou:.2f}, int8 {100 * self.int8_miou:.2f} "
            f"(change {change:+.2f} points); {1000 * self.float_seconds:.0f} ms -> "
            f"{1000 * self.int8_seconds:.0f} ms per image, {self.speedup:.2f}x"
        )


def quantize_static_int8(
    float_path: Path, int8_path: Path, calibration: Sequence[torch.Tensor]
) -> Path:
    """Write the int8 (QDQ) version of `float_path`, calibrated on (C, H, W) normalised images."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise FcnsegError("int8 calibration needs at least one image; --calibrate found none.")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items: Iterator[torch.Tensor] = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self.items, None)
            return None if image is None else {INPUT_NAME: image[None].numpy()}

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(int8_path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
    _copy_metadata(float_path, int8_path, precision="int8", calibration_images=len(calibration))
    return int8_path


def _copy_metadata(source: Path, target: Path, **extra: object) -> None:
    """Quantization drops metadata_props: carry fcnseg's over, with `extra` entries."""
    import onnx

    source_model = onnx.load(str(source), load_external_data=False)
    target_model = onnx.load(str(target))
    entries = {p.key: p.value for p in source_model.metadata_props}
    entries.update({f"fcnseg.{key}": json.dumps(value) for key, value in extra.items()})
    del target_model.metadata_props[:]
    for key, value in entries.items():
        entry = target_model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(target_model, str(target))


def judge(
    float_model: OnnxModel,
    int8_model: OnnxModel,
    validation: Sequence[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    ignore_index: int,
    max_drop: float = DEFAULT_MAX_DROP,
) -> QuantizationResult:
    """mIoU and median seconds per image of both models over (image (C, H, W), mask (H, W))
    pairs. The models take turns on each image, so that a change in the machine's load
    during the run weighs on both alike."""
    if not validation:
        raise FcnsegError("judging the int8 model needs validation images; the split is empty.")
    predictors = [Predictor(model) for model in (float_model, int8_model)]
    matrices = [ConfusionMatrix(num_classes, ignore_index) for _ in predictors]
    seconds: list[list[float]] = [[], []]
    for predictor in predictors:
        predictor.labels(validation[0][0][None])  # warm-up: the session plans its memory
    for image, mask in validation:
        for predictor, matrix, times in zip(predictors, matrices, seconds, strict=True):
            start = time.perf_counter()
            labels = predictor.labels(image[None])
            times.append(time.perf_counter() - start)
            matrix.update(labels, mask[None])
    float_miou, int8_miou = (matrix.compute().miou for matrix in matrices)
    float_seconds, int8_seconds = (statistics.median(times) for times in seconds)
    kept = 100 * (float_miou - int8_miou) <= max_drop
    return QuantizationResult(
        float_miou, int8_miou, float_seconds, int8_seconds, kept, len(validation)
    )
