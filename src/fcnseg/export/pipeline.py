"""`fcnseg export`: a checkpoint -> a checked ONNX model -> optionally an int8 model, judged.

    fcnseg export CKPT [--out FILE]                      float32, default <ckpt stem>.onnx beside it
    fcnseg export CKPT --int8 --calibrate DIR            int8, default <ckpt stem>.int8.onnx
        [--data DIR] [--split val] [--max-drop 1.0] [--force]

Every export is checked against PyTorch on two input sizes (fcnseg.export.check_parity) and
deleted again if it is off. The int8 model starts from the float export beside the checkpoint
when there is one from the same weights (else it exports one to a temporary folder). It is
calibrated on the images of DIR (a folder of images, or a dataset root whose training split is
used), then both models are run over the validation split (--data, else the checkpoint's own
dataset): if int8 loses more than --max-drop mIoU points it is not written, unless --force.

The target must be a new file, or with --overwrite an earlier fcnseg export (never a file of
the user's, never a folder), in a folder that exists. It is written under a hidden name and
renamed into place only once checked (fcnseg.storage.atomic): a refused or interrupted export leaves
the file that was there before.

An instance model (task: instance) exports its network, whose outputs are its raw maps (for
InstanceFCN: score maps and objectness), checked against PyTorch map by map; its post-processing
(windows, mask NMS) stays Python, run by fcnseg.load on the file (ExportedInstanceModel). int8 is
for semantic models only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from fcnseg.config import DataConfig
from fcnseg.data import make_dataset
from fcnseg.data.folder import IMAGE_SUFFIXES, read_image
from fcnseg.errors import FcnsegError
from fcnseg.export.int8 import DEFAULT_MAX_DROP, QuantizationResult, judge, quantize_static_int8
from fcnseg.export.onnx import (
    Parity,
    RawMaps,
    check_map_parity,
    check_parity,
    export_onnx,
    map_names,
)
from fcnseg.inference.backends import OnnxModel, default_onnx_path, fingerprint, onnx_runtime
from fcnseg.inference.instances import InstancePredictor
from fcnseg.inference.loading import load
from fcnseg.inference.predictor import Predictor
from fcnseg.models import task_of
from fcnseg.storage.atomic import atomic_path

CALIBRATION_LIMIT = 64  # images; activation ranges settle long before this


def export_checkpoint(
    checkpoint_path: str,
    out: str | None = None,
    int8: bool = False,
    calibrate: str | None = None,
    data_dir: str | None = None,
    split: str | None = None,
    max_drop: float = DEFAULT_MAX_DROP,
    force: bool = False,
    overwrite: bool = False,
    print_line: Callable[[str], None] = print,
) -> Path:
    """Export (and with `int8`, quantize) a checkpoint; returns the file written."""
    predictor = load(checkpoint_path, device="cpu")  # the checkpoint is read once, here
    onnx_runtime()  # fail before any work if the export extra is missing
    if int8 and isinstance(predictor, InstancePredictor):
        raise FcnsegError(
            f"{checkpoint_path} holds an instance model; --int8 is judged by mIoU and applies to "
            "semantic models only. Export it in float32: drop --int8 and --calibrate."
        )
    if int8 and not calibrate:
        raise FcnsegError("--int8 needs --calibrate DIR, a folder of images like the inputs.")
    suffix = ".int8.onnx" if int8 else ".onnx"
    target = Path(out) if out else default_onnx_path(checkpoint_path).with_suffix(suffix)
    check_target(target, overwrite)
    with atomic_path(target) as partial:  # renamed to `target` only if nothing raises
        if not int8:
            _export_checked(predictor, partial, print_line)
        else:
            result = _quantized(
                predictor,
                checkpoint_path,
                partial,
                calibrate,
                data_dir,
                split,
                max_drop,
                print_line,
            )
            _keep_or_refuse(result, max_drop, force, print_line)
    print_line(f"wrote {target}")
    return target


def _quantized(
    predictor: Predictor,
    checkpoint_path: str,
    path: Path,
    calibrate: str,
    data_dir: str | None,
    split: str | None,
    max_drop: float,
    print_line: Callable[[str], None],
) -> QuantizationResult:
    """Write the int8 model to `path`, from the float export beside the checkpoint (or a fresh
    one), calibrated on `calibrate`, and judge it against the float one on the validation
    split of `data_dir` (default: the checkpoint's dataset)."""
    with tempfile.TemporaryDirectory() as scratch:
        float_path = _float_export_of(checkpoint_path, predictor)
        if float_path is None:
            float_path = Path(scratch) / "float.onnx"
            _export_checked(predictor, float_path, print_line)
        else:
            print_line(f"quantizing {float_path} (exported from this checkpoint)")
        calibration = calibration_images(Path(calibrate), predictor)
        print_line(f"calibrating on {len(calibration)} images from {calibrate}")
        quantize_static_int8(float_path, path, calibration)
        data = predictor.data
        return judge(
            OnnxModel(float_path),
            OnnxModel(path),
            _validation_pairs(data, data_dir, split),
            data.num_classes,
            data.ignore_index,
            max_drop,
        )


def check_target(target: Path, overwrite: bool) -> None:
    """The export's file: a new .onnx file in an existing folder, or with `overwrite` an
    earlier fcnseg export; anything else is refused before any work."""
    if target.suffix != ".onnx":
        raise FcnsegError(f"--out {target} must end in .onnx (it is the exported model).")
    if target.is_dir():
        raise FcnsegError(f"--out {target} is a folder; give the .onnx file to write.")
    if not target.parent.is_dir():
        raise FcnsegError(
            f"--out {target}: the folder {target.parent} does not exist; create it first, "
            "or choose another --out."
        )
    if not target.exists() and not target.is_symlink():
        return
    if not overwrite:
        raise FcnsegError(
            f"{target} already exists; pass --overwrite to replace it, or choose another --out."
        )
    if not is_fcnseg_export(target):
        raise FcnsegError(
            f"{target} is not a model fcnseg exported (no fcnseg metadata), so it is left "
            "untouched even with --overwrite; choose another --out."
        )


def is_fcnseg_export(path: Path) -> bool:
    """Whether `path` is an ONNX model carrying the metadata `fcnseg export` writes."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # onnx's own errors for a file that is not a model
        return False
    return any(entry.key == "fcnseg.fingerprint" for entry in model.metadata_props)


def _keep_or_refuse(
    result: QuantizationResult, max_drop: float, force: bool, print_line: Callable[[str], None]
) -> None:
    """Report the int8 model's mIoU change and speed-up; refuse it past the margin unforced
    (the error deletes the file: export_checkpoint writes it under atomic_path)."""
    print_line(f"int8 on {result.images} validation images: {result.describe()}")
    if not result.kept and not force:
        raise FcnsegError(
            f"the int8 model loses {result.drop_points:.2f} mIoU points, more than --max-drop "
            f"{max_drop}; it was not written. Calibrate on more representative images, or "
            "pass --force to keep it anyway."
        )


def export_metadata(predictor: Predictor | InstancePredictor) -> dict[str, Any]:
    """What makes the file self-describing: the model, its classes and how images are read."""
    model, data, spec = predictor.model, predictor.data, predictor.checkpoint["model"]
    return {
        "fingerprint": fingerprint(model.state_dict()),
        "model": spec,
        "task": task_of(spec["name"]),
        "in_channels": spec["in_channels"],
        "num_classes": spec["num_classes"],
        "class_names": predictor.class_names,
        "palette": predictor.palette[: len(predictor.class_names)].tolist(),  # 2 if binary
        "mean": list(data.mean),
        "std": list(data.std),
        "image_mode": data.image_mode,
        "image_alpha": data.image_alpha,
        "inference_scale": data.inference_scale,  # images resized by this first
        "precision": "fp32",
    }


def _export_checked(
    predictor: Predictor | InstancePredictor, path: Path, print_line: Callable[[str], None]
) -> Path:
    """Export the float model with its metadata, then compare it with PyTorch or delete it."""
    model, metadata = predictor.model, export_metadata(predictor)
    channels = metadata["in_channels"]
    if isinstance(predictor, InstancePredictor):  # the network's raw maps, no post-processing
        names = map_names(model, channels)
        export_onnx(RawMaps(model, names), path, channels, metadata, output_names=names)
        check: Callable[..., Parity] = check_map_parity
    else:
        metadata["bytes_per_pixel"] = predictor.bytes_per_pixel()
        export_onnx(model, path, channels, metadata)
        check = check_parity
    try:
        parity = check(model, OnnxModel(path), channels)
    except Exception as error:  # onnxruntime's own error types: the graph cannot run
        path.unlink()
        raise FcnsegError(
            f"the exported model fails to run in onnxruntime ({str(error).splitlines()[0]}); "
            "nothing was written. Please report this with the model's name and options."
        ) from None
    print_line(f"ONNX vs PyTorch on two input sizes: {parity.describe()}")
    if not parity.passed:
        path.unlink()
        raise FcnsegError(
            f"the exported model disagrees with PyTorch ({parity.describe()}); nothing was "
            "written. Please report this with the model's name and options."
        )
    return path


def _float_export_of(checkpoint_path: str, predictor: Predictor) -> Path | None:
    """The float export beside the checkpoint, if there is one made from these weights (it
    passed the parity check when it was written); None otherwise."""
    path = default_onnx_path(checkpoint_path)
    if not path.is_file():
        return None
    try:
        exported = OnnxModel(path)
        exported.check_matches(predictor.model.state_dict())
    except FcnsegError:
        return None
    return path if exported.metadata.get("precision") == "fp32" else None


def calibration_images(folder: Path, predictor: Predictor) -> list[torch.Tensor]:
    """Up to CALIBRATION_LIMIT normalised (C, H, W) images: the folder's own images, or, for a
    dataset root, its training split's."""
    if not folder.is_dir():
        raise FcnsegError(f"--calibrate {folder} is not a folder; give a folder of images.")
    data = predictor.data
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        root = replace(data, kind="folder", root=str(folder))
        dataset = make_dataset(root, data.train_split, train=False)
        step = max(1, len(dataset) // CALIBRATION_LIMIT)
        return [dataset[index][0] for index in range(0, len(dataset), step)][:CALIBRATION_LIMIT]
    step = max(1, len(files) // CALIBRATION_LIMIT)
    chosen = files[::step][:CALIBRATION_LIMIT]
    modes = (data.image_mode, data.image_alpha, data.image_bit_depth, data.image_scaling)
    return [predictor.normalise(read_image(path, *modes)) for path in chosen]


def _validation_pairs(
    data: DataConfig, data_dir: str | None, split: str | None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (image, mask) pairs the int8 model is judged on: --data's validation split, else
    the checkpoint's own dataset's."""
    if data_dir is not None:
        data = replace(data, kind="folder", root=data_dir)
    elif data.kind == "folder" and (data.root is None or not Path(data.root).is_dir()):
        raise FcnsegError(
            f"the checkpoint's dataset {data.root} is not here; pass --data DIR, a dataset "
            "folder with a validation split, to judge the int8 model."
        )
    dataset = make_dataset(data, split or data.val_split, train=False)
    return [dataset[index] for index in range(len(dataset))]
