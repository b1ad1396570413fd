"""`fcnseg predict` over files: unique output names, past unreadable files, and no partial
file left by a stopped or killed run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from fcnseg.cli import main
from fcnseg.errors import FcnsegError
from fcnseg.inference.files import output_names
from tests.tiny_runs import write_checkpoint

# Predicts with PngWriter.write sending this process SIGNAL after the first band of a mask.
KILLED_MID_WRITE = """
import os, signal, sys
from fcnseg.cli import main
from fcnseg.inference import streaming

real_write = streaming.PngWriter.write

def write(self, rows):
    real_write(self, rows)
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))

streaming.PngWriter.write = write
sys.exit(main(sys.argv[2:]))
"""


def save_image(path: Path, height: int, width: int) -> None:
    rng = np.random.default_rng(height)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(path)


def test_inputs_of_the_same_stem_keep_their_extension(tmp_path: Path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    sizes = {"a.png": (20, 30), "a.jpg": (21, 31), "b.png": (22, 32), "b_overlay.png": (23, 33)}
    for name, (height, width) in sizes.items():
        save_image(inputs / name, height, width)
    checkpoint = write_checkpoint(tmp_path / "best.pt")
    argv = ["predict", str(checkpoint), str(inputs), "--out", str(tmp_path / "out")]
    assert main([*argv, "--backend", "torch", "--no-progress"]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert len(written) == 2 * len(sizes), written
    for name, (height, width) in sizes.items():
        for output in (f"{name}.png", f"{name}_overlay.png"):
            assert Image.open(tmp_path / "out" / output).size == (width, height), output


def test_output_names_are_stems_unless_they_clash(tmp_path: Path):
    names = output_names([tmp_path / "x.png", tmp_path / "y.tif"])
    assert names == {tmp_path / "x.png": "x", tmp_path / "y.tif": "y"}
    clashing = output_names([tmp_path / "A.png", tmp_path / "a.jpg", tmp_path / "c.png"])
    assert sorted(clashing.values()) == ["A.png", "a.jpg", "c"]  # macOS: A.png is a.png
    chain = output_names([tmp_path / "a.png", tmp_path / "a.jpg", tmp_path / "a.png.png"])
    assert sorted(chain.values()) == ["a.jpg", "a.png", "a.png.png"]  # a.png.png.png: unique
    with pytest.raises(FcnsegError, match="rename them apart"):
        output_names([tmp_path / "A.png", tmp_path / "a.png"])


def test_an_unreadable_file_does_not_stop_the_others(tmp_path: Path, capsys):
    """A truncated TIFF passes the header check and fails while its rows are streamed."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    save_image(inputs / "good.png", 40, 50)
    broken = inputs / "broken.tif"
    tifffile.imwrite(broken, np.zeros((64, 80, 3), np.uint8), photometric="rgb")
    broken.write_bytes(broken.read_bytes()[:3000])
    checkpoint = write_checkpoint(tmp_path / "best.pt")
    argv = ["predict", str(checkpoint), str(inputs), "--out", str(tmp_path / "out")]
    argv += ["--backend", "torch", "--no-progress", "--mode", "tiled", "--tile-size", "32"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "broken.tif" in err and "1 image(s) could not be predicted" in err, err
    assert Image.open(tmp_path / "out" / "good.png").size == (50, 40)
    assert not (tmp_path / "out" / "broken.png").exists()


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_a_stopped_predict_leaves_no_partial_file(tmp_path: Path, signal_name: str):
    inputs = tmp_path / "in"
    inputs.mkdir()
    save_image(inputs / "image.png", 64, 80)
    checkpoint = write_checkpoint(tmp_path / "best.pt")
    argv = ["predict", str(checkpoint), str(inputs), "--out", str(tmp_path / "out")]
    argv += ["--backend", "torch", "--no-progress", "--mode", "tiled", "--tile-size", "32"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.run(
        [sys.executable, "-c", KILLED_MID_WRITE, signal_name, *argv],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    if signal_name == "SIGTERM":  # handled like Ctrl-C: one line, a non-zero status
        assert child.returncode == 143, child.stderr
        assert child.stderr.strip() == "terminated"
    else:
        assert child.returncode == -9
    visible = [path for path in (tmp_path / "out").iterdir() if not path.name.startswith(".")]
    assert visible == []  # killed inside the first mask: nothing whole to show yet
