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

import fcnseg
from fcnseg.checkpoint import load_checkpoint
from fcnseg.cli import main
from fcnseg.config import load_config
from fcnseg.data.instances import generate_instances, read_id_map
from fcnseg.data.instances.rle import encode_counts
from fcnseg.inference.instances import ExportedInstanceModel
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


def test_an_exported_instance_model_predicts_what_pytorch_predicts(
    demo_run: Path, tmp_path: Path, capsys
):
    pytest.importorskip("onnxruntime", reason="the export extra: pip install 'fcnseg[export]'")
    checkpoint, exported = str(demo_run / "best.pt"), tmp_path / "shapes.onnx"
    images = demo_run / "data" / "val" / "images"
    argv = ["predict", checkpoint, str(images)]
    assert main([*argv, "--out", str(tmp_path / "o"), "--backend", "onnx"]) == 2
    assert "fcnseg export" in capsys.readouterr().err  # no export beside it yet
    int8 = ["--int8", "--calibrate", str(images)]
    assert main(["export", checkpoint, "--out", str(tmp_path / "q.onnx"), *int8]) == 2
    assert "semantic models only" in capsys.readouterr().err
    assert main(["export", checkpoint, "--out", str(exported)]) == 0
    assert "sign agreement" in capsys.readouterr().out  # the raw maps were checked

    from_torch, from_onnx = fcnseg.load(checkpoint, device="cpu"), fcnseg.load(exported)
    assert isinstance(from_onnx.model, ExportedInstanceModel)
    assert from_onnx.model.runner.output_names == ["scores", "objectness", "semantic"]
    assert from_onnx.class_names == from_torch.class_names
    for path in sorted(images.iterdir()):
        image = np.asarray(Image.open(path).convert("RGB"))
        expected, actual = from_torch.predict_image(image), from_onnx.predict_image(image)
        assert len(actual) == len(expected) > 0
        assert torch.equal(actual.classes, expected.classes)
        assert torch.allclose(actual.scores, expected.scores, atol=1e-4)
        differing = (actual.masks != expected.masks).sum() / max(int(expected.masks.sum()), 1)
        assert differing < 1e-3  # float rounding may move a pixel on the 0.5 contour

    for flags, out in ((["--onnx", str(exported)], "by-onnx"), ([], "by-torch")):
        assert main([*argv, "--out", str(tmp_path / out), *flags]) == 0
    assert "backend: onnxruntime" in capsys.readouterr().out
    for path in sorted(images.iterdir()):
        by_onnx = read_id_map(tmp_path / "by-onnx" / f"{path.stem}.png")
        by_torch = read_id_map(tmp_path / "by-torch" / f"{path.stem}.png")
        assert (by_onnx != by_torch).mean() < 1e-3


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


def test_inspect_gives_the_instance_statistics(
    demo_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    out = tmp_path / "inspect"
    argv = ["inspect", str(demo_run / "data"), "--set", "task=instance", "--out", str(out)]
    assert main(argv) == 0
    report = capsys.readouterr().out
    assert "train: 8 images" in report and "val: 4 images" in report
    assert "touching pairs" in report and str(out / "instance_sizes.png") in report
    summary = json.loads((out / "inspect.json").read_text())
    train = summary["splits"][0]
    assert summary["task"] == "instance" and train["split"] == "train" and train["images"] == 8
    ids = [read_id_map(path) for path in sorted((demo_run / "data/train/masks").iterdir())]
    areas = [int((map_ == i).sum()) for map_ in ids for i in np.unique(map_) if i]
    assert train["instances"] == len(areas) and train["area_pixels"]["max"] == max(areas)
    assert sum(train["sizes"].values()) == len(areas)
    assert (out / "instance_sizes.png").stat().st_size > 0
    assert main(argv) == 2  # the folder is there now: refused without --overwrite
    assert main([*argv, "--overwrite"]) == 0


def test_the_packaged_recipe_trains_on_shapes_made_on_the_fly(tmp_path: Path):
    out = tmp_path / "recipe"
    tiny = ["data.synthetic_train=4", "data.synthetic_val=2", "data.synthetic_size=[48, 64]"]
    tiny += ["data.batch_size=4", "train.epochs=1", "train.threads=1", "model.options.width=16"]
    argv = ["train", "demo_instance", "--out", str(out), "--no-progress"]
    assert main(argv + [argument for item in tiny for argument in ("--set", item)]) == 0
    assert load_config(out / "config.yaml").data.kind == "synthetic"
    assert load_checkpoint(out / "best.pt")["task"] == "instance"
    check_metrics(json.loads((out / "metrics.json").read_text()))


def write_shapes_as_coco(root: Path, split: str, seed: int, count: int) -> None:
    """Generated scenes as a COCO dataset: <split>/images/*.png and annotations/<split>.json
    with one uncompressed RLE per instance (categories 1..3: circle, rectangle, triangle)."""
    (root / split / "images").mkdir(parents=True)
    (root / "annotations").mkdir(exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        sample = generate_instances(seed, index, (48, 64))
        name = f"scene{index}.png"
        Image.fromarray(sample.image).save(root / split / "images" / name)
        images.append({"id": index + 1, "file_name": name, "height": 48, "width": 64})
        for instance in range(1, len(sample.classes)):
            mask = sample.ids == instance
            rle = {"counts": encode_counts(mask), "size": [48, 64]}
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": int(sample.classes[instance]),
                    "iscrowd": 0,
                    "segmentation": rle,
                    "area": int(mask.sum()),
                }
            )
    categories = [
        {"id": i + 1, "name": n} for i, n in enumerate(["circle", "rectangle", "triangle"])
    ]
    document = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / f"{split}.json").write_text(json.dumps(document))


def test_a_model_trained_on_coco_files_is_evaluated_on_them(tmp_path: Path):
    root, run = tmp_path / "coco", tmp_path / "run"
    write_shapes_as_coco(root, "train", 5, 6)
    write_shapes_as_coco(root, "val", 6, 3)
    tiny = ["data.kind=coco", f"data.root={root}", "data.batch_size=3", "train.epochs=1"]
    tiny += ["train.threads=1", "model.options.width=16", "model.options.window_sizes=[16, 24]"]
    argv = ["train", "demo_instance", "--out", str(run), "--no-progress"]
    assert main(argv + [argument for item in tiny for argument in ("--set", item)]) == 0
    best = load_checkpoint(run / "best.pt")
    assert best["config"]["data"]["kind"] == "coco"
    assert best["class_names"] == ["background", "circle", "rectangle", "triangle"]
    trained = json.loads((run / "metrics.json").read_text())
    out = tmp_path / "evaluation"
    argv = ["evaluate", str(run / "best.pt"), "--data", str(root), "--split", "val"]
    assert main([*argv, "--out", str(out)]) == 0
    evaluated = json.loads((out / "metrics.json").read_text())
    assert evaluated["num_images"] == 3
    for key in FIGURES:
        assert evaluated[key] == pytest.approx(trained[key]), key
