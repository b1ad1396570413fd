"""Checkpoints: written atomically, loaded without executing code.

A checkpoint is a dict of tensors and plain Python values:

    format, version        "fcnseg-checkpoint", 1
    model                  ModelSpec as a dict {name, num_classes, in_channels, options}
    task                   "semantic" or "instance": what the model outputs (its registry says)
    state_dict             the model's weights
    config                 the resolved run config (a plain dict)
    class_names            for reports and pictures
    palette                (K, 3) RGB colour of each class, as lists (the training data's own)
    optimizer              the optimizer's state (momentum, Adam moments)
    scaler                 the fp16 loss scale and its growth tracker ({} in fp32 and bf16)
    rng                    Python, NumPy, torch (and CUDA) generator states
    epoch, step, elapsed_seconds, best_miou, best_ap, best_epoch, history   training progress
                           (best_miou: semantic runs; best_ap: instance runs; see Trainer)

There is no scheduler state: the learning rate is a pure function of training progress, which
is computed from `step` and `elapsed_seconds` (see optim.py), so those two restore it exactly.

Saving writes `.<name>.partial` in the same folder, flushes it to disk, and renames it over the
old file: a rename within one file system is atomic, so a process killed at any moment leaves
either the previous checkpoint or the new one, never a torn file (tested with SIGKILL). The
next save overwrites a partial file left by a killed writer; one process writes a run folder.
`model_checkpoint` makes the part every checkpoint has (everything above the optimizer), for a
model trained elsewhere, a test or a benchmark; the Trainer adds its progress to it. Loading uses
`weights_only=True`, which refuses to unpickle anything but tensors and plain
containers, so a checkpoint from elsewhere cannot run code.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fcnseg.config import Config, scored_classes
from fcnseg.errors import FcnsegError
from fcnseg.models import all_models, build_model, task_of
from fcnseg.palette import PALETTE

FORMAT = "fcnseg-checkpoint"
VERSION = 1


@dataclass(frozen=True)
class ModelSpec:
    """What rebuilds a checkpoint's model: the registry name and its arguments."""

    name: str
    num_classes: int
    in_channels: int = 3
    options: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        """The model, freshly initialised (load weights with `load_weights`)."""
        return build_model(self.name, self.num_classes, self.in_channels, **self.options)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, spec: Any, path: str | Path = "checkpoint") -> ModelSpec:
        """A spec from a checkpoint's `model` entry, or a clear error if it is damaged."""
        expected = {"name": str, "num_classes": int, "in_channels": int, "options": dict}
        if not isinstance(spec, Mapping):
            raise FcnsegError(f"{path}: its 'model' entry is {type(spec).__name__}, not a spec.")
        for key, kind in expected.items():
            value = spec.get(key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise FcnsegError(
                    f"{path}: its model spec has {key}={value!r}, expected a "
                    f"{kind.__name__}; the file was not written by fcnseg or is damaged."
                )
        for key, largest in (("num_classes", 65536), ("in_channels", 1024)):
            if not 1 <= spec[key] <= largest:  # before a layer of that width is allocated
                raise FcnsegError(
                    f"{path}: its model spec has {key}={spec[key]}, outside 1..{largest}; the "
                    "file was not written by fcnseg or is damaged."
                )
        return cls(spec["name"], spec["num_classes"], spec["in_channels"], dict(spec["options"]))


def model_checkpoint(
    model: nn.Module,
    spec: ModelSpec,
    config: Config | None = None,
    class_names: Sequence[str] | None = None,
    palette: np.ndarray | Sequence[Sequence[int]] | None = None,
) -> dict[str, Any]:
    """The checkpoint of a model outside a training run: spec, weights, config, classes.

    The config defaults to the defaults with the spec's class count; class names to "class 0",
    "class 1", ...; the palette to fcnseg's fixed one.
    """
    if config is None:
        config = Config()
        config.data.num_classes = spec.num_classes
        config.task = task_of(spec.name)
    count = scored_classes(spec.num_classes)  # names and colours: 2 for a one-output model
    names = list(class_names) if class_names is not None else [f"class {i}" for i in range(count)]
    colours = np.asarray(PALETTE[:count] if palette is None else palette, dtype=np.int64)
    return {
        "model": spec.to_dict(),
        "task": task_of(spec.name),
        "state_dict": model.state_dict(),
        "config": config.to_dict(),
        "class_names": names,
        "palette": colours[:count].tolist(),
    }


def checkpoint_task(checkpoint: Mapping[str, Any]) -> str:
    """ "semantic" or "instance": the registry's word for the checkpoint's model, else its own
    `task` entry, else "semantic" (checkpoints from before the instance task have neither)."""
    spec = checkpoint.get("model")
    name = spec.get("name") if isinstance(spec, Mapping) else None
    if isinstance(name, str) and name in all_models():
        return task_of(name)
    return "instance" if checkpoint.get("task") == "instance" else "semantic"


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write `state` to `path` atomically (partial file, fsync, rename)."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as handle:
        torch.save({"format": FORMAT, "version": VERSION, **state}, handle)
        handle.flush()
        os.fsync(handle.fileno())  # the bytes are on disk before the name points at them
    os.replace(partial, path)
    _sync_folder(path.parent)


def copy_checkpoint(source: Path, target: Path) -> None:
    """Make `target` a copy of checkpoint `source`, atomically, and cheaply where possible.

    A hard link copies no bytes; it stays this version because `save_checkpoint` replaces
    `source` with a new file rather than rewriting it. Without hard links, the bytes are copied.
    """
    source, target = Path(source), Path(target)
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:  # a file system without hard links
        shutil.copyfile(source, partial)
    os.replace(partial, target)
    _sync_folder(target.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (a crash of the machine, not only of the process)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict, or one clear error if the file is missing or not a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FcnsegError(f"checkpoint {path} does not exist; pass a .pt file from a run folder.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load's many ways to refuse bytes that are not its own
        text = str(error).strip()
        first_line = text.splitlines()[0] if text else type(error).__name__
        raise FcnsegError(f"{path} is not an fcnseg checkpoint ({first_line}).") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FcnsegError(
            f"{path} is not an fcnseg checkpoint (no '{FORMAT}' marker); "
            "use best.pt or last.pt from a run folder."
        )
    check_entries(state, path)
    return state


# The entries a checkpoint may hold and what each must be; checked when it is loaded, before
# anything uses them (a damaged or hand-edited file fails here with its entry's name).
ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "model": (Mapping,),
    "state_dict": (Mapping,),
    "config": (Mapping,),
    "class_names": (list,),
    "palette": (list,),
    "task": (str,),
    "optimizer": (Mapping,),
    "scaler": (Mapping,),
    "rng": (Mapping,),
    "epoch": (int,),
    "step": (int,),
    "history": (list,),
}

MAY_BE_NONE = {"class_names", "palette", "scaler", "history"}  # older checkpoints wrote None


def check_entries(state: Mapping[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint whose entries have the wrong kind, before any is used."""
    damaged = "the file was not written by fcnseg or is damaged; use best.pt or last.pt from a run"
    for key, kinds in ENTRY_TYPES.items():
        if key not in state or (state[key] is None and key in MAY_BE_NONE):
            continue
        value = state[key]
        if not isinstance(value, kinds) or isinstance(value, bool):
            raise FcnsegError(
                f"{path}: its '{key}' entry is a {type(value).__name__}, expected a "
                f"{kinds[0].__name__}; {damaged}."
            )
    if "model" in state:
        spec = ModelSpec.from_dict(state["model"], path)
        _check_classes(state, scored_classes(spec.num_classes), path, damaged)
    weights = state.get("state_dict") or {}
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise FcnsegError(f"{path}: its weights are not all named tensors; {damaged}.")


def _check_classes(state: Mapping[str, Any], count: int, path: str | Path, damaged: str) -> None:
    names, palette = state.get("class_names"), state.get("palette")
    if names is not None and (len(names) != count or not all(isinstance(n, str) for n in names)):
        raise FcnsegError(
            f"{path}: it names {len(names)} classes for a model of {count} (or not as text); "
            f"{damaged}."
        )
    if palette is not None and (len(palette) < count or not all(map(_is_colour, palette))):
        raise FcnsegError(
            f"{path}: its palette is not {count} colours [r, g, b] of 0-255; {damaged}."
        )


def load_weights(model: torch.nn.Module, checkpoint: dict[str, Any], path: str | Path) -> None:
    """Load the checkpoint's weights into `model` (built from its spec), or say clearly which
    weights do not fit, instead of torch's list of every mismatch."""
    weights, expected = checkpoint["state_dict"], model.state_dict()
    problems = [f"missing {key}" for key in sorted(expected.keys() - weights.keys())]
    problems += [f"unexpected {key}" for key in sorted(weights.keys() - expected.keys())]
    shared = expected.keys() & weights.keys()
    reshaped = [key for key in shared if weights[key].shape != expected[key].shape]
    problems += [
        f"{key} is {tuple(weights[key].shape)}, the model's {tuple(expected[key].shape)}"
        for key in sorted(reshaped, key=lambda key: (not key.endswith("weight"), key))
    ]
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        spec = checkpoint["model"]
        raise FcnsegError(
            f"{path}: its weights do not fit the model its spec builds ({spec['name']} "
            f"{spec.get('options') or {}}): "
            f"{'; '.join(problems[:3])}{more}. Was it saved by another fcnseg version? See "
            "'Changes to default architectures' in docs/models.md."
        )
    model.load_state_dict(weights)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch generator states, as plain values (weights_only-loadable)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_colour(value: Any) -> bool:
    """[r, g, b], three whole numbers 0-255."""
    return (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    )
