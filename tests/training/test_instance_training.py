"""The Trainer on the instance task: the model's own loss, validation by mask AP, best.pt by val
AP (NaN ranking last), and mixed precision with the loss in fp32."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from fcnseg.checkpoint import ModelSpec, load_checkpoint
from fcnseg.commands import seed_everything
from fcnseg.config import Config, load_config
from fcnseg.data import make_loader
from fcnseg.data.instances import make_instance_dataset
from fcnseg.inference.instances import evaluation_max_detections
from fcnseg.metrics.instances import InstanceEvaluator, InstanceScores
from fcnseg.training.tasks import InstanceTask, instance_loss
from fcnseg.training.trainer import Trainer, in_fp32

NAMES = ["background", "circle", "rectangle", "triangle"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_config(*overrides: str) -> Config:
    return load_config(
        None,
        [
            "task=instance",
            "model.name=instancefcn",
            "data.synthetic_size=[48, 64]",
            "data.synthetic_train=4",
            "data.synthetic_val=2",
            "data.batch_size=4",
            "train.epochs=1",
            "train.threads=1",
            *overrides,
        ],
    )


def make_trainer(config: Config, run_dir: Path, lines: list[str] | None = None) -> Trainer:
    seed_everything(0)
    data = config.data
    train_set = make_instance_dataset(data, "train", train=True, seed=config.train.seed)
    val_set = make_instance_dataset(data, "val", train=False)
    spec = ModelSpec("instancefcn", 4, 3, {"width": 16, "window_sizes": [16, 24, 40]})
    model = spec.build()
    return Trainer(
        config,
        model,
        make_loader(train_set, data.batch_size, True, config.train.seed),
        DataLoader(val_set, batch_size=data.batch_size),
        instance_loss(model, data.ignore_index),
        run_dir,
        NAMES,
        spec,
        show_progress=False,
        print_line=(lambda line: None) if lines is None else lines.append,
        task=InstanceTask(),
    )


def test_an_epoch_trains_validates_by_ap_and_saves_an_instance_checkpoint(tmp_path: Path):
    lines: list[str] = []
    trainer = make_trainer(tiny_config(), tmp_path, lines)
    trainer.fit()
    assert len(trainer.step_losses) == 1 and math.isfinite(trainer.step_losses[0])
    (entry,) = trainer.state.history
    assert {"val_ap", "val_ap50", "val_dsb_score"} <= set(entry) and "val_miou" not in entry
    assert 0.0 <= entry["val_ap"] <= 1.0 and 0.0 <= entry["val_dsb_score"] <= 1.0
    assert "val AP" in lines[-1] and "(best)" in lines[-1]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["task"] == "instance" and best["config"]["task"] == "instance"
    assert best["best_ap"] == entry["val_ap"] and best["best_miou"] == -math.inf
    assert best["class_names"] == NAMES and len(best["palette"]) == 4


def test_val_images_limits_each_epochs_check_to_the_first_images(tmp_path: Path):
    """With train.val_images 1, validation scores exactly what the first val image alone gives."""
    trainer = make_trainer(tiny_config("data.synthetic_val=3", "train.val_images=1"), tmp_path)
    limited = trainer.validate()
    assert limited.num_images == 1
    trainer.config.train.val_images = None
    assert trainer.validate().num_images == 3
    first = trainer.val_loader.dataset[0]
    predictor = InstanceTask().predictor(trainer)
    evaluator = InstanceEvaluator(evaluation_max_detections(trainer.model))
    alone = predictor.evaluate([(first[0][None], first[1][None])], evaluator).compute()
    assert alone.per_image_dsb == limited.per_image_dsb and alone.ar == limited.ar


def instance_scores(ap: float) -> InstanceScores:
    nan = math.nan
    return InstanceScores(ap, ap, ap, nan, nan, nan, ap, ap, {}, (), (), (), (), 100, 2)


def test_best_pt_follows_val_ap_and_a_nan_ranks_last(tmp_path: Path, monkeypatch):
    trainer = make_trainer(tiny_config("train.epochs=4"), tmp_path)
    aps = iter([math.nan, 0.2, 0.1, math.nan])
    monkeypatch.setattr(trainer, "train_one_epoch", lambda: {"loss": 1.0, "images_per_second": 1})
    monkeypatch.setattr(trainer, "validate", lambda: instance_scores(next(aps)))
    trainer.fit()
    # epoch 1: no AP (no true instance) still beats nothing, so best.pt exists from the start
    assert trainer.state.best_epoch == 2 and trainer.state.best_ap == 0.2
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 2


def test_instance_loss_is_the_models_total(tmp_path: Path):
    trainer = make_trainer(tiny_config(), tmp_path)
    images, targets = next(iter(trainer.train_loader))
    outputs = trainer.model(images)
    torch.manual_seed(1)  # window sampling is random
    total = trainer.loss_fn(outputs, targets)
    torch.manual_seed(1)
    expected, parts = trainer.model.loss(outputs, targets, 255)
    assert torch.equal(total, expected) and {"objectness", "mask", "semantic"} == set(parts)


def test_bf16_autocast_trains_with_the_loss_in_fp32(tmp_path: Path):
    trainer = make_trainer(tiny_config("train.precision=bf16"), tmp_path)
    images, targets = next(iter(trainer.train_loader))
    with trainer.autocast():
        outputs = trainer.network(images)
    assert outputs["scores"].dtype == torch.bfloat16
    assert all(value.dtype == torch.float32 for value in in_fp32(outputs).values())
    assert math.isfinite(trainer.train_step(images, targets))
