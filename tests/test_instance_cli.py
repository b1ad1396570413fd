"""`task: instance` end to end through the command line, on a tiny run (seconds): the instance
demo trains on the shapes it writes, evaluate reproduces its metrics, predict writes ID maps that
agree with their JSON, resume continues exactly, and models of the other task are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnseg.checkpoint import load_checkpoint
from fcnseg.cli import main
from fcnseg.config import load_config
from fcnseg.data.instances import generate_instances, read_id_map
from fcnseg.training.trainer import Trainer

TINY = [
    "data.synthetic_train=8",
    "data.synthetic_val=4",
    "data.synthetic_size=[64, 80]",
    "data.batch_size=4",
    "train.epochs=2",
    "train.threads=1",
    "train.seed=3",
    "model.options.width=16",
    "model.options.window_sizes=[16, 24, 40]",
]
SETS = [argument for item in TINY for argument in ("--set", item)]
FIGURES = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar", "dsb_score")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("instance-cli") / "demo"
    assert main(["demo", "--task", "instance", "--out", str(out), "--no-progress", *SETS]) == 0
    return out


def check_metrics(metrics: dict) -> None:
    assert set(FIGURES) <= set(metrics)
    assert metrics["ap"] is not None and metrics["dsb_score"] is not None
    for key in FIGURES:
        assert metrics[key] is None or 0.0 <= metrics[key] <= 1.0, key
    assert set(metrics["per_class_ap"]) <= {"circle", "rectangle", "triangle"}
    assert len(metrics["precision_recall"]["precision_iou50"]) == 101


def test_the_instance_demo_trains_on_the_shapes_it_wrote(demo_run: Path):
    config = load_config(demo_run / "config.yaml")
    assert config.task == "instance" and config.model.name == "instancefcn"
    assert config.data.kind == "folder" and Path(config.data.root) == demo_run / "data"
    names = sorted((demo_run / "data" / "train" / "images").iterdir())
    assert len(names) == 8 and len(list((demo_run / "data" / "val" / "masks").iterdir())) == 4
    sample = generate_instances(3, 0, (64, 80))  # train.seed 3, the first split
    assert np.array_equal(np.asarray(Image.open(names[0])), sample.image)
    assert np.array_equal(
        read_id_map(demo_run / "data" / "train" / "masks" / names[0].name), sample.ids
    )
    best = load_checkpoint(demo_run / "best.pt")
    assert best["task"] == "instance" and best["model"]["name"] == "instancefcn"
    assert best["class_names"] == ["background", "circle", "rectangle", "triangle"]
    assert len(best["palette"]) == 4
    history = json.loads((demo_run / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2]
    assert all({"val_ap", "val_ap50", "val_dsb_score"} <= set(entry) for entry in history)
    assert "val_miou" not in history[0]
    assert best["best_ap"] == max(entry["val_ap"] for entry in history)
    check_metrics(json.loads((demo_run / "metrics.json").read_text()))
    for name in ("report.md", "report.html", "pr_curves.png", "curves.png", "gallery.png"):
        assert (demo_run / name).is_file(), name
    report = (demo_run / "report.md").read_text()
    assert "| AP (IoU 0.50:0.95) |" in report and "![gallery](gallery.png)" in report


def test_evaluate_reproduces_the_runs_instance_metrics(demo_run: Path, tmp_path: Path):
    out = tmp_path / "evaluation"
    data = str(demo_run / "data")
    assert main(["evaluate", str(demo_run / "best.pt"), "--data", data, "--out", str(out)]) == 0
    evaluated = json.loads((out / "metrics.json").read_text())
    check_metrics(evaluated)
    trained = json.loads((demo_run / "metrics.json").read_text())
    for key in FIGURES:
        assert evaluated[key] == pytest.approx(trained[key]), key
    assert len(evaluated["per_image_dsb"]) == 4 and (out / "report.html").is_file()


def test_predict_writes_id_maps_that_agree_with_their_json(demo_run: Path, tmp_path: Path):
    images = demo_run / "data" / "val" / "images"
    out = tmp_path / "predictions"
    assert main(["predict", str(demo_run / "best.pt"), str(images), "--out", str(out)]) == 0
    for image in sorted(images.iterdir()):
        with Image.open(out / f"{image.stem}.png") as png:
            assert png.mode.startswith("I") and png.size == (80, 64)  # 16-bit, the image's size
        ids = read_id_map(out / f"{image.stem}.png")
        records = json.loads((out / f"{image.stem}.json").read_text())["instances"]
        present = sorted(int(i) for i in np.unique(ids) if i)
        assert [record["id"] for record in records] == present == list(range(1, len(present) + 1))
        for record in records:
            rows, columns = np.nonzero(ids == record["id"])
            assert record["area"] == len(rows)
            assert record["box"] == [columns.min(), rows.min(), columns.max() + 1, rows.max() + 1]
            assert (
                record["class_name"]
                == ["background", "circle", "rectangle", "triangle"][record["class"]]
            )
            assert 0.0 <= record["score"] <= 1.0
        scores = [record["score"] for record in records]
        assert scores == sorted(scores, reverse=True)  # ID 1 is the best
        assert (out / f"{image.stem}_overlay.png").is_file()


def test_instance_checkpoints_refuse_onnx(demo_run: Path, tmp_path: Path, capsys):
    images = str(demo_run / "data" / "val" / "images")
    argv = ["predict", str(demo_run / "best.pt"), images, "--out", str(tmp_path / "o")]
    assert main([*argv, "--backend", "onnx"]) == 2
    assert "drop --backend onnx" in capsys.readouterr().err
    assert main(["export", str(demo_run / "best.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    error = capsys.readouterr().err
    assert "does not export instance models yet" in error and "fcnseg predict" in error
    assert not (tmp_path / "m.onnx").exists()


def test_resume_after_an_interruption_matches_the_uninterrupted_run(
    demo_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The demo's own config, stopped by Ctrl-C in epoch 2, then `fcnseg train --resume`."""
    real_step, calls = Trainer.train_step, []

    def interrupted_step(self: Trainer, image: torch.Tensor, target: torch.Tensor) -> float:
        calls.append(1)
        if len(calls) == 3:  # 2 steps per epoch: epoch 1 is saved, epoch 2 has begun
            raise KeyboardInterrupt
        return real_step(self, image, target)

    monkeypatch.setattr(Trainer, "train_step", interrupted_step)
    parts = tmp_path / "parts"
    argv = ["train", str(demo_run / "config.yaml"), "--out", str(parts), "--no-progress"]
    assert main(argv) == 130
    assert load_checkpoint(parts / "last.pt")["epoch"] == 1
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert main(["train", "--resume", str(parts), "--no-progress"]) == 0

    def history(run: Path) -> list[tuple]:
        entries = json.loads((run / "history.json").read_text())
        keys = ("epoch", "step", "lr", "train_loss", "val_ap", "val_dsb_score")
        return [tuple(entry[key] for key in keys) for entry in entries]

    assert history(parts) == history(demo_run)
    assert (parts / "report.html").is_file()


@pytest.mark.parametrize(
    ("recipe", "task", "message"),
    [
        ("demo", "instance", "model.name 'unet' is a semantic model"),
        ("demo_instance", "semantic", "model.name 'instancefcn' is an instance model"),
    ],
)
def test_a_model_of_the_other_task_is_refused_before_anything_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture, recipe: str, task: str, message: str
):
    out = tmp_path / "run"
    argv = ["train", recipe, "--set", f"task={task}", "--out", str(out)]
    argv += ["--set", "data.kind=folder", "--set", f"data.root={tmp_path / 'nothing'}"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not out.exists()  # refused before the run folder, and before the (absent) data


def test_inspect_gives_the_instance_statistics(demo_run: Path, capsys: pytest.CaptureFixture):
    assert main(["inspect", str(demo_run / "data"), "--set", "task=instance"]) == 0
    report = capsys.readouterr().out
    assert "train: 8 images" in report and "val: 4 images" in report
    assert "touching pairs" in report


def test_the_packaged_recipe_trains_on_shapes_made_on_the_fly(tmp_path: Path):
    out = tmp_path / "recipe"
    tiny = ["data.synthetic_train=4", "data.synthetic_val=2", "data.synthetic_size=[48, 64]"]
    tiny += ["data.batch_size=4", "train.epochs=1", "train.threads=1", "model.options.width=16"]
    argv = ["train", "demo_instance", "--out", str(out), "--no-progress"]
    assert main(argv + [argument for item in tiny for argument in ("--set", item)]) == 0
    assert load_config(out / "config.yaml").data.kind == "synthetic"
    assert load_checkpoint(out / "best.pt")["task"] == "instance"
    check_metrics(json.loads((out / "metrics.json").read_text()))
