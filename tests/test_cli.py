"""The command line end to end: the demo on a small budget, evaluate, predict, and bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnseg.cli import main

SMALL = [
    "--no-progress",
    "--set",
    "data.synthetic_train=8",
    "--set",
    "data.synthetic_val=3",
    "--set",
    "data.synthetic_size=[45, 61]",
    "--set",
    "train.epochs=2",
    "--set",
    "model.options.base_width=4",
    "--set",
    "data.batch_size=4",
]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "demo"
    assert main(["demo", "--out", str(out), *SMALL]) == 0
    return out


def test_demo_writes_a_complete_run(demo_run: Path, capsys: pytest.CaptureFixture):
    for name in (
        "config.yaml",
        "metrics.json",
        "history.json",
        "best.pt",
        "last.pt",
        "curves.png",
        "samples.png",
        "report.md",
    ):
        assert (demo_run / name).is_file(), name
    metrics = json.loads((demo_run / "metrics.json").read_text())
    assert {"miou", "pixel_accuracy", "per_class_iou", "dice"} <= set(metrics)
    assert len(metrics["per_class_iou"]) == 4
    history = json.loads((demo_run / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2]
    report = (demo_run / "report.md").read_text()
    assert "![training curves](curves.png)" in report and "![samples](samples.png)" in report
    assert "| mIoU |" in report


def test_evaluate_reproduces_the_runs_metrics(demo_run: Path, tmp_path: Path):
    out = tmp_path / "evaluation"
    code = main(
        ["evaluate", str(demo_run / "best.pt"), "--data", str(demo_run / "data"), "--out", str(out)]
    )
    assert code == 0
    evaluated = json.loads((out / "metrics.json").read_text())
    trained = json.loads((demo_run / "metrics.json").read_text())
    assert evaluated["miou"] == pytest.approx(trained["miou"])


def test_evaluate_and_predict_with_a_dense_crf(demo_run: Path, tmp_path: Path, capsys):
    checkpoint, data = str(demo_run / "best.pt"), str(demo_run / "data")
    out = tmp_path / "evaluation-crf"
    crf = ["--crf-set", "iterations=2", "--crf-set", "window=5"]  # --crf-set implies --crf
    assert main(["evaluate", checkpoint, "--data", data, "--out", str(out), *crf]) == 0
    assert "dense CRF**: CRFParameters(iterations=2" in (out / "report.md").read_text()
    images = demo_run / "data" / "val" / "images"
    predicted = tmp_path / "predictions-crf"
    argv = ["predict", checkpoint, str(images), "--out", str(predicted), "--crf", "--no-progress"]
    assert main([*argv, "--backend", "torch", "--mode", "tiled", "--tile-size", "32"]) == 0
    assert len(list(predicted.glob("*_overlay.png"))) == len(list(images.iterdir()))
    _fails_cleanly(
        ["evaluate", checkpoint, "--data", data, "--crf-set", "window=4"],
        capsys,
        "CRF setting 'window' (config key inference.crf.window",
    )


def test_predict_writes_palette_masks_and_overlays(demo_run: Path, tmp_path: Path):
    images = demo_run / "data" / "val" / "images"
    out = tmp_path / "predictions"
    assert main(["predict", str(demo_run / "best.pt"), str(images), "--out", str(out)]) == 0
    for image in images.iterdir():
        mask = Image.open(out / f"{image.stem}.png")
        assert mask.mode == "P" and mask.size == Image.open(image).size
        assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 1, 2, 3}
        assert (out / f"{image.stem}_overlay.png").is_file()


def test_predict_keeps_going_past_a_broken_image(demo_run: Path, tmp_path: Path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(inputs / "good.png")
    (inputs / "broken.png").write_bytes(b"\x89PNG truncated")
    code = main(["predict", str(demo_run / "best.pt"), str(inputs), "--out", str(tmp_path / "o")])
    assert code == 1
    assert "broken.png" in capsys.readouterr().err
    assert (tmp_path / "o" / "good.png").is_file()


def _fails_cleanly(argv: list[str], capsys: pytest.CaptureFixture, message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err, err


def test_user_errors_are_one_sentence(demo_run: Path, tmp_path: Path, capsys):
    _fails_cleanly(
        ["train", "demo", "--set", "model.name=unte", "--out", str(tmp_path / "a"), *SMALL],
        capsys,
        "Did you mean 'unet'?",
    )
    _fails_cleanly(
        ["train", "demo", "--set", "train.epoch=3", "--out", str(tmp_path / "b")],
        capsys,
        "unknown config key 'train.epoch'",
    )
    _fails_cleanly(
        [
            "train",
            "demo",
            "--set",
            "data.kind=folder",
            "--set",
            f"data.root={tmp_path / 'none'}",
            "--out",
            str(tmp_path / "c"),
        ],
        capsys,
        "does not exist",
    )
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a checkpoint")
    _fails_cleanly(
        ["evaluate", str(garbage), "--data", str(demo_run / "data")],
        capsys,
        "is not an fcnseg checkpoint",
    )
    _fails_cleanly(
        [
            "predict",
            str(demo_run / "best.pt"),
            str(demo_run / "data" / "val" / "images"),
            "--out",
            str(demo_run / "data" / "val" / "images"),
        ],
        capsys,
        "holds the input images",
    )


def test_existing_folders_are_never_overwritten_by_accident(tmp_path: Path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    _fails_cleanly(["demo", "--out", str(precious), *SMALL], capsys, "already exists")
    _fails_cleanly(
        ["demo", "--out", str(precious), "--overwrite", *SMALL], capsys, "not an fcnseg run folder"
    )
    assert (precious / "thesis.txt").read_text() == "years of work"


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "unet" in listing
    lines = {line.split()[0]: line for line in listing.splitlines()}
    assert "crf=None" in lines["unet"] and "crf=" not in lines["fcis"]  # semantic models only
