"""A run stopped at any moment resumes to files that agree: last.pt, best.pt, history.json.

A kill is stood for by an exception nothing in fcnseg catches, raised before each step of
writing an epoch's files in turn (each step of save_checkpoint and copy_checkpoint, and of
writing history.json): what is on disk then is what a SIGKILL at that moment leaves. SIGTERM
and a second writer are tried through the CLI.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from fcnseg import checkpoint
from fcnseg.checkpoint import load_checkpoint
from fcnseg.cli import main
from fcnseg.storage import atomic
from fcnseg.storage.locks import LOCK
from fcnseg.training.trainer import Trainer
from tests.training.test_trainer import make_trainer, scores, tiny_config

MIOUS = [0.5, 0.4, 0.6]  # val mIoU after epochs 1, 2, 3: the first and the last improve
CLI = ["--no-progress", "--set", "train.epochs=2", "--set", "train.threads=1"]
CLI += ["--set", "model.options.base_width=4", "--set", "data.batch_size=2"]
CLI += ["--set", "data.synthetic_train=4", "--set", "data.synthetic_val=2"]
CLI += ["--set", "data.synthetic_size=[33, 41]"]


class Killed(BaseException):
    """Stands for SIGKILL: no `except Exception` stops it; only finally blocks run."""


class Tripwire:
    """Records each step of writing files; raises Killed before step number `at` (from 1)."""

    def __init__(self, at: int | None = None) -> None:
        self.at, self.steps = at, []

    def step(self, name: str) -> None:
        self.steps.append(name)
        if len(self.steps) == self.at:
            raise Killed(name)


class Watched:
    """A module as seen by fcnseg's file writers: its `names` pass through the tripwire."""

    def __init__(self, module: ModuleType, names: set[str], tripwire: Tripwire) -> None:
        self.module, self.names, self.tripwire = module, names, tripwire

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.module, name)
        if name not in self.names:
            return value

        def watched(*args: Any, **kwargs: Any) -> Any:
            self.tripwire.step(f"{self.module.__name__}.{name}")
            return value(*args, **kwargs)

        return watched


def arm(monkeypatch: pytest.MonkeyPatch, tripwire: Tripwire) -> None:
    """Watch every step of writing a checkpoint (the bytes, fsync of file and folder, rename,
    hard link) and of the atomic writes (the rename; the bytes go to a hidden file)."""
    monkeypatch.setattr(checkpoint, "os", Watched(os, {"fsync", "replace", "link"}, tripwire))
    monkeypatch.setattr(checkpoint, "torch", Watched(torch, {"save"}, tripwire))
    monkeypatch.setattr(atomic, "os", Watched(os, {"replace"}, tripwire))


def scripted_trainer(run_dir: Path, init_seed: int = 0) -> Trainer:
    """A Trainer whose epochs only add 1 to every weight (so the weights tell the epoch) and
    whose validation gives MIOUS: the files are real, the training is instant."""
    run_dir.mkdir(exist_ok=True)
    trainer = make_trainer(tiny_config(f"train.epochs={len(MIOUS)}"), run_dir, init_seed)

    def train_one_epoch() -> dict[str, float]:
        with torch.no_grad():
            for parameter in trainer.model.parameters():
                parameter.add_(1.0)
        trainer.state.step += 1
        return {"loss": 1.0, "images_per_second": 1.0}

    trainer.train_one_epoch = train_one_epoch
    trainer.validate = lambda: scores(MIOUS[trainer.state.epoch])
    trainer.task.loss = 0.5  # the scripted validation's loss (NaN would never equal itself)
    return trainer


def run_files(run_dir: Path) -> dict[str, Any]:
    last, best = load_checkpoint(run_dir / "last.pt"), load_checkpoint(run_dir / "best.pt")
    return {
        "history": json.loads((run_dir / "history.json").read_text()),
        "last_history": last["history"],
        "best_epoch_in_last": last["best_epoch"],
        "best_epoch": best["epoch"],
        "best_weights": next(iter(best["state_dict"].values())),
        "partial_files": sorted(p.name for p in run_dir.iterdir() if ".partial" in p.name),
    }


def test_a_kill_at_any_step_of_writing_resumes_to_files_that_agree(tmp_path, monkeypatch):
    reference = Tripwire()
    with monkeypatch.context() as patch:
        arm(patch, reference)
        scripted_trainer(tmp_path / "whole").fit()
    expected = run_files(tmp_path / "whole")
    assert expected["best_epoch"] == 3 and len(expected["history"]) == 3
    assert reference.steps.count("os.link") == 2  # best.pt after epochs 1 and 3
    assert len(reference.steps) == 8 + 5 + 8  # save 4, copy 3, history 1
    for at, step in enumerate(reference.steps, start=1):
        run_dir = tmp_path / f"killed-{at}"
        with monkeypatch.context() as patch, pytest.raises(Killed):
            arm(patch, Tripwire(at))
            scripted_trainer(run_dir).fit()
        started = (run_dir / "last.pt").exists()
        resumed = scripted_trainer(run_dir, init_seed=123 if started else 0)
        if started:
            resumed.resume(run_dir / "last.pt")
        resumed.fit()
        got = run_files(run_dir)
        where = f"killed before step {at} ({step})"
        assert got["history"] == got["last_history"] == expected["history"], where
        assert got["best_epoch"] == got["best_epoch_in_last"] == 3, where
        assert torch.equal(got["best_weights"], expected["best_weights"]), where
        assert got["partial_files"] == [], where


def test_a_run_killed_before_copying_its_best_reports_the_best(tmp_path, monkeypatch):
    """The measured case: killed after last.pt of the last, improving epoch, before best.pt;
    the resumed run must report that epoch, not the older best.pt."""
    monkeypatch.setattr(Trainer, "validate", lambda self: scores([0.3, 0.5][self.state.epoch]))
    copy = checkpoint.copy_checkpoint

    def killed_in_epoch_2(source: Path, target: Path) -> None:
        if load_checkpoint(source)["epoch"] == 2:
            raise Killed
        copy(source, target)

    monkeypatch.setattr("fcnseg.training.checkpointing.copy_checkpoint", killed_in_epoch_2)
    with pytest.raises(Killed):
        main(["train", "demo", "--out", str(tmp_path / "run"), *CLI])
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 1
    monkeypatch.setattr("fcnseg.training.checkpointing.copy_checkpoint", copy)
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 0
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 2
    assert "best.pt (epoch 2, val mIoU 0.5000)" in (tmp_path / "run" / "report.md").read_text()


class SigtermNotHandled(Exception):
    """Raised by this test's own SIGTERM handler, which fcnseg's should replace: without one,
    the process would die on the spot (and pytest with it)."""


def test_sigterm_ends_the_step_then_stops_with_a_whole_checkpoint(tmp_path, monkeypatch, capsys):
    def not_handled(signum: int, frame: object) -> None:
        raise SigtermNotHandled

    previous = signal.signal(signal.SIGTERM, not_handled)
    real_step, calls = Trainer.train_step, []

    def step(self: Trainer, image: torch.Tensor, mask: torch.Tensor) -> float:
        calls.append(1)
        if calls.count(1) == 3:  # the first step of epoch 2
            os.kill(os.getpid(), signal.SIGTERM)
        loss = real_step(self, image, mask)
        calls.append("done")
        return loss

    monkeypatch.setattr(Trainer, "train_step", step)
    try:
        assert main(["train", "demo", "--out", str(tmp_path / "run"), *CLI]) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert capsys.readouterr().err.strip() == "terminated"
    assert calls[-2:] == [1, "done"] and calls.count(1) == 3  # that step ended; no other began
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
    # Had a SIGKILL followed, the lock would remain, its owner dead: resuming takes it over.
    finished = subprocess.Popen(["true"])
    finished.wait()
    owner = {"pid": finished.pid, "host": socket.gethostname(), "command": "train"}
    (tmp_path / "run" / LOCK).write_text(json.dumps(owner))
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 0
    assert "no longer running; taking the lock over" in capsys.readouterr().err
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 2


def test_a_second_writer_cannot_replace_a_run_that_is_training(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "run")
    real_step, second = Trainer.train_step, []

    def step(self: Trainer, image: torch.Tensor, mask: torch.Tensor) -> float:
        if not second:  # while the first run trains, the same command again, --overwrite
            second.append("started")  # once: were it let in, its steps would come here too
            second.append(main(["train", "demo", "--out", out, "--overwrite", *CLI]))
        return real_step(self, image, mask)

    monkeypatch.setattr(Trainer, "train_step", step)
    assert main(["train", "demo", "--out", out, *CLI]) == 0
    assert second == ["started", 2]
    assert f"is in use by fcnseg train (pid {os.getpid()}" in capsys.readouterr().err
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 4
    assert not (tmp_path / "run" / ".fcnseg-lock").exists()  # released at the end
