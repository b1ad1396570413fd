"""The model behind `fcnseg serve`: an uploaded image in, what `fcnseg predict` writes for it out.

    upload bytes -> a file in a private temporary folder, removed when the request ends
      -> read and checked as `fcnseg predict` reads a file (inference.files: check_input,
         data.images.read_image): the training data's mode, alpha and bit depth
      -> the Predictor with its options, whole or in row bands of tiles when the memory budget
         says so (inference.streaming), at the model's inference scale, as `predict` runs it
      -> the index mask exactly as `predict` writes it: an 8-bit palette PNG of class indices
         (an instance model: 16-bit instance IDs, 0 background), the pixels of each class, and
         for an instance model predict's JSON record of each instance with its mask as COCO RLE

The upload goes through a file because the readers work on files (16-bit colour through OpenCV,
huge images in bands), and reading it as `predict` does is what makes the served mask equal
`predict`'s pixel for pixel. The file's path is never named in a reply.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import nn

from fcnseg.checkpoint import ModelSpec
from fcnseg.data.images import read_image
from fcnseg.data.instances.rle import counts_to_string, encode_counts
from fcnseg.errors import FcnsegError
from fcnseg.inference import InstancePredictor, Predictor
from fcnseg.inference.backends import default_onnx_path, matching_export, select_backend
from fcnseg.inference.files import check_input, predict_in_bands
from fcnseg.inference.instance_files import instance_records
from fcnseg.inference.instance_pictures import instance_colours
from fcnseg.inference.instances import ExportedInstanceModel
from fcnseg.inference.streaming import BandSource
from fcnseg.serve.limits import Upload

SUFFIXES = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "WEBP": ".webp",
}


@dataclass
class Prediction:
    """One image's result: its index mask as `fcnseg predict` writes it, and what it holds."""

    width: int
    height: int
    mask_png: bytes  # palette PNG of class indices; an instance model's: 16-bit instance IDs
    class_pixels: list[int]  # pixels of each class, background included
    instances: list[dict[str, Any]] | None = None  # an instance model's records, with "rle"
    milliseconds: float = 0.0  # reading, inference and encoding, on the worker thread


class ServedModel:
    """A Predictor (or InstancePredictor) on its backend, as the API shows and runs it."""

    def __init__(self, predictor: Predictor | InstancePredictor, backend: str) -> None:
        self.predictor = predictor
        self.backend = backend  # a few words: "onnxruntime (best.onnx)", "torch (...)"
        self.task = "instance" if isinstance(predictor, InstancePredictor) else "semantic"

    @property
    def name(self) -> str:
        """The registered model's name (unet, instancefcn, ...), from the checkpoint or export."""
        spec = self.predictor.checkpoint.get("model")
        if spec is None:
            runner = getattr(self.predictor.model, "runner", self.predictor.model)
            spec = getattr(runner, "metadata", {}).get("model")
        return str((spec or {}).get("name", "model"))

    def describe(self) -> dict[str, Any]:
        """GET /model: what the model is, what it tells apart, and how it sees images."""
        predictor, data = self.predictor, self.predictor.data
        names = list(predictor.class_names)
        return {
            "name": self.name,
            "run": (predictor.checkpoint.get("config") or {}).get("name"),
            "task": self.task,
            "classes": names,
            "palette": predictor.palette[: len(names)].tolist(),
            "input_scale": data.inference_scale,
            "image_mode": data.image_mode + ("A" if data.image_alpha == "keep" else ""),
            "backend": self.backend,
            "file": predictor.source.name if predictor.source else None,
        }

    def predict(self, upload: Upload) -> Prediction:
        """The upload's Prediction (see the module docstring); FcnsegError for an image that
        cannot be read, in words that name the upload rather than the temporary file."""
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="fcnseg-serve-") as folder:
            path = Path(folder) / f"upload{SUFFIXES.get(upload.format, '')}"
            path.write_bytes(upload.data)
            try:
                run = self._instances if self.task == "instance" else self._labels
                prediction = run(path)
            except FcnsegError as error:
                message = str(error).replace(str(path), f"'{upload.filename}'")
                raise FcnsegError(message) from None
        prediction.milliseconds = round(1000 * (time.perf_counter() - start), 1)
        return prediction

    def _labels(self, path: Path) -> Prediction:
        """A semantic model's mask, read and written as fcnseg.inference.files.predict_file."""
        predictor, data = self.predictor, self.predictor.data
        width, height = check_input(path, data)
        if predictor.use_tiles(1, height, width):  # predict_file's row bands of tiles
            mask_path, overlay_path = path.with_name("mask.png"), path.with_name("overlay.png")
            source = BandSource(path, data)
            predict_in_bands(predictor, source, mask_path, overlay_path, predictor.palette)
            mask_png = mask_path.read_bytes()
            with Image.open(mask_path) as mask:
                labels = np.asarray(mask)  # (H, W) uint8 class indices
        else:
            image = read_image(
                path, data.image_mode, data.image_alpha, data.image_bit_depth, data.image_scaling
            )
            labels = predictor.predict_image(image).astype(np.uint8)  # (H, W)
            mask_png = palette_png(labels, predictor.palette)
        pixels = np.bincount(labels.ravel(), minlength=len(predictor.class_names))
        return Prediction(width, height, mask_png, pixels.tolist())

    def _instances(self, path: Path) -> Prediction:
        """An instance model's ID map and records, as fcnseg.inference.instance_files writes
        them, each record with its mask as COCO RLE and its colour in predict's overlays."""
        predictor, data = self.predictor, self.predictor.data
        width, height = check_input(path, data)
        image = read_image(
            path, data.image_mode, data.image_alpha, data.image_bit_depth, data.image_scaling
        )
        ids, records = instance_records(predictor.predict_image(image), predictor.class_names)
        buffer = io.BytesIO()
        Image.fromarray(ids.astype(np.uint16)).save(buffer, format="PNG")
        class_of_id = np.array([0, *(record["class"] for record in records)], dtype=np.int64)
        pixels = np.bincount(class_of_id[ids].ravel(), minlength=len(predictor.class_names))
        colours = instance_colours(len(records))
        for record in records:
            counts = encode_counts(ids == record["id"])
            record["rle"] = {"size": [height, width], "counts": counts_to_string(counts)}
            record["colour"] = colours[record["id"]].tolist()
        return Prediction(width, height, buffer.getvalue(), pixels.tolist(), records)

    def reply(self, prediction: Prediction, include_mask: bool = False) -> dict[str, Any]:
        """POST /predict?format=json: each class's area in pixels and per cent, an instance
        model's instances, and with `include_mask` the mask PNG in base64 (for the page)."""
        names, total = self.predictor.class_names, prediction.width * prediction.height
        colours = self.predictor.palette
        reply: dict[str, Any] = {
            "width": prediction.width,
            "height": prediction.height,
            "classes": [
                {
                    "index": index,
                    "name": name,
                    "colour": colours[index].tolist(),
                    "pixels": pixels,
                    "percent": round(100 * pixels / total, 3),
                }
                for index, (name, pixels) in enumerate(
                    zip(names, prediction.class_pixels, strict=False)
                )
            ],
            "milliseconds": prediction.milliseconds,
        }
        if prediction.instances is not None:
            reply["instances"] = prediction.instances
        if include_mask:
            reply["mask_png"] = base64.b64encode(prediction.mask_png).decode("ascii")
        return reply


def palette_png(labels: np.ndarray, palette: np.ndarray) -> bytes:
    """(H, W) uint8 class indices as the 8-bit palette PNG `fcnseg predict` writes."""
    indexed = Image.fromarray(labels)  # "L", made "P" by its palette
    indexed.putpalette(palette.flatten().tolist())
    buffer = io.BytesIO()
    indexed.save(buffer, format="PNG")
    return buffer.getvalue()


def served_model(
    predictor: Predictor | InstancePredictor,
    model_path: str | Path,
    backend: str = "auto",
    onnx_path: str | Path | None = None,
) -> ServedModel:
    """`predictor` (fcnseg.load of model_path) on the backend `fcnseg predict` would choose:
    onnxruntime for an exported model beside the checkpoint (or --onnx FILE) made from these
    weights, else PyTorch. `backend` "torch" or "onnx" insists, as predict's --backend."""
    path = Path(model_path)
    if not isinstance(predictor.model, nn.Module):  # model_path is itself an exported model
        if backend == "torch":
            raise FcnsegError(
                f"--backend torch needs a checkpoint (.pt), but {path.name} is an exported "
                "model, which runs in onnxruntime; serve the checkpoint, or drop --backend."
            )
        return ServedModel(predictor, f"onnxruntime ({path.name})")
    onnx_file = Path(onnx_path) if onnx_path else default_onnx_path(path)
    if isinstance(predictor, InstancePredictor):
        network, description = instance_backend(predictor, path, backend, onnx_file)
    else:
        network, description = select_backend(
            predictor.model, path, backend, onnx_path, predictor.device, predictor.options.precision
        )
    predictor.model = network
    return ServedModel(predictor, description.replace(str(onnx_file), onnx_file.name))


def instance_backend(
    predictor: InstancePredictor, path: Path, backend: str, onnx_file: Path
) -> tuple[Any, str]:
    """An instance model's network: its export's raw maps in onnxruntime with the model's own
    post-processing (ExportedInstanceModel), by select_backend's rule; else PyTorch."""
    weights = predictor.model.state_dict()
    spec = ModelSpec.from_dict(predictor.checkpoint["model"], path)
    exported = f"onnxruntime ({onnx_file}), post-processing in PyTorch"
    if backend not in ("auto", "torch", "onnx"):
        raise FcnsegError(
            f"--backend {backend} runs semantic models only; an instance model runs in torch "
            "or onnx (its export's maps in onnxruntime): choose --backend auto, torch or onnx."
        )
    if backend == "onnx":
        return ExportedInstanceModel(matching_export(path, onnx_file, weights), spec), exported
    note = ""
    on_cpu = predictor.device.type == "cpu"
    has_runtime = importlib.util.find_spec("onnxruntime") is not None
    if backend == "auto" and on_cpu and onnx_file.is_file() and has_runtime:
        try:
            return ExportedInstanceModel(matching_export(path, onnx_file, weights), spec), exported
        except FcnsegError as error:
            note = f"; {onnx_file} passed over: {error}"
    return predictor.model, f"torch{note}"
