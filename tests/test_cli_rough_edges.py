"""What a new user meets first: `--version` and a top-level help written for them, the scores
and the report.html a run ends with, `--resume` given a run folder or its last.pt, and a failed
`train` that leaves no run folder behind to need --overwrite."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fcnseg.cli import main
from fcnseg.commands.runs import started_run
from fcnseg.storage.folders import MARKER

TINY = [
    "data.synthetic_train=8",
    "data.synthetic_val=3",
    "data.synthetic_size=[45, 61]",
    "train.epochs=1",
    "model.options.base_width=4",
    "data.batch_size=4",
]
SETS = [argument for item in TINY for argument in ("--set", item)]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def printed(argv: list[str]) -> tuple[int, str]:
    """The exit status of `fcnseg ARGV` and what it printed on stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(argv)
    return status, out.getvalue()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tiny demo run (one epoch) and what `fcnseg demo` printed."""
    out = tmp_path_factory.mktemp("rough-edges") / "demo"
    status, text = printed(["demo", "--out", str(out), "--no-progress", *SETS])
    assert status == 0
    return out, text


def percent(value: float) -> str:
    """A score as report.html writes it (report/html.py): per cent, two decimals."""
    return f"{100 * value:.2f}"


def test_version_and_a_help_for_users(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"fcnseg {importlib.metadata.version('fcnseg')}\n"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "only module that reads argv" not in text  # the developer's docstring
    assert text.count("\n  fcnseg ") >= 3 and "examples:" in text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "its folder, or the last.pt in it" in " ".join(capsys.readouterr().out.split())


def test_help_and_version_answer_without_loading_torch():
    """The package's names load on first use, so `fcnseg --help` answers at once."""
    probe = "import sys, fcnseg.cli; print('torch' in sys.modules, 'numpy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False"], result.stderr
    import fcnseg

    assert fcnseg.load.__name__ == "load" and "ModelSpec" in dir(fcnseg)
    with pytest.raises(AttributeError, match="no attribute 'lod'"):
        fcnseg.lod  # noqa: B018


def test_a_run_ends_with_its_scores_and_report_html(demo_run: tuple[Path, str]):
    out, text = demo_run
    lines = text.strip().splitlines()
    assert lines[-1] == f"report: {out / 'report.html'}"
    metrics = json.loads((out / "metrics.json").read_text())
    low, high = metrics["miou_95ci"]
    assert lines[-2] == (
        f"mIoU {percent(metrics['miou'])} % (95% CI {percent(low)}-{percent(high)})  "
        f"pixel accuracy {percent(metrics['pixel_accuracy'])} %  "
        f"mean Dice {percent(metrics['dice'])} %"
    )
    page = (out / "report.html").read_text()
    assert f"<td>{percent(metrics['miou'])}</td>" in page  # the same figure on the page


def test_evaluate_prints_its_scores_with_progress_on(demo_run: tuple[Path, str], tmp_path: Path):
    run, _ = demo_run
    evaluation = tmp_path / "evaluation"
    argv = ["evaluate", str(run / "best.pt"), "--data", str(run / "data"), "--out", str(evaluation)]
    status, text = printed(argv)  # bars and status lines on: not a terminal, so not drawn
    assert status == 0
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert f"mIoU {percent(metrics['miou'])} %" in text
    assert f"pixel accuracy {percent(metrics['pixel_accuracy'])} %" in text
    assert text.strip().splitlines()[-1] == f"report: {evaluation / 'report.html'}"


def test_resume_takes_the_run_folder_or_its_last_pt(
    demo_run: tuple[Path, str], tmp_path: Path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(demo_run[0], run)
    assert main(["train", "--resume", str(run / "best.pt")]) == 2
    error = capsys.readouterr().err
    assert "continues from its last.pt" in error and f"give the run folder {run}" in error
    status, text = printed(["train", "--resume", str(run / "last.pt"), "--no-progress"])
    assert status == 0 and "report:" in text  # nothing more to train: the report again
    stopped = tmp_path / "stopped"  # a run killed in its first epoch: no last.pt
    stopped.mkdir()
    (stopped / MARKER).write_text("written by fcnseg\n")
    shutil.copyfile(run / "config.yaml", stopped / "config.yaml")
    for given in (stopped, stopped / "last.pt"):
        assert main(["train", "--resume", str(given)]) == 2
        error = " ".join(capsys.readouterr().err.split())
        assert f"{stopped} holds no last.pt" in error, error
        assert f"start it again with --out {stopped} --overwrite" in error


def test_a_failed_train_leaves_no_folder_to_overwrite(demo_run: tuple[Path, str], tmp_path: Path):
    out = tmp_path / "run"
    missing = ["--set", "data.kind=folder", "--set", f"data.root={tmp_path / 'no-data'}"]
    assert main(["train", "demo", "--out", str(out), "--no-progress", *SETS, *missing]) == 2
    assert not out.exists()
    bad_option = ["--set", "model.options.nonsense=1"]  # refused after the folder was made
    assert main(["train", "demo", "--out", str(out), "--no-progress", *bad_option]) == 2
    assert not out.exists()
    data = ["--set", "data.kind=folder", "--set", f"data.root={demo_run[0] / 'data'}"]
    assert main(["train", "demo", "--out", str(out), "--no-progress", *SETS, *data]) == 0
    assert (out / "last.pt").is_file()  # the retry, without --overwrite


def failing_start(out: Path, write: dict[str, str], reads_data: bool = True) -> None:
    """Start a run into `out`, write the files `write` into it, then fail."""
    run = started_run("demo", [], str(out), False, reads_data=reads_data)
    with pytest.raises(RuntimeError), run as (_, run_dir):
        for name, text in write.items():
            (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (run_dir / name).write_text(text)
        raise RuntimeError("the data loader broke")


def test_only_a_run_folder_of_its_own_making_is_taken_back(tmp_path: Path):
    failing_start(tmp_path / "new", {})
    assert not (tmp_path / "new").exists()
    failing_start(tmp_path / "demo", {"data/train/images/a.png": "shapes"}, reads_data=False)
    assert not (tmp_path / "demo").exists()  # the demo's own data goes with it
    (tmp_path / "empty").mkdir()  # the user made it: it stays, as it was
    failing_start(tmp_path / "empty", {})
    assert (tmp_path / "empty").is_dir() and not any((tmp_path / "empty").iterdir())
    failing_start(tmp_path / "checkpointed", {"last.pt": "an epoch's work"})
    assert (tmp_path / "checkpointed" / "last.pt").is_file()  # resumable: kept
    failing_start(tmp_path / "shared", {"notes.txt": "someone else's"})
    assert (tmp_path / "shared" / "notes.txt").read_text() == "someone else's"
    assert (tmp_path / "shared" / "config.yaml").is_file()  # nothing deleted there
    failing_start(tmp_path / "user-data", {"data/mine.png": "theirs"})  # reads_data: the user's
    assert (tmp_path / "user-data" / "data" / "mine.png").is_file()


def test_the_command_line_lets_openmp_threads_sleep_unless_told_otherwise():
    import os
    import subprocess
    import sys

    program = (
        "import os, sys\n"
        "from fcnseg.cli import share_the_cpu_politely\n"
        "share_the_cpu_politely()\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = subprocess.run([sys.executable, "-c", program], env=environment, capture_output=True)
    assert run.stdout.decode().strip() == "PASSIVE"
    chosen = {**environment, "OMP_WAIT_POLICY": "ACTIVE"}  # the user's choice stands
    run = subprocess.run([sys.executable, "-c", program], env=chosen, capture_output=True)
    assert run.stdout.decode().strip() == "ACTIVE"
