"""Nothing a user has is lost to a careless command line: every command that writes refuses,
in one sentence (exit 2), to replace a run it was not asked to, the checkpoint or data it
reads, a user's file, or anything outside the chosen output folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcnseg.cli import main
from tests.tiny_runs import contents, fake_run, write_checkpoint

TINY = ["--no-progress", "--set", "train.epochs=1", "--set", "model.options.base_width=4"]
TINY += ["--set", "data.synthetic_train=4", "--set", "data.synthetic_val=2"]
TINY += ["--set", "data.synthetic_size=[33, 41]", "--set", "train.threads=1"]


def refused(argv: list[str], capsys: pytest.CaptureFixture, message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_inspect_never_replaces_a_run_without_overwrite(tmp_path, folder_dataset, capsys):
    run = fake_run(tmp_path / "run")
    before = contents(run)
    refused(["inspect", str(folder_dataset), "--out", str(run)], capsys, "already exists")
    assert contents(run) == before
    out = tmp_path / "inspection"
    assert main(["inspect", str(folder_dataset), "--out", str(out)]) == 0
    assert main(["inspect", str(folder_dataset), "--out", str(out), "--overwrite"]) == 0
    assert (out / "inspect.json").is_file()


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_overwrite_never_deletes_the_checkpoint_in_use(tmp_path, folder_dataset, capsys, command):
    run = fake_run(tmp_path / "run")
    before = contents(run)
    if command == "evaluate":
        argv = ["evaluate", str(run / "best.pt"), "--data", str(folder_dataset)]
    else:
        argv = ["predict", str(run / "best.pt"), str(folder_dataset / "val" / "images")]
    refused([*argv, "--out", str(run), "--overwrite"], capsys, "which this command reads")
    assert contents(run) == before


def test_export_never_replaces_a_users_file(tmp_path: Path, capsys):
    pytest.importorskip("onnxruntime")
    checkpoint = write_checkpoint(tmp_path / "best.pt")
    mine = tmp_path / "model.onnx"
    mine.write_bytes(b"my own model")
    argv = ["export", str(checkpoint), "--out"]
    refused([*argv, str(mine)], capsys, "already exists; pass --overwrite")
    refused([*argv, str(mine), "--overwrite"], capsys, "not a model fcnseg exported")
    assert mine.read_bytes() == b"my own model"
    (tmp_path / "folder.onnx").mkdir()
    refused([*argv, str(tmp_path / "folder.onnx")], capsys, "is a folder")
    refused([*argv, str(tmp_path / "no" / "m.onnx")], capsys, "does not exist; create it")


def fcnseg_like_onnx(path: Path, version: str) -> Path:
    """A one-node ONNX model carrying fcnseg's metadata, as `fcnseg export` marks its files."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    tensor = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [tensor("x", TensorProto.FLOAT, [1])],
        [tensor("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph)
    model.metadata_props.add(key="fcnseg.fingerprint", value=version)
    onnx.save(model, str(path))
    return path


def test_export_overwrite_replaces_an_earlier_export(tmp_path: Path, capsys, monkeypatch):
    """The rule, not the exporter (tested elsewhere): an earlier export is replaced with
    --overwrite, whole, by the checked new one."""
    pytest.importorskip("onnxruntime")
    from fcnseg.export import pipeline

    checkpoint = write_checkpoint(tmp_path / "best.pt")
    exported = fcnseg_like_onnx(tmp_path / "best.onnx", "old")
    monkeypatch.setattr(
        pipeline, "_export_checked", lambda predictor, path, _: fcnseg_like_onnx(path, "new")
    )
    refused(["export", str(checkpoint)], capsys, "already exists")
    assert main(["export", str(checkpoint), "--overwrite"]) == 0
    assert b"new" in exported.read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["best.onnx", "best.pt"]


def test_a_run_name_cannot_write_outside_output_dir(tmp_path: Path, capsys):
    runs = tmp_path / "runs"
    argv = ["train", "demo", *TINY, "--set", f"output_dir={runs}", "--set", "name=../escape"]
    refused(argv, capsys, "outside output_dir")
    assert not (tmp_path / "escape").exists()


def test_an_output_dir_that_is_a_file_is_explained(tmp_path: Path, capsys):
    (tmp_path / "runs").write_text("not a folder")
    argv = ["train", "demo", *TINY, "--set", f"output_dir={tmp_path / 'runs'}"]
    refused(argv, capsys, "is a file, not a folder")


def test_a_run_folder_that_is_a_link_is_explained(tmp_path: Path, capsys):
    run = fake_run(tmp_path / "run")
    before = contents(run)
    (tmp_path / "link").symlink_to(run)
    argv = ["train", "demo", *TINY, "--out", str(tmp_path / "link"), "--overwrite"]
    refused(argv, capsys, "is a symbolic link")
    assert contents(run) == before


def test_resume_never_writes_into_a_folder_fcnseg_did_not_make(tmp_path: Path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    write_checkpoint(folder / "last.pt")
    (folder / "config.yaml").write_text("my own settings\n")
    before = contents(folder)
    refused(["train", "--resume", str(folder)], capsys, "not a folder fcnseg made")
    assert contents(folder) == before


def test_training_never_deletes_the_data_it_reads(tmp_path, folder_dataset, capsys):
    run = fake_run(tmp_path / "run")
    data = folder_dataset.rename(run / "data")
    before = contents(run)
    argv = ["train", "demo", *TINY, "--set", "data.kind=folder", "--set", f"data.root={data}"]
    refused([*argv, "--out", str(run), "--overwrite"], capsys, "which this command reads")
    assert contents(run) == before
