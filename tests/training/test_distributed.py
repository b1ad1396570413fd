"""Distributed training on CPU with 2 gloo processes started by torchrun.

The validation set has 5 images in batches of 2: DistributedSampler would pad it to 6 (one
image counted twice); the evaluation loader must deal batches so that the summed confusion
matrix is exactly the single-process one.
"""

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fcnseg.checkpoint import load_checkpoint
from fcnseg.training import distributed

TINY = [
    "data.synthetic_size=[33, 41]",
    "data.synthetic_train=8",
    "data.synthetic_val=5",
    "data.batch_size=2",
    "model.options.base_width=4",
    "train.threads=1",
]

# Validates a seeded, untrained U-Net with the Trainer, in one process or under torchrun.
EVALUATE = f"""
import json, sys
from pathlib import Path
from fcnseg.training import distributed
from fcnseg.commands import seed_everything
from fcnseg.config import load_config
from fcnseg.data import make_dataset, make_loader
from fcnseg.losses import build_loss
from fcnseg.models import build_model
from fcnseg.training.trainer import Trainer
from fcnseg.checkpoint import ModelSpec

distributed.start()
config = load_config(None, {TINY!r})
seed_everything(0)
model = build_model("unet", 4, base_width=4)
train_set = make_dataset(config.data, "train", train=True)
val_set = make_dataset(config.data, "val", train=False)
trainer = Trainer(
    config,
    model,
    make_loader(train_set, 2, True, world_size=distributed.world_size(), rank=distributed.rank()),
    distributed.evaluation_loader(val_set, 2),
    build_loss(config.loss, 4),
    Path(sys.argv[1]).parent,
    ["b", "c", "r", "t"],
    ModelSpec("unet", 4, 3, {{"base_width": 4}}),
    show_progress=False,
)
scores = trainer.validate()
if distributed.is_main():
    Path(sys.argv[1]).write_text(json.dumps(scores.to_dict()))
distributed.stop()
distributed.end_worker(0)  # as fcnseg's CLI ends under torchrun; nothing in one process
"""


def run(arguments: list[str], cwd: Path, processes: int = 1) -> subprocess.CompletedProcess:
    """`python ARGS`, or `torchrun --nproc_per_node=N ARGS`, with one thread per process."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    for variable in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        environment.pop(variable, None)
    return subprocess.run(
        launcher + arguments, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300
    )


def test_two_process_evaluation_equals_one_process_exactly(tmp_path: Path, monkeypatch):
    script = tmp_path / "evaluate.py"
    script.write_text(EVALUATE)
    monkeypatch.setattr(sys, "argv", [str(script), str(tmp_path / "single.json")])
    runpy.run_path(str(script), run_name="__main__")  # one process: this one
    double = run([str(script), str(tmp_path / "double.json")], tmp_path, processes=2)
    assert double.returncode == 0, double.stderr
    expected = json.loads((tmp_path / "single.json").read_text())
    got = json.loads((tmp_path / "double.json").read_text())
    assert expected["num_pixels"] == 5 * 33 * 41  # every image once
    assert 0 < expected["pixel_accuracy"] < 1  # a prediction with errors to count
    assert got == expected


def test_torchrun_training_completes_and_writes_one_checkpoint_set(tmp_path: Path):
    out = tmp_path / "run"
    overrides = [part for item in [*TINY, "train.epochs=2"] for part in ("--set", item)]
    arguments = ["-m", "fcnseg", "train", "demo", "--out", str(out), "--no-progress", *overrides]
    result = run(arguments, tmp_path, processes=2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("report:") == 1  # rank 0 alone reports
    files = sorted(path.name for path in out.iterdir())
    for name in ("best.pt", "config.yaml", "history.json", "last.pt", "metrics.json"):
        assert files.count(name) == 1, files
    assert not [name for name in files if name.endswith(".partial")]
    history = json.loads((out / "history.json").read_text())
    # 8 training images, 2 ranks x batch 2: 2 steps per epoch.
    assert [(entry["epoch"], entry["step"]) for entry in history] == [(1, 2), (2, 4)]
    assert load_checkpoint(out / "last.pt")["step"] == 4


def test_single_process_defaults():
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.value_of_main(1.5) == 1.5
    tensor = torch.tensor([3])
    assert distributed.sum_across_ranks(tensor) is tensor and tensor.item() == 3
    distributed.barrier()  # nothing to wait for


@pytest.mark.parametrize(("size", "world"), [(5, 2), (7, 3), (1, 2)])
def test_evaluation_batches_cover_every_item_once(monkeypatch, size: int, world: int):
    seen = []
    for rank in range(world):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        monkeypatch.setattr(distributed, "world_size", lambda: world)
        loader = distributed.evaluation_loader(list(range(size)), batch_size=2)
        seen += [batch.tolist() for batch in loader]
    single = [list(range(start, min(start + 2, size))) for start in range(0, size, 2)]
    assert sorted(seen) == single  # the single-process batches, each exactly once


def test_ending_a_worker_does_nothing_in_a_plain_process(monkeypatch):
    """Were it to end this process, pytest would stop here with status 3 (a failed CI run),
    never silently: the evaluation test above runs its script, end_worker(0) included, here."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    distributed.end_worker(3)
    assert not torch.distributed.is_initialized()
