"""Run folders and their locks: where a run may go, what --overwrite may replace, and one
writer per folder, with a dead writer's lock detected, reported and taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from fcnseg.errors import FcnsegError
from fcnseg.storage import locks
from fcnseg.storage.folders import MARKER, resumed_folder, run_dir_for, run_folder
from fcnseg.storage.locks import LOCK, RunLock
from tests.tiny_runs import contents, fake_run


def write_lock(folder: Path, pid: int, host: str | None = None, age: float = 0.0) -> Path:
    lock = folder / LOCK
    owner = {"pid": pid, "host": host or socket.gethostname(), "command": "train"}
    lock.write_text(json.dumps({**owner, "started": "2024-05-01 10:00:00", "token": "x"}))
    os.utime(lock, (time.time() - age, time.time() - age))
    return lock


def enter(folder: AbstractContextManager) -> None:
    """Enter and leave: what a command does around its work."""
    with folder:
        pass


@pytest.fixture
def sleeper():
    """A live process that is not this one, to own a lock."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "/tmp/elsewhere", "", "."])
def test_a_run_name_cannot_leave_output_dir(tmp_path: Path, name: str):
    with pytest.raises(FcnsegError, match="outside output_dir"):
        run_dir_for(tmp_path / "runs", name)


def test_run_names_inside_output_dir_are_kept_as_given(tmp_path: Path):
    assert run_dir_for(tmp_path / "runs", "unet/camvid") == tmp_path / "runs" / "unet" / "camvid"
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "link").symlink_to(tmp_path)
    with pytest.raises(FcnsegError, match="outside output_dir"):
        run_dir_for(tmp_path / "runs", "link/escape")
    (tmp_path / "file").write_text("")
    with pytest.raises(FcnsegError, match="is a file, not a folder"):
        run_dir_for(tmp_path / "file", "run")


def test_folders_that_cannot_be_made_are_explained(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine")
    for path, message in [
        (tmp_path / "notes.txt", "is a file, not a folder"),
        (tmp_path / "notes.txt" / "run", "is a file, so no folder can be made"),
    ]:
        with pytest.raises(FcnsegError, match=message), run_folder(path):
            pass
    run = fake_run(tmp_path / "run")
    (tmp_path / "link").symlink_to(run)
    with pytest.raises(FcnsegError, match="symbolic link"), run_folder(tmp_path / "link", True):
        pass
    assert (run / "best.pt").is_file()


def test_overwrite_replaces_an_fcnseg_folder_but_never_what_the_command_reads(tmp_path: Path):
    run = fake_run(tmp_path / "run")
    before = contents(run)
    with pytest.raises(FcnsegError, match="already exists"):
        enter(run_folder(run))
    with pytest.raises(FcnsegError, match="which this command reads"):
        enter(run_folder(run, overwrite=True, reads=[run / "best.pt"]))
    assert contents(run) == before
    with run_folder(run, overwrite=True) as folder:
        assert sorted(path.name for path in folder.iterdir()) == [LOCK, MARKER]
    assert sorted(path.name for path in run.iterdir()) == [MARKER]  # the lock is released


def test_a_second_writer_is_refused_while_the_first_is_alive(tmp_path: Path, sleeper):
    run = fake_run(tmp_path / "run")
    lock = write_lock(run, sleeper.pid)
    before = contents(run)
    with pytest.raises(FcnsegError, match=f"in use by fcnseg train \\(pid {sleeper.pid}"):
        enter(run_folder(run, overwrite=True))
    with pytest.raises(FcnsegError, match="in use by"):
        enter(resumed_folder(run))
    assert contents(run) == before
    sleeper.kill()
    sleeper.wait()
    notes: list[str] = []
    with RunLock(run, "train --resume", report=notes.append):  # the owner died: stale
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert len(notes) == 1 and f"pid {sleeper.pid}" in notes[0]
    assert "no longer running; taking the lock over" in notes[0]
    assert not lock.exists()


def test_a_lock_from_another_host_is_stale_once_it_stops_being_refreshed(tmp_path: Path):
    run = fake_run(tmp_path / "run")
    write_lock(run, 1, host="gpu-node-7", age=10.0)
    with pytest.raises(FcnsegError, match="on gpu-node-7"), RunLock(run, "evaluate"):
        pass
    write_lock(run, 1, host="gpu-node-7", age=locks.STALE_AFTER_SECONDS + 1)
    notes: list[str] = []
    with RunLock(run, "evaluate", report=notes.append):
        pass
    assert "gpu-node-7" in notes[0]


def test_one_process_cannot_write_a_folder_twice_and_an_old_lock_of_its_pid_is_stale(
    tmp_path: Path,
):
    run = fake_run(tmp_path / "run")
    with RunLock(run, "train"), pytest.raises(FcnsegError, match="in use by"):
        enter(RunLock(run, "train"))
    write_lock(run, os.getpid())  # left by an earlier process that had this pid
    notes: list[str] = []
    with RunLock(run, "train", report=notes.append):
        pass
    assert notes


def test_replacing_is_refused_while_a_folder_inside_is_written(tmp_path: Path, sleeper):
    run = fake_run(tmp_path / "run")
    evaluation = fake_run(run / "evaluation-val")
    write_lock(evaluation, sleeper.pid)
    with pytest.raises(FcnsegError, match="evaluation-val is in use"):
        enter(run_folder(run, overwrite=True))
    assert (evaluation / "best.pt").is_file()


def test_the_owner_refreshes_its_lock(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(locks, "HEARTBEAT_SECONDS", 0.02)
    run = fake_run(tmp_path / "run")
    with RunLock(run, "train"):
        os.utime(run / LOCK, (0, 0))
        deadline = time.time() + 5
        while (run / LOCK).stat().st_mtime == 0 and time.time() < deadline:
            time.sleep(0.02)
        assert (run / LOCK).stat().st_mtime > time.time() - 60


def test_resume_writes_only_into_a_folder_fcnseg_made(tmp_path: Path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.yaml").write_text("my own notes\n")
    with pytest.raises(FcnsegError, match="not a folder fcnseg made"), resumed_folder(folder):
        pass
    with pytest.raises(FcnsegError, match="no such folder"), resumed_folder(tmp_path / "none"):
        pass
