"""The model zoo: registries of architectures, one per task, each sharing one contract.

Every entry is called as `builder(num_classes=..., in_channels=..., **options)`.
- MODELS (semantic, `base.py`): a module mapping (N, in_channels, H, W) to logits
  (N, num_classes, H, W) for any H and W.
- INSTANCE_MODELS (instance, `instances/`): forward gives a dict of raw maps;
  `model.loss(outputs, target (N, 2, H, W)) -> (total, {term: value})` trains it and
  `model.predict(images) -> list[Instances]` (eval mode) finds the instances at the input's size.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal

from torch import nn

from fcnseg.errors import FcnsegError
from fcnseg.models.base import SegmentationModel
from fcnseg.models.convolutionalize import convolutionalize
from fcnseg.models.danet import DANet
from fcnseg.models.deeplab import deeplabv3, deeplabv3plus
from fcnseg.models.fcn import fcn8s, fcn16s, fcn32s
from fcnseg.models.instances.fcis import fcis
from fcnseg.models.instances.instancefcn import instancefcn
from fcnseg.models.linknet import LinkNet
from fcnseg.models.segnet import SegNet
from fcnseg.models.unet import UNet
from fcnseg.registry import check_options, lookup

MODELS: dict[str, Callable[..., nn.Module]] = {
    "fcn32s": fcn32s,
    "fcn16s": fcn16s,
    "fcn8s": fcn8s,
    "unet": UNet,
    "deeplabv3": deeplabv3,
    "deeplabv3plus": deeplabv3plus,
    "linknet": LinkNet,
    "segnet": SegNet,
    "danet": DANet,
}


INSTANCE_MODELS: dict[str, Callable[..., nn.Module]] = {
    "instancefcn": instancefcn,
    "fcis": fcis,
}

Task = Literal["semantic", "instance"]


def all_models() -> dict[str, Callable[..., nn.Module]]:
    return {**MODELS, **INSTANCE_MODELS}


def task_of(name: str) -> Task:
    """The task a registered model solves; an unknown name is an error listing the choices."""
    lookup(all_models(), name, "model")
    return "instance" if name in INSTANCE_MODELS else "semantic"


def list_models(task: Task | None = None) -> list[str]:
    """Every registered name, or those of one task."""
    return sorted(name for name in all_models() if task is None or task_of(name) == task)


def build_model(name: str, num_classes: int, in_channels: int = 3, **options: Any) -> nn.Module:
    """Build a registered model; unknown names and options are errors that list the choices."""
    builder = lookup(all_models(), name, "model")
    if num_classes < 1 or in_channels < 1:
        raise FcnsegError(
            f"model '{name}' needs num_classes >= 1 and in_channels >= 1, "
            f"got num_classes={num_classes}, in_channels={in_channels}."
        )
    if "crf" in options and task_of(name) == "instance":
        raise FcnsegError(
            f"model '{name}' is an instance model; the 'crf' option (a trainable dense CRF on "
            "the logits) is for semantic models. Remove it from the model's options."
        )
    check_options(options, model_options(name), f"model '{name}'")
    crf = options.pop("crf", None)  # every semantic model's, not the builder's (see crf.py)
    try:
        model = builder(num_classes=num_classes, in_channels=in_channels, **options)
    except (TypeError, ValueError, RuntimeError, AssertionError) as error:
        # A value of the right name but an impossible kind (base_width -4, a string for a
        # number) fails deep in a layer; say which model and options, and where the choices are.
        raise FcnsegError(
            f"model '{name}' cannot be built with options {options}: {error}. See `fcnseg "
            "models` for its options and their defaults."
        ) from None
    if crf is None or crf is False:
        return model
    from fcnseg.models.crf import with_crf  # here: only models that ask for it load it

    return with_crf(model, num_classes, in_channels, crf)


def model_options(name: str) -> dict[str, Any]:
    """The keyword options a model takes beyond num_classes and in_channels, with defaults;
    every semantic model also takes `crf` (None: none; true or CRF settings: a trainable dense
    CRF at its end, fcnseg.models.crf.with_crf)."""
    parameters = inspect.signature(lookup(all_models(), name, "model")).parameters
    options = {
        key: p.default
        for key, p in parameters.items()
        if key not in ("num_classes", "in_channels")
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    return options if task_of(name) == "instance" else {**options, "crf": None}


__all__ = [
    "INSTANCE_MODELS",
    "MODELS",
    "SegmentationModel",
    "build_model",
    "convolutionalize",
    "list_models",
    "model_options",
    "task_of",
]
