"""Checkpoints: written atomically, loaded without executing code.

A checkpoint is a dict of tensors and plain Python values:

    format, version        "fcnseg-checkpoint", 1
    model                  {name, num_classes, in_channels, options}: enough to rebuild it
    state_dict             the model's weights
    config                 the resolved run config (a plain dict)
    class_names            for reports and pictures
    optimizer, epoch, step, best_miou, elapsed_seconds, rng    (training state, for resume)

Saving writes a temporary file in the same folder and renames it over the old one, so a crash
mid-write leaves the previous checkpoint intact. Loading uses `weights_only=True`, which refuses
to unpickle anything but tensors and plain containers.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fcnseg.errors import FcnsegError

FORMAT = "fcnseg-checkpoint"
VERSION = 1


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write `state` to `path` atomically (temporary file + fsync + rename)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb") as handle:
        torch.save({"format": FORMAT, "version": VERSION, **state}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict, or one clear error if the file is missing or not a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FcnsegError(f"checkpoint {path} does not exist; pass a .pt file from a run folder.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise FcnsegError(f"{path} is not an fcnseg checkpoint ({first_line}).") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FcnsegError(
            f"{path} is not an fcnseg checkpoint (no '{FORMAT}' marker); "
            "use best.pt or last.pt from a run folder."
        )
    return state


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
