"""Run folders: `runs/<name>/` with the config, checkpoints, history, metrics and pictures.

Every command that writes a folder (train, demo, evaluate, inspect, predict) follows one rule,
so that nothing a user has is ever lost:

    - it writes into a new or empty folder, which it marks as fcnseg's (MARKER), or with
      --overwrite into a folder that carries the marker, whose contents it then replaces;
    - --overwrite never replaces a folder holding what the same command reads (its
      checkpoint, its data, its images), nor one another process is writing (runlock.py);
    - the folder is a real folder: not a symbolic link, not a file, not inside a file;
    - a run named by a config stays inside the config's output_dir.

`fcnseg train --resume` writes only into a folder with the marker. Each command holds the
folder's lock while it writes; under torchrun only rank 0 calls these functions.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fcnseg.errors import FcnsegError
from fcnseg.storage.locks import LOCK, RunLock, live_owner

MARKER = ".fcnseg-run"


def run_dir_for(output_dir: str | Path, name: str) -> Path:
    """<output_dir>/<name>, refused when `name` would put the run anywhere else: an absolute
    path, `..`, a symbolic link leading out, or output_dir itself (which holds other runs)."""
    base = Path(output_dir)
    if base.exists() and not base.is_dir():
        raise FcnsegError(
            f"output_dir {base} is a file, not a folder; set output_dir to a folder for the "
            "runs (e.g. --set output_dir=runs)."
        )
    target = (base / name).resolve()
    if target == base.resolve() or base.resolve() not in target.parents:
        raise FcnsegError(
            f"the run name {name!r} would put the run at {target}, outside output_dir "
            f"{base}; use a plain name such as 'unet-camvid' (no '..', no leading '/')."
        )
    return base / name


@contextmanager
def run_folder(
    path: str | Path, overwrite: bool = False, reads: Iterable[str | Path] = (), command: str = ""
) -> Iterator[Path]:
    """Make `path` this command's output folder (new, or with `overwrite` replacing an fcnseg
    folder) and hold its lock until the block ends; `reads` are the files and folders the
    command reads, which the replacing must not delete."""
    path = Path(path)
    check_location(path)
    replacing = path.is_dir() and any(path.iterdir())
    if replacing:
        check_replaceable(path, overwrite, reads)
    else:
        _make_folder(path)
    with RunLock(path, command or "run"):
        if replacing:
            _clear(path)
        (path / MARKER).write_text("written by fcnseg; --overwrite may replace this folder\n")
        yield path


@contextmanager
def resumed_folder(path: str | Path) -> Iterator[Path]:
    """Hold the lock of the run folder `fcnseg train --resume` continues, one fcnseg made."""
    path = Path(path)
    check_location(path)
    if not path.is_dir():
        raise FcnsegError(
            f"--resume {path}: no such folder; give the folder of a run (it holds last.pt)."
        )
    if not (path / MARKER).is_file():
        raise FcnsegError(
            f"--resume {path}: not a folder fcnseg made (no {MARKER} file), so nothing is "
            "written into it; give the folder of a run that `fcnseg train` started."
        )
    with RunLock(path, "train --resume"):
        yield path


def check_location(path: Path) -> None:
    """A clear error for a path no folder can be made at, or that is a symbolic link."""
    if path.is_symlink():
        raise FcnsegError(
            f"{path} is a symbolic link; fcnseg writes only into real folders, so that "
            "replacing a run can never reach elsewhere. Give the folder it points to instead."
        )
    if path.exists() and not path.is_dir():
        raise FcnsegError(f"{path} is a file, not a folder; choose a folder for the output.")
    for parent in path.absolute().parents:  # the nearest existing one must be a folder
        if parent.exists():
            if not parent.is_dir():
                raise FcnsegError(
                    f"{parent} is a file, so no folder can be made inside it at {path}; "
                    "choose another output folder."
                )
            return


def check_replaceable(path: Path, overwrite: bool, reads: Iterable[str | Path] = ()) -> None:
    """Refuse to replace `path` unless asked to, fcnseg made it, the command does not read
    from it, and no other process writes into it or into a folder inside it."""
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
    folder = path.resolve()
    for read in reads:
        resolved = Path(read).resolve()
        if resolved == folder or folder in resolved.parents:
            raise FcnsegError(
                f"{path} holds {read}, which this command reads, so --overwrite would delete "
                "it; choose another --out folder."
            )
    for lock in sorted(path.rglob(LOCK)):
        owner = live_owner(lock.parent)
        if owner is not None:
            raise FcnsegError(
                f"{lock.parent} is in use by {owner.describe()}, so {path} is not replaced; "
                "wait until it ends or stop it, or choose another --out folder."
            )


def _make_folder(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FcnsegError(
            f"cannot create the folder {path} ({error.strerror}); choose a folder you can write to."
        ) from None


def _clear(path: Path) -> None:
    """Delete everything in `path` but the lock this command holds (a link: the link only)."""
    for entry in path.iterdir():
        if entry.name == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
