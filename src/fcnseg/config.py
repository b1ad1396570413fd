"""Typed run configuration: dataclasses loaded from YAML, unknown keys rejected, `--set` overrides.

A config file mirrors these classes section by section:

    name: demo
    data: {kind: synthetic, num_classes: 4}
    model: {name: unet, options: {base_width: 16}}
    train: {epochs: 12, lr: 0.003}
    inference: {crf: {iterations: 5}}   # used by fcnseg evaluate/predict --crf

Every key is checked against the dataclass fields, so a typo such as `trian.lr` stops the run
with the nearest valid name instead of being silently ignored.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fcnseg.errors import FcnsegError
from fcnseg.registry import suggest
from fcnseg.text_files import load_yaml, read_text


def scored_classes(num_classes: int) -> int:
    """How many labels a model of `num_classes` outputs learns and is scored on: its outputs,
    except that a single-output (binary, sigmoid) model has two, background 0 and foreground 1.

    The one place where "1 output" becomes "2 classes": label maps, class names, colours, class
    weights and the confusion matrix all count classes through it.
    """
    return max(num_classes, 2)


@dataclass
class DataConfig:
    # generated (nothing to download), or files; "coco": COCO JSON annotations (instance task)
    kind: Literal["synthetic", "folder", "coco"] = "synthetic"
    root: str | None = None  # folder datasets: <root>/<split>/images and <root>/<split>/masks
    layout: Literal["auto", "folder", "lists", "voc", "camvid"] = "auto"  # see data/layouts.py
    num_classes: int = 4  # model outputs: the classes to learn (1: one sigmoid output, binary)
    class_names: list[str] | None = None  # one per class; None: the class table's, or numbers
    ignore_index: int = 255  # the label of pixels no loss or score counts (outside the classes)
    # How masks store classes; see fcnseg.data.masks.encodings and fcnseg.data.masks.classes.
    mask_encoding: Literal["auto", "index", "binary", "palette", "rgb"] = "auto"
    classes: str | None = None  # class table: classes.txt, .yaml or class_dict.csv (in root)
    colors: list[tuple[int, int, int]] | None = None  # RGB of each class: an inline colour table
    ignore_labels: list[int] | None = None  # mask values to ignore; None: the table's void rows
    image_mode: Literal["RGB", "L"] = "RGB"  # colour or greyscale (L): what the model sees
    image_alpha: Literal["drop", "keep"] = "drop"  # RGBA images: drop the alpha channel or keep it
    image_bit_depth: int | None = None  # bits used by the stored values (e.g. 12); None: the file's
    # "bit_depth": 0..2^bits-1 -> 0..255; "per_image": each image's min..max stretched
    image_scaling: Literal["bit_depth", "per_image"] = "bit_depth"
    train_split: str = "train"  # the split training learns from
    val_split: str = "val"  # the split scored after each epoch (and chosen best.pt by)
    # Generated data only: how many images and their size (deliberately not multiples of 32).
    synthetic_train: int = 400
    synthetic_val: int = 100  # generated validation images
    synthetic_size: tuple[int, int] = (180, 240)  # (H, W) of the generated images
    augment: Literal["none", "light", "dihedral", "strong"] = "light"  # see data/transforms.py
    crop_size: tuple[int, int] | None = None  # random training crop (H, W), padded with ignore
    train_resize: tuple[int, int] | None = None  # (H, W) training images are resized to first
    train_scale: float = 1.0  # or scaled by this first (2.0: small objects at twice the pixels)
    # Validation, evaluate and predict scale images by this before the network and bring the
    # logits back to the image's size: 0.5 for a model trained on half-resolution images.
    inference_scale: float = 1.0
    scale_range: tuple[float, float] = (0.5, 2.0)  # random rescaling of the "strong" preset
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)  # per channel, of images scaled to 0..1
    std: tuple[float, ...] = (0.229, 0.224, 0.225)  # (x - mean) / std: ImageNet's by default
    batch_size: int = 8  # images per training step (per process under torchrun)
    num_workers: int = 0  # data loading processes beside training (0: in the training process)
    # Instance task, data.kind "coco": the COCO JSON of each split, e.g. {train: ann/train.json},
    # relative to data.root unless absolute; a split not named here reads
    # <root>/annotations/<split>.json. Images: <root>/<split>/images (fcnseg.data.instances.coco).
    coco_annotations: dict[str, str] | None = None


@dataclass
class ModelConfig:
    name: str = "unet"  # a registered model: `fcnseg models` lists them with their options
    options: dict[str, Any] = field(default_factory=dict)  # the model's own keyword options


@dataclass
class LossTerm:
    name: str = "cross_entropy"  # see fcnseg.losses.LOSSES for the choices
    weight: float = 1.0  # this term's factor in the sum, > 0
    options: dict[str, Any] = field(default_factory=dict)  # the loss's own keyword options


@dataclass
class LossConfig:
    terms: list[LossTerm] = field(default_factory=lambda: [LossTerm()])  # summed, weighted
    # One per class, for the losses that take them, or "median_frequency" (Eigen & Fergus
    # 2015) or its gentler "sqrt_median_frequency", counted on the training masks at the start.
    class_weights: list[float] | str | None = None


@dataclass
class TrainConfig:
    epochs: int = 10  # passes over the training split
    max_minutes: float | None = None  # stop at whichever comes first: epochs or this budget
    optimizer: Literal["adamw", "sgd"] = "adamw"  # AdamW, or SGD with momentum
    lr: float = 3e-3  # the peak learning rate, reached after the warmup
    weight_decay: float = 1e-4  # decoupled (AdamW) or L2 (SGD)
    momentum: float = 0.9  # SGD only
    schedule: Literal["poly", "cosine", "constant"] = "poly"  # after linear warmup
    warmup_fraction: float = 0.05  # of the training spent raising the learning rate from 0
    grad_clip: float | None = None  # clip the gradients' total L2 norm to this
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast; fp16 adds loss scaling
    early_stopping_patience: int | None = None  # stop after this many epochs without a best
    seed: int = 0  # weights, shuffling and augmentation follow from it: a rerun is the same
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    channels_last: bool = True  # NHWC memory layout: faster convolutions on CPU and GPU
    threads: int | None = None  # torch intra-op threads on CPU; None = torch's default
    val_images: int | None = None  # validate each epoch on the first N (final report: all)
    # Experiment trackers fed each epoch's scalars and val overlays (fcnseg.training.trackers):
    # "auto" = tensorboard when installed; or a list of tensorboard, mlflow ([] for none)
    trackers: Literal["auto"] | list[str] = "auto"


def _odd_window(value: Any) -> bool:
    return isinstance(value, int) and value >= 1 and value % 2 == 1


# The dense CRF's settings and what each accepts (checked whenever CRFParameters is made).
CRF_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "iterations": ((lambda value: isinstance(value, int) and value >= 1), "a whole number >= 1"),
    "appearance_weight": ((lambda value: value >= 0), "a number >= 0 (0: no appearance kernel)"),
    "appearance_position_sigma": ((lambda value: value > 0), "a number of pixels > 0"),
    "appearance_colour_sigma": ((lambda value: value > 0), "a number > 0 (colours are 0..255)"),
    "smoothness_weight": ((lambda value: value >= 0), "a number >= 0 (0: no smoothness kernel)"),
    "smoothness_sigma": ((lambda value: value > 0), "a number of pixels > 0"),
    "window": (_odd_window, "an odd whole number >= 1 (11: 5 samples each side of a pixel)"),
    "dilation": ((lambda value: isinstance(value, int) and value >= 1), "a whole number >= 1"),
}


@dataclass(frozen=True)
class CRFParameters:
    """The mean-field dense CRF's settings (fcnseg.models.crf): config `inference.crf`, the
    `--crf-set` flags and the models' `crf` option. Defaults: Krähenbühl and Koltun's kernels,
    sampled as ConvCRF does (an 11-sample window, 4 pixels apart). Checked when made."""

    iterations: int = 5  # mean-field updates
    appearance_weight: float = 10.0  # w1: the position + colour ("bilateral") kernel
    appearance_position_sigma: float = 80.0  # theta_alpha, pixels
    appearance_colour_sigma: float = 13.0  # theta_beta, colour units of a 0..255 image
    smoothness_weight: float = 3.0  # w2: the position-only kernel
    smoothness_sigma: float = 3.0  # theta_gamma, pixels
    window: int = 11  # appearance samples per side, odd: the kernel is cut beyond them
    dilation: int = 4  # pixels between appearance samples: 11 x 4 reaches 20 pixels each side

    def __post_init__(self) -> None:
        for name, (accepts, accepted) in CRF_RULES.items():
            value = getattr(self, name)
            finite = isinstance(value, int | float) and math.isfinite(value)
            if isinstance(value, bool) or not finite or not accepts(value):
                raise FcnsegError(
                    f"CRF setting '{name}' (config key inference.crf.{name}, flag --crf-set "
                    f"{name}=...) is {value!r}; accepted: {accepted}."
                )


@dataclass
class InferenceConfig:
    # The dense CRF that `fcnseg evaluate/predict --crf` runs after the network (training and
    # its validation never do): null, or its settings ({} for the defaults).
    crf: CRFParameters | None = None


@dataclass
class Config:
    name: str = "run"  # the run folder's name: <output_dir>/<name>, unless --out gives one
    # "semantic": a class per pixel; "instance": objects told apart (instance maps, mask AP)
    task: Literal["semantic", "instance"] = "semantic"
    output_dir: str = "runs"  # where run folders are made; a name cannot leave it
    data: DataConfig = field(default_factory=DataConfig)  # the dataset and how it is read
    model: ModelConfig = field(default_factory=ModelConfig)  # the network
    loss: LossConfig = field(default_factory=LossConfig)  # what training minimises
    train: TrainConfig = field(default_factory=TrainConfig)  # optimiser, schedule, budget
    # What `fcnseg evaluate` and `fcnseg predict` may run after the network
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML file (or start from the defaults) and apply `key.sub=value` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FcnsegError(f"config file {path} does not exist; give the path of a YAML file.")
        data = load_yaml(read_text(path, "config file"), f"config file {path}") or {}
        if not isinstance(data, dict):
            raise FcnsegError(f"config file {path} must hold a mapping of sections, not a list.")
    return build_config(data, overrides)


def build_config(data: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """A Config from a plain dict (a YAML file's, or a checkpoint's) plus `key=value` overrides."""
    data = copy.deepcopy(data)
    for override in overrides or []:
        apply_override(data, override)
    config = from_dict(Config, data)
    check_values(config)
    return config


def _at_least(low: float) -> tuple[Callable[[Any], bool], str]:
    return (lambda value: value >= low), f"a number >= {low:g}"


def _fraction() -> tuple[Callable[[Any], bool], str]:
    return (lambda value: 0 <= value < 1), "a number from 0 up to (not including) 1"


def _positive_pair() -> tuple[Callable[[Any], bool], str]:
    return (lambda pair: all(side >= 1 for side in pair)), "two whole numbers >= 1, [H, W]"


# Values that no run can use, refused when the config is loaded (None stays allowed where the
# field allows it). The names of registered things (models, losses) are checked by their
# registries when the run starts, before any data is read.
VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "data.num_classes": _at_least(1),
    "data.batch_size": _at_least(1),
    "data.num_workers": _at_least(0),
    "data.synthetic_train": _at_least(1),
    "data.synthetic_val": _at_least(1),
    "data.synthetic_size": _positive_pair(),
    "data.crop_size": _positive_pair(),
    "data.train_resize": _positive_pair(),
    "data.inference_scale": ((lambda value: value > 0), "a number > 0 (0.5: half resolution)"),
    "data.train_scale": ((lambda value: value > 0), "a number > 0 (2.0: twice the resolution)"),
    "data.scale_range": ((lambda pair: 0 < pair[0] <= pair[1]), "[low, high] with 0 < low <= high"),
    "data.std": ((lambda values: all(value > 0 for value in values)), "numbers > 0"),
    "data.image_bit_depth": ((lambda bits: 1 <= bits <= 32), "bits from 1 to 32"),
    "train.epochs": _at_least(1),
    "train.max_minutes": ((lambda value: value > 0), "a number of minutes > 0"),
    "train.lr": ((lambda value: value > 0), "a number > 0"),
    "train.weight_decay": _at_least(0),
    "train.momentum": _fraction(),
    "train.warmup_fraction": _fraction(),
    "train.grad_clip": ((lambda value: value > 0), "a norm > 0"),
    "train.early_stopping_patience": _at_least(1),
    "train.threads": _at_least(1),
    "train.val_images": _at_least(1),
    "train.device": (
        (lambda name: re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name) is not None),
        "auto, cpu, cuda, cuda:N or mps",
    ),
}


def check_values(config: Config) -> None:
    """Refuse values no run can use (see VALUE_RULES), NaN and infinity included, and an
    ignore_index that is one of the classes."""
    for key, (accepts, accepted) in VALUE_RULES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value is None:
            continue
        items = value if isinstance(value, tuple | list) else (value,)
        numbers = [item for item in items if isinstance(item, int | float)]
        if not all(math.isfinite(number) for number in numbers) or not accepts(value):
            raise FcnsegError(f"config key '{key}' is {value!r}; accepted: {accepted}.")
    data = config.data
    channels = len(data.image_mode) + (data.image_alpha == "keep")  # as data.images reads them
    for name in ("mean", "std"):
        if len(getattr(data, name)) != channels:
            raise FcnsegError(
                f"config key 'data.{name}' has {len(getattr(data, name))} values for images of "
                f"{channels} channel(s) (data.image_mode {data.image_mode}); give one per "
                "channel, e.g. mean: [0.5], std: [0.25] for greyscale."
            )
    terms = config.loss.terms
    weights = [term.weight for term in terms]
    if not terms or not all(math.isfinite(w) and w > 0 for w in weights):
        raise FcnsegError(
            f"config key 'loss.terms' has weights {weights}; give at least one term, each with "
            "a weight > 0, e.g. terms: [{name: cross_entropy}, {name: dice, weight: 0.5}]."
        )
    if data.kind == "coco" and config.task != "instance":
        raise FcnsegError(
            "data.kind is coco, which holds instances; set task: instance, or give the semantic "
            "masks as a folder dataset (data.kind: folder)."
        )
    scored = scored_classes(data.num_classes)
    if 0 <= data.ignore_index < scored:
        raise FcnsegError(
            f"data.ignore_index is {data.ignore_index}, which is one of the {scored} classes "
            f"(0..{scored - 1}): its pixels would be ignored in the loss yet scored as IoU 0. "
            "Use a value outside the classes, such as 255 (the default)."
        )


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply `train.lr=0.01` to a nested dict; the value is parsed as YAML (numbers, lists...)."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise FcnsegError(f"--set expects key=value (for example train.lr=0.01), got '{override}'.")
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise FcnsegError(f"--set {key}: '{part}' is a value, not a section.")
    node[leaf] = load_yaml(value, f"the value of --set {key}")


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass `cls` from a dict, checking every key and the type of every value."""
    if not isinstance(data, dict):
        raise FcnsegError(
            f"config section '{where or 'top level'}' must be a mapping, got {data!r}."
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise FcnsegError(
                f"unknown config key '{where}{key}'.{suggest(str(key), fields)} "
                f"Valid keys here: {', '.join(fields)}."
            )
    values = {key: _convert(hints[key], value, f"{where}{key}") for key, value in data.items()}
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    """Check `value` against a type hint, converting YAML lists to tuples where a tuple is due."""
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where + ".")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _convert(options[0], value, where) if len(options) == 1 else value
    if hint is Any:
        return value
    if origin is Literal:
        if value not in args:
            choices = ", ".join(str(arg) for arg in args)
            raise FcnsegError(
                f"config key '{where}' is {value!r}; accepted: {choices}."
                f"{suggest(str(value), [str(arg) for arg in args])}"
            )
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise FcnsegError(f"config key '{where}' expects a list, got {value!r}.")
        item = args[0] if args else Any
        items = [_convert(item, v, where) for v in value]
        if (
            origin is tuple
            and len(args) > 1
            and args[1] is not Ellipsis
            and len(args) != len(items)
        ):
            raise FcnsegError(f"config key '{where}' expects {len(args)} values, got {value!r}.")
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise FcnsegError(f"config key '{where}' expects a mapping, got {value!r}.")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise FcnsegError(
            f"config key '{where}' expects {hint.__name__}, got {type(value).__name__} {value!r}."
        )
    return value


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so that the saved YAML reads back into the same config."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def save_config(config: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
