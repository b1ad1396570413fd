"""Tiny checkpoints and run folders for tests of what commands may write where."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from fcnseg.checkpoint import ModelSpec, model_checkpoint, save_checkpoint
from fcnseg.config import Config
from fcnseg.storage.folders import MARKER


def write_checkpoint(path: Path) -> Path:
    """An untrained 3-class U-Net (base width 4) reading RGB images, as fcnseg saves one."""
    torch.manual_seed(0)
    spec = ModelSpec("unet", 3, 3, {"base_width": 4})
    config = Config()
    config.data.num_classes = 3
    save_checkpoint(model_checkpoint(spec.build(), spec, config, ["a", "b", "c"]), path)
    return path


def fake_run(folder: Path) -> Path:
    """A finished training run's folder as fcnseg leaves it: marker, checkpoints, report."""
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("written by fcnseg\n")
    write_checkpoint(folder / "best.pt")
    shutil.copyfile(folder / "best.pt", folder / "last.pt")
    (folder / "report.md").write_text("# a week of training\n")
    return folder


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes, to show that nothing changed."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
