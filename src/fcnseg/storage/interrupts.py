"""SIGTERM handled like Ctrl-C: the work stops cleanly instead of the process vanishing.

Schedulers (Slurm, Kubernetes, systemd) and `kill` ask a process to stop with SIGTERM, and by
default Python then dies on the spot: no cleanup runs, so a file being written stays half
written. While a command runs, `sigterm_as_interrupt()` turns SIGTERM into `Terminated`, a
KeyboardInterrupt, so that every place that cleans up after Ctrl-C does so after SIGTERM too,
and the CLI ends with one line and a non-zero status.

Code that should finish before stopping (a training step, writing an epoch's checkpoints) runs
inside `uninterrupted()`: a SIGTERM that arrives there takes effect when the block ends.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

EXIT_STATUS = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as after Ctrl-C."""

    def __init__(self) -> None:
        super().__init__("terminated by SIGTERM")


class _Deferral:
    """How deep the uninterrupted() blocks are nested, and whether a SIGTERM waits for them."""

    depth = 0
    pending = False


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if _Deferral.depth:
        _Deferral.pending = True
        return
    raise Terminated


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises Terminated (Python delivers signals to the main
    thread only, so elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _Deferral.pending = False


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Run the block to its end before a SIGTERM that arrives meanwhile takes effect."""
    _Deferral.depth += 1
    try:
        yield
    finally:
        _Deferral.depth -= 1
    if _Deferral.depth == 0 and _Deferral.pending:  # only reached when the block succeeded
        _Deferral.pending = False
        raise Terminated
