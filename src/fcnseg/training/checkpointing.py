"""A run folder's checkpoints after each epoch, and their repair when a run resumes.

    last.pt        every epoch: the whole training state, history and best_epoch included
    best.pt        a copy of last.pt, made right after it in each epoch that improves the
                   task's score (val mIoU; val AP for instance runs)
    history.json   written after both, so that it never lists an epoch last.pt lacks

Each file is written atomically, but the set is not: a process killed after last.pt of an
improving epoch and before its copy leaves best.pt one improvement behind, while last.pt and
the history say that epoch was the best (a run measured so reported mIoU 0.274 instead of its
best epoch's 0.316). Because best.pt is copied right after last.pt, it can only lag in the epoch
last.pt holds: `repair_best`, run on resume, finds that case from last.pt's best_epoch and
copies last.pt again, and the resumed run rewrites history.json from last.pt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fcnseg.checkpoint import copy_checkpoint, load_checkpoint, save_checkpoint
from fcnseg.errors import FcnsegError

LAST, BEST = "last.pt", "best.pt"


def save_epoch(state: dict[str, Any], run_dir: Path, improved: bool) -> None:
    """last.pt, then (if the score improved) best.pt as its copy: that order is what
    `repair_best` relies on."""
    save_checkpoint(state, run_dir / LAST)
    if improved:
        copy_checkpoint(run_dir / LAST, run_dir / BEST)


def repair_best(run_dir: Path, last: dict[str, Any]) -> str | None:
    """Make best.pt hold the epoch last.pt names as the best; returns a line saying what was
    repaired, or None when nothing needed to be."""
    best_epoch = last.get("best_epoch", 0)
    if not best_epoch:  # no epoch has a val score yet, so there is no best.pt to keep
        return None
    best_path = run_dir / BEST
    held = _epoch_held(best_path)
    if held == best_epoch:
        return None
    if last.get("epoch") != best_epoch:
        raise FcnsegError(
            f"{best_path} holds epoch {held}, but last.pt says epoch {best_epoch} was the "
            "best, and no checkpoint holds that epoch any more (was best.pt replaced by "
            "hand?); restore it, or start a new run."
        )
    copy_checkpoint(run_dir / LAST, best_path)
    return (
        f"best.pt held epoch {held}, not the best epoch {best_epoch} (the run was stopped "
        f"before copying it); copied it from last.pt"
    )


def _epoch_held(path: Path) -> int | None:
    """The epoch a checkpoint holds; None when it is missing or damaged."""
    try:
        return load_checkpoint(path).get("epoch")
    except FcnsegError:
        return None
