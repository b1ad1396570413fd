"""One writer per run folder: a lock file naming its owner, refreshed while the owner lives.

    <folder>/.fcnseg-lock    {"pid", "host", "command", "started", "token"} as JSON

A command that writes into a folder creates the lock first (an exclusive create: of two
processes, exactly one succeeds) and deletes it when done. A second writer finds it and is
refused with the owner's name, unless the owner is gone:

    same host      the owner's pid is no longer running (or it is this process's own pid, which
                   a lock this process does not hold means an earlier process that had it)
    another host   no process there can be asked, so the owner refreshes the file's time every
                   HEARTBEAT_SECONDS; a lock older than STALE_AFTER_SECONDS is taken as left
                   by a machine that died (a preempted node, a restarted container)

A stale lock is reported and taken over. Two processes taking over the same stale lock within
the same moment can both succeed; fcnseg does not guard against that.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from fcnseg.errors import FcnsegError

LOCK = ".fcnseg-lock"
HEARTBEAT_SECONDS = 30.0
STALE_AFTER_SECONDS = 300.0
_HELD: set[Path] = set()  # folders whose lock this process holds (resolved paths)


@dataclass(frozen=True)
class Owner:
    pid: int
    host: str
    command: str
    started: str
    token: str = ""

    def describe(self) -> str:
        return f"fcnseg {self.command} (pid {self.pid} on {self.host}, since {self.started})"


def read_owner(lock: Path) -> Owner | None:
    """The lock's owner, or None when the file is missing, empty or garbled."""
    try:
        fields = json.loads(lock.read_text())
        return Owner(
            int(fields["pid"]),
            str(fields["host"]),
            str(fields.get("command", "?")),
            str(fields.get("started", "?")),
            str(fields.get("token", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def owner_is_alive(lock: Path, owner: Owner | None) -> bool:
    """Whether the owner of `lock` may still be writing (see the module's description)."""
    if owner is None or owner.host != socket.gethostname():
        return _refreshed_recently(lock)  # also a lock whose owner is writing it this instant
    if owner.pid == os.getpid():
        return lock.parent.resolve() in _HELD
    try:
        os.kill(owner.pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    return True


def live_owner(folder: Path) -> Owner | None:
    """The owner of `folder`'s lock while it is alive (an unreadable lock counts, as unknown)."""
    lock = Path(folder) / LOCK
    if not lock.exists():
        return None
    owner = read_owner(lock)
    if not owner_is_alive(lock, owner):
        return None
    return owner or Owner(0, "an unknown host", "?", "?")


def _refreshed_recently(lock: Path) -> bool:
    try:
        return time.time() - lock.stat().st_mtime < STALE_AFTER_SECONDS
    except FileNotFoundError:
        return False


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


class RunLock:
    """`with RunLock(folder, "train"):` holds the folder's lock for the block (see above)."""

    def __init__(
        self, folder: str | Path, command: str, report: Callable[[str], None] = _to_stderr
    ) -> None:
        self.folder, self.path = Path(folder), Path(folder) / LOCK
        self.report = report
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        host = socket.gethostname()
        self.owner = Owner(os.getpid(), host, command, started, uuid.uuid4().hex)
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        for _ in range(3):  # a lock that vanishes or goes stale between looks: look again
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(descriptor, "w") as handle:
                handle.write(json.dumps(asdict(self.owner)))
            _HELD.add(self.folder.resolve())
            self._heartbeat = threading.Thread(target=self._beat, name="fcnseg-lock", daemon=True)
            self._heartbeat.start()
            return
        raise FcnsegError(f"could not lock {self.folder}: other processes keep taking it.")

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        _HELD.discard(self.folder.resolve())
        found = read_owner(self.path)
        if found is not None and found.token == self.owner.token:  # never another's lock
            self.path.unlink(missing_ok=True)

    def _take_over_if_stale(self) -> None:
        owner = read_owner(self.path)
        if owner_is_alive(self.path, owner):
            who = owner.describe() if owner else "another fcnseg process"
            raise FcnsegError(
                f"{self.folder} is in use by {who}; wait until it ends or stop it, or choose "
                f"another folder. If that process is gone, delete {self.path}."
            )
        who = owner.describe() if owner else "an unknown process (the lock was unreadable)"
        self.report(
            f"note: {self.folder} was locked by {who}, which is no longer running; "
            "taking the lock over."
        )
        self.path.unlink(missing_ok=True)

    def _beat(self) -> None:
        """Refresh the lock's time, so that other hosts can tell this owner is alive."""
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:  # the lock is gone with its folder: nothing left to refresh
                return
