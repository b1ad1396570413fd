"""Experiment trackers (train.trackers): a tiny run's TensorBoard event files and MLflow file
store hold history.json's numbers at its steps, the config and the val overlay strip; a resumed
run carries on in the same MLflow run; unknown names and missing packages are named."""

from __future__ import annotations

import gc
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnseg.cli import main
from fcnseg.errors import FcnsegError
from fcnseg.training.log import overlay_strip
from fcnseg.training.trackers import (
    TensorBoardTracker,
    config_params,
    open_trackers,
    tracker_names,
)
from fcnseg.training.trainer import Trainer
from tests.training.test_trainer import make_trainer, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def history(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of `key` in each epoch of history.json."""
    return [
        (entry["step"], entry[key]) for entry in json.loads((run_dir / "history.json").read_text())
    ]


def final_strip(trainer: Trainer) -> np.ndarray:
    """The overlay strip of the trained model: what the last epoch logged (same weights)."""
    return overlay_strip(trainer._overlay_samples())


def test_tensorboard_event_files_hold_the_history_the_config_and_the_overlays(tmp_path: Path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config("train.epochs=2", "train.trackers=[tensorboard]")
    trainer = make_trainer(config, tmp_path)
    trainer.fit()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    for tag, key in (("train/loss", "train_loss"), ("val/miou", "val_miou"), ("train/lr", "lr")):
        logged = [(event.step, event.value) for event in events.Scalars(tag)]
        expected = history(tmp_path, key)
        assert [step for step, _ in logged] == [step for step, _ in expected] == [2, 4]
        assert [value for _, value in logged] == pytest.approx(
            [value for _, value in expected],
            rel=1e-6,  # stored as float32
        )
    image = events.Images("val_overlays")[-1]
    assert image.step == 4
    picture = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
    np.testing.assert_array_equal(picture, final_strip(trainer))
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| `train.lr` | `0.003` |" in text and "| `data.synthetic_size` | `[33, 41]` |" in text


def mlflow_client(run_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """A reader of the run's store, as `mlflow ui` would be: MLflow 3 opens a file store only
    with MLFLOW_ALLOW_FILE_STORE set."""
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")

    return MlflowClient(tracking_uri=(run_dir / "mlruns").resolve().as_uri())


def only_run(client, experiment: str):
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1
    return runs[0]


def test_mlflow_file_store_holds_the_history_the_params_and_the_overlays(tmp_path, monkeypatch):
    run_dir = tmp_path / "shapes-run"
    client = mlflow_client(run_dir, monkeypatch)
    config = tiny_config("name=shapes", "train.epochs=2", "train.trackers=[mlflow]")
    trainer = make_trainer(config, run_dir)
    trainer.fit()
    run = only_run(client, "shapes")  # experiment: the config's name
    assert run.info.run_name == "shapes-run" and run.info.status == "FINISHED"
    for tag, key in (("train/loss", "train_loss"), ("val/miou", "val_miou"), ("train/lr", "lr")):
        logged = client.get_metric_history(run.info.run_id, tag)
        assert sorted((metric.step, metric.value) for metric in logged) == history(run_dir, key)
    params = run.data.params
    assert params["train.lr"] == "0.003" and params["train.trackers"] == '["mlflow"]'
    assert params["data.synthetic_size"] == "[33, 41]" and params["model.options"] == "{}"
    images = [item.path for item in client.list_artifacts(run.info.run_id, "images")]
    last = [path for path in images if "+step+4+" in path and path.endswith(".png")]
    assert len(last) == 1 and any("+step+2+" in path for path in images)
    local = client.download_artifacts(run.info.run_id, last[0], str(tmp_path))
    picture = np.asarray(Image.open(local).convert("RGB"))
    np.testing.assert_array_equal(picture, final_strip(trainer))
    assert not (run_dir / "tensorboard").exists()  # named trackers only: no "auto"


def test_a_resumed_run_carries_on_in_the_same_mlflow_run(tmp_path: Path, monkeypatch):
    client = mlflow_client(tmp_path, monkeypatch)
    config = tiny_config("train.epochs=2", "train.trackers=[mlflow]")
    first = make_trainer(config, tmp_path)
    first.fit(max_epochs=1)
    del first
    gc.collect()  # the log's finalizer: stopped before its end
    assert only_run(client, "run").info.status == "KILLED"
    second = make_trainer(config, tmp_path)
    second.resume(tmp_path / "last.pt")
    second.fit()
    run = only_run(client, "run")
    assert run.info.status == "FINISHED"
    steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "val/miou")]
    assert sorted(steps) == [2, 4]


def test_a_run_that_fails_before_its_first_checkpoint_takes_its_trackers_files_away(
    tmp_path: Path, monkeypatch
):
    """As for a run without trackers (fcnseg.commands.runs): the corrected command needs no
    --overwrite."""
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")

    def failing_step(self: Trainer, image, mask) -> float:
        made = {entry.name for entry in (tmp_path / "run").iterdir()}
        assert {"mlruns", "tensorboard"} <= made  # both opened before the first step
        raise RuntimeError("out of memory")

    monkeypatch.setattr(Trainer, "train_step", failing_step)
    flags = ["--no-progress", "--set", "train.trackers=[tensorboard, mlflow]"]
    for setting in ("data.synthetic_train=4", "data.synthetic_val=2", "data.batch_size=2"):
        flags += ["--set", setting]
    flags += ["--set", "model.options.base_width=4", "--set", "data.synthetic_size=[33, 41]"]
    with pytest.raises(RuntimeError, match="out of memory"):
        main(["train", "demo", "--out", str(tmp_path / "run"), *flags])
    assert not (tmp_path / "run").exists()


def test_no_trackers_write_nothing_but_history(tmp_path: Path):
    trainer = make_trainer(tiny_config("train.epochs=1", "train.trackers=[]"), tmp_path)
    assert trainer.log.trackers == [] and trainer.log.writer is None
    trainer.fit()
    assert (tmp_path / "history.json").exists()
    assert not (tmp_path / "tensorboard").exists() and not (tmp_path / "mlruns").exists()


def test_auto_is_tensorboard_when_installed_and_nothing_otherwise(monkeypatch):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    assert tracker_names("auto") == ["tensorboard"]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    assert tracker_names("auto") == []


def test_names_are_a_list_or_auto_or_one_name():
    assert tracker_names(["mlflow", "tensorboard", "mlflow"]) == ["mlflow", "tensorboard"]
    assert tracker_names("mlflow") == ["mlflow"]  # --set train.trackers=mlflow
    assert tiny_config("train.trackers=[tensorboard, mlflow]").train.trackers == [
        "tensorboard",
        "mlflow",
    ]
    with pytest.raises(FcnsegError, match=r"'train.trackers' is 5; accepted: auto, or a list"):
        tracker_names(5)


def test_an_unknown_tracker_names_the_nearest_and_opens_nothing(tmp_path: Path):
    with pytest.raises(FcnsegError, match=r"unknown train.trackers name 'mlfow'.*'mlflow'"):
        open_trackers(["tensorboard", "mlfow"], tmp_path, "run", {})
    assert list(tmp_path.iterdir()) == []  # tensorboard, named first, was not opened


@pytest.mark.parametrize(
    ("name", "modules"),
    [("mlflow", ["mlflow", "mlflow.tracking"]), ("tensorboard", ["torch.utils.tensorboard"])],
)
def test_a_missing_package_names_the_extra(tmp_path: Path, monkeypatch, name, modules):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # importing it raises ImportError
    with pytest.raises(FcnsegError, match=rf"pip install -e '\.\[{name}\]'"):
        make_trainer(tiny_config(f"train.trackers=[{name}]"), tmp_path)


def test_config_params_are_dotted_keys_and_yaml_values():
    nested = {"name": "a", "train": {"lr": 0.003, "grad_clip": None}, "model": {"options": {}}}
    nested["data"] = {"crop_size": (8, 16), "augment": "light", "channels_last": True}
    assert config_params(nested) == {
        "name": "a",
        "train.lr": "0.003",
        "train.grad_clip": "null",
        "model.options": "{}",
        "data.crop_size": "[8, 16]",
        "data.augment": "light",
        "data.channels_last": "true",
    }


class FakeWriter:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def flush(self) -> None:
        self.calls.append("flush")

    def close(self) -> None:
        self.calls.append("close")


def test_a_writer_handed_in_is_flushed_not_closed_one_opened_is_closed():
    handed = FakeWriter()
    TensorBoardTracker(handed).close()
    owned = FakeWriter()
    TensorBoardTracker(owned, owns_writer=True).close()
    assert handed.calls == ["flush"] and owned.calls == ["close"]
