"""Run folders: `runs/<name>/` with the config, checkpoints, history, metrics and pictures.

A folder is only ever replaced when the user asks (`--overwrite`) AND it carries the marker file
fcnseg writes into every run folder, so that a mistyped path can never delete the user's files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fcnseg.errors import FcnsegError

MARKER = ".fcnseg-run"


def prepare_run_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Create `path` as a fresh run folder; replace an old run only with overwrite=True."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        if not overwrite:
            raise FcnsegError(
                f"{path} already exists; pass --overwrite to replace that run, or choose "
                "another name or --out folder."
            )
        if not (path / MARKER).is_file():
            raise FcnsegError(
                f"{path} exists and is not an fcnseg run folder (no {MARKER} file), so it is "
                "left untouched even with --overwrite; choose another --out folder."
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("written by fcnseg; --overwrite may replace this folder\n")
    return path
