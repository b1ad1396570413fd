"""`fcnseg predict` shared out among processes (torchrun, 2 gloo processes on CPU), and
`--skip-existing`, which finishes what a dead rank (or a stopped run) left undone.

The distributed runs go through a small script that records, per rank, every output file the
rank renamed into place, so that "each file written exactly once, by the rank whose share it is"
is checked from the writes themselves, not inferred from the folder afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnseg.cli import main
from fcnseg.inference.files import is_complete, mask_outputs, output_names, unfinished
from fcnseg.inference.instance_files import instance_outputs
from tests.inference.test_instances import write_instance_checkpoint
from tests.tiny_runs import write_checkpoint

# fcnseg's CLI, with each output's rename into place logged to <log folder>/rank<RANK>.log.
LOGGED_PREDICT = """
import os, sys
from contextlib import contextmanager
from pathlib import Path

from fcnseg.cli import main
from fcnseg.inference import files

log = Path(sys.argv[1]) / f"rank{os.environ.get('RANK', '0')}.log"
real_atomic_path = files.atomic_path


@contextmanager
def logged_atomic_path(path):
    with real_atomic_path(path) as partial:
        yield partial
    with log.open("a") as file:  # only once the whole file is in place
        file.write(Path(path).name + "\\n")


files.atomic_path = logged_atomic_path
sys.exit(main(sys.argv[2:]))
"""
SIZES = [(20, 30), (23, 31), (25, 28), (0, 0), (30, 22), (21, 41), (27, 27)]  # (0, 0): broken
BROKEN = "img3.png"  # index 3 of the sorted inputs: rank 1's share of 2


def torchrun(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=2 ARGS`, one thread per process."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    for variable in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        environment.pop(variable, None)
    return subprocess.run(
        [*launcher, "--nproc_per_node=2", *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )


def logged_writes(folder: Path) -> dict[int, list[str]]:
    """rank -> the output files it renamed into place, in order."""
    return {
        rank: (folder / f"rank{rank}.log").read_text().split()
        if (folder / f"rank{rank}.log").is_file()
        else []
        for rank in (0, 1)
    }


def outputs(folder: Path) -> dict[str, bytes]:
    """Every visible file in folder (not the marker, the lock, a partial file) and its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def predicted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Seven inputs (one broken), a checkpoint, and their prediction by one process (this one,
    one thread) and by two torchrun ranks, whose writes are logged."""
    root = tmp_path_factory.mktemp("distributed-predict")
    inputs = root / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(7)
    for index, (height, width) in enumerate(SIZES):
        path = inputs / f"img{index}.png"
        if height == 0:
            path.write_bytes(b"\x89PNG torn off")
            continue
        Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(path)
    checkpoint = write_checkpoint(root / "best.pt")
    (root / "predict.py").write_text(LOGGED_PREDICT)
    (root / "logs").mkdir()
    argv = ["predict", str(checkpoint), str(inputs), "--backend", "torch", "--no-progress"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process: the same arithmetic, the same argmax
    try:
        assert main([*argv, "--out", str(root / "single")]) == 1  # the broken input
    finally:
        torch.set_num_threads(threads)
    run = torchrun(["predict.py", str(root / "logs"), *argv, "--out", str(root / "shared")], root)
    assert run.returncode == 1, run.stderr[-3000:]  # rank 0 ends with 1 for the broken input
    (root / "stdout").write_text(run.stdout)
    (root / "stderr").write_text(run.stderr)
    return {"root": root, "inputs": inputs, "checkpoint": checkpoint}


def test_two_ranks_write_each_file_once_as_one_process_would(predicted: dict[str, Path]):
    root = predicted["root"]
    single, shared = outputs(root / "single"), outputs(root / "shared")
    assert len(single) == 2 * (len(SIZES) - 1)  # a mask and an overlay of each good input
    assert shared == single  # every file there, none more, byte for byte
    writes = logged_writes(root / "logs")
    assert sorted(writes[0] + writes[1]) == sorted(single)  # each written exactly once
    images = sorted(predicted["inputs"].iterdir())
    names = output_names(images)
    for rank in (0, 1):  # rank r: inputs r, r + 2, r + 4, ... of the sorted list
        share = [names[image] for image in images[rank::2] if image.name != BROKEN]
        assert writes[rank] == [output for name in share for output in mask_outputs(name)]
    assert (root / "shared" / ".fcnseg-run").is_file()
    assert not [p.name for p in (root / "shared").iterdir() if "partial" in p.name]
    stdout, stderr = (root / "stdout").read_text(), (root / "stderr").read_text()
    assert stdout.count("masks and overlays:") == 1  # rank 0 reports for both
    failed = [line for line in stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and BROKEN in failed[0]  # rank 1's failure, listed once by rank 0
    assert "1 image(s) could not be predicted" in stderr


def test_skip_existing_finishes_what_a_dead_rank_left(predicted: dict[str, Path], tmp_path: Path):
    """A rank that died leaves its share undone: here rank 1's outputs are deleted, one overlay
    of rank 0 is missing (killed between its two files) and one mask is torn (a machine crash
    before the disk had it). The rerun writes those and nothing else, and deletes nothing."""
    root = predicted["root"]
    out = tmp_path / "shared"
    shutil.copytree(root / "shared", out)
    for name in ("img1", "img5"):  # rank 1's good inputs
        for output in mask_outputs(name):
            (out / output).unlink()
    (out / "img2_overlay.png").unlink()
    (out / "img4.png").write_bytes((out / "img4.png").read_bytes()[:40])
    (out / "notes.txt").write_text("the user's")
    redone = {"img1.png", "img1_overlay.png", "img5.png", "img5_overlay.png"}
    redone |= {"img2.png", "img2_overlay.png", "img4.png", "img4_overlay.png"}
    kept = {path.name: path for path in out.iterdir() if path.name not in redone}
    for path in kept.values():
        os.utime(path, ns=(10**18, 10**18))  # a rewrite would give it the present time
    before = {name: (path.stat().st_ino, path.stat().st_mtime_ns) for name, path in kept.items()}
    logs = tmp_path / "logs"
    logs.mkdir()
    arguments = [str(predicted["checkpoint"]), str(predicted["inputs"]), "--out", str(out)]
    flags = ["--backend", "torch", "--skip-existing"]  # no --overwrite: the folder is fcnseg's
    run = torchrun([str(root / "predict.py"), str(logs), "predict", *arguments, *flags], tmp_path)
    assert run.returncode == 1, run.stderr[-3000:]  # the broken input is tried again
    assert "2 of 7 images have their outputs already; predicting the other 5" in run.stdout
    writes = logged_writes(logs)
    assert sorted(writes[0] + writes[1]) == sorted(redone)  # each once, nothing else rewritten
    assert writes[0] and writes[1]  # the rest shared out again among both ranks
    after = {name: (path.stat().st_ino, path.stat().st_mtime_ns) for name, path in kept.items()}
    assert after == before
    assert (out / "notes.txt").read_text() == "the user's"
    assert outputs(out) == {**outputs(root / "single"), "notes.txt": b"the user's"}


def test_skip_existing_in_one_process_adds_to_an_instance_folder(tmp_path: Path, capsys):
    """An instance model's three outputs per image: a missing JSON makes the image unfinished.
    One process (no torchrun) behaves as one rank of one."""
    checkpoint = write_instance_checkpoint(tmp_path / "instance.pt")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(3):
        image = np.random.default_rng(index).integers(0, 256, (32, 40, 3), np.uint8)
        Image.fromarray(image).save(inputs / f"cell{index}.png")
    out = tmp_path / "out"
    argv = ["predict", str(checkpoint), str(inputs), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    first = outputs(out)
    assert sorted(first) == sorted(o for i in range(3) for o in instance_outputs(f"cell{i}"))
    (out / "cell1.json").unlink()
    kept = {name: (out / name).stat().st_ino for name in first if not name.startswith("cell1")}
    assert main(argv) == 2  # an existing folder: refused without --skip-existing
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--skip-existing"]) == 0
    assert outputs(out) == first
    assert {name: (out / name).stat().st_ino for name in kept} == kept  # not rewritten


def test_skip_existing_refuses_overwrite_and_folders_fcnseg_did_not_make(tmp_path: Path, capsys):
    checkpoint = write_checkpoint(tmp_path / "best.pt")
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(image)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "a.png").write_bytes(b"someone's own a.png")
    base = ["predict", str(checkpoint), str(image), "--skip-existing", "--no-progress"]
    assert main([*base, "--out", str(theirs)]) == 2
    assert "not an fcnseg output folder" in capsys.readouterr().err
    assert (theirs / "a.png").read_bytes() == b"someone's own a.png"
    assert main([*base, "--out", str(tmp_path / "new"), "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "new")]) == 0  # a new folder: made as usual
    assert sorted(outputs(tmp_path / "new")) == ["a.png", "a_overlay.png"]


def test_only_whole_outputs_count_as_done(tmp_path: Path):
    whole = tmp_path / "whole.png"
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(whole)
    torn = tmp_path / "torn.png"
    torn.write_bytes(whole.read_bytes()[:-1])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "good.json").write_text('{"instances": []}')
    (tmp_path / "bad.json").write_text('{"instances": [')
    assert is_complete(whole) and is_complete(tmp_path / "good.json")
    for name in ("torn.png", "empty.png", "bad.json", "missing.png"):
        assert not is_complete(tmp_path / name), name
    images = [tmp_path / "in" / name for name in ("whole.png", "torn.png")]
    names = {image: image.stem for image in images}
    shutil.copyfile(whole, tmp_path / "whole_overlay.png")
    shutil.copyfile(whole, tmp_path / "torn_overlay.png")
    assert unfinished(images, names, tmp_path) == [images[1]]
