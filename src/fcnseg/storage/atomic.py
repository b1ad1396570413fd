"""Files that appear whole or not at all: written under a hidden name, then renamed into place.

A rename within one folder is atomic, so a process stopped at any moment (Ctrl-C, SIGTERM, even
SIGKILL) leaves under the final name either the previous file or the complete new one, never a
torn one. On an error or an interruption the hidden file is deleted; after a SIGKILL it stays,
hidden (`.<stem>.partial<suffix>`), and the next write of the same file replaces it.
Checkpoints have their own writer with fsync (fcnseg.checkpoint): they must survive a machine
crash too, not only a killed process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def partial_path(path: str | Path) -> Path:
    """The hidden name `path` is written under; it keeps the suffix, which says the format to
    writers that go by it (Pillow, onnxruntime)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.partial{path.suffix}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield the hidden path to write; when the block ends normally it replaces `path`,
    when it raises (an interruption included) it is deleted."""
    path = Path(path)
    partial = partial_path(path)
    partial.unlink(missing_ok=True)  # left by a killed writer
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def write_text_atomically(path: str | Path, text: str) -> None:
    with atomic_path(path) as partial:
        partial.write_text(text)
