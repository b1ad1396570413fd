"""Checkpoints survive SIGKILL mid-write, never run code on load, and restore RNG states."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fcnseg.checkpoint import (
    copy_checkpoint,
    load_checkpoint,
    load_weights,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from fcnseg.config import Config
from fcnseg.errors import FcnsegError
from fcnseg.inference import load
from fcnseg.models import build_model

# Saves a 32 MB checkpoint over and over, each holding its counter in every weight, and prints
# the counter after each save. It continues the counter of the file it finds.
WRITER = """
import sys, torch
from fcnseg.checkpoint import load_checkpoint, save_checkpoint
path = sys.argv[1]
try:
    counter = load_checkpoint(path)["counter"]
except Exception:
    counter = 0
weights = torch.empty(8_000_000)
while True:
    counter += 1
    weights.fill_(counter)
    save_checkpoint({"counter": counter, "weights": weights}, path)
    print(counter, flush=True)
"""


def test_sigkill_while_saving_leaves_a_loadable_checkpoint(tmp_path: Path):
    path = tmp_path / "last.pt"
    partial = tmp_path / ".last.pt.partial"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    generator = random.Random(0)
    kills_mid_write, previous = 0, 0
    for _ in range(5):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=environment
        )
        assert writer.stdout is not None
        writer.stdout.readline()  # one save done: from here on it saves continuously
        time.sleep(generator.uniform(0.0, 0.3))
        writer.send_signal(signal.SIGKILL)
        printed = [int(line) for line in writer.stdout.read().split()]
        writer.wait()
        kills_mid_write += partial.exists()

        state = load_checkpoint(path)  # must never fail
        counter = state["counter"]
        assert torch.all(state["weights"] == counter)  # one save's bytes, not two half saves
        # The last announced save, or the next one if it was renamed into place unannounced.
        last_announced = printed[-1] if printed else None
        assert last_announced is None or counter in (last_announced, last_announced + 1)
        assert counter > previous
        previous = counter
    assert kills_mid_write > 0  # the kills did land inside writes


class RunsCode:
    """A pickle that would create a file when unpickled by a trusting loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_loading_never_executes_code(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "fcnseg-checkpoint", "version": 1, "x": RunsCode(marker)}, path)
    with pytest.raises(FcnsegError, match="is not an fcnseg checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_missing_and_foreign_files_are_explained(tmp_path: Path):
    with pytest.raises(FcnsegError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(FcnsegError, match="no 'fcnseg-checkpoint' marker"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_weights_that_do_not_fit_their_spec_are_named(tmp_path: Path):
    """A ResNet U-Net saved when each decoder stage was as wide as its skip, loaded now that the
    default halves the width: the error names the weights that differ, and the fix's page."""
    old = build_model("unet", 2, backbone="resnet18", decoder_widths=(256, 128, 64, 64))
    spec = {"name": "unet", "num_classes": 2, "in_channels": 3, "options": {"backbone": "resnet18"}}
    state = {"model": spec, "state_dict": old.state_dict(), "config": Config().to_dict()}
    save_checkpoint({**state, "class_names": ["a", "b"]}, tmp_path / "old.pt")
    with pytest.raises(FcnsegError) as error:
        load(tmp_path / "old.pt")
    message = str(error.value)
    assert "decoder.fuse.3.0.0.weight is (64, 128, 3, 3), the model's (32, 96, 3, 3)" in message
    assert "docs/models.md" in message
    current = build_model("unet", 2, backbone="resnet18")
    load_weights(current, {**state, "state_dict": current.state_dict()}, "new.pt")  # fits


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_copied_checkpoint_keeps_its_version(tmp_path: Path, monkeypatch, hard_links: bool):
    if not hard_links:

        def no_links(source, target):
            raise OSError("this file system has no hard links")

        monkeypatch.setattr(os, "link", no_links)
    save_checkpoint({"epoch": 1}, tmp_path / "last.pt")
    copy_checkpoint(tmp_path / "last.pt", tmp_path / "best.pt")
    save_checkpoint({"epoch": 2}, tmp_path / "last.pt")
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    copy_checkpoint(tmp_path / "last.pt", tmp_path / "best.pt")
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_rng_states_round_trip_through_a_checkpoint(tmp_path: Path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's state
    save_checkpoint({"rng": rng_state()}, tmp_path / "rng.pt")

    def draws() -> tuple:
        return random.random(), np.random.standard_normal(2).tolist(), torch.rand(3).tolist()

    expected = draws()
    draws()  # move every generator on
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert draws() == expected
