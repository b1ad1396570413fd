"""What the progress bar and the epoch lines say: under a time budget they follow the budget
(the run's share of it, the time left in it) and not the epoch count, which is then a ceiling."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcnseg.training.log import StepReport, TrainingLog, clock
from tests.training.test_trainer import make_trainer, tiny_config


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, ""), (0, "0:00"), (59.9, "0:59"), (61, "1:01"), (3725, "1:02:05")]
)
def test_clock(seconds, text):
    assert clock(seconds) == text


def test_under_a_budget_the_bar_shows_the_budget_left_not_the_epochs(tmp_path: Path):
    trainer = make_trainer(tiny_config("train.max_minutes=20", "train.epochs=500"), tmp_path)
    trainer.state.elapsed_seconds = 13 * 60  # 13 of 20 minutes spent
    trainer.state.step = 2  # of 500 epochs x 2 steps: far behind the clock
    report = trainer._step_report(loss=0.5, images_per_second=10.0)
    assert report.seconds_left == pytest.approx(7 * 60)
    assert report.run_progress == pytest.approx(13 / 20)  # the budget, not 2 / 1000 steps
    assert report.lr == trainer.optimizer.param_groups[0]["lr"]
    assert trainer._epoch_label() == "epoch 1 of a 20-minute budget"


def test_without_a_budget_the_bar_counts_epochs_and_steps(tmp_path: Path):
    trainer = make_trainer(tiny_config("train.epochs=3"), tmp_path)
    assert trainer._epoch_label() == "epoch 1/3"
    assert trainer._step_report(0.5, 10.0).seconds_left is None


def test_the_epoch_line_names_the_epoch_count_only_when_it_is_the_plan(tmp_path: Path):
    lines: list[str] = []
    log = TrainingLog(tmp_path, show_progress=False, print_line=lines.append, writer=None)
    log.writer = None
    entry = {
        "epoch": 15,
        "step": 30,
        "lr": 1e-3,
        "train_loss": 0.25,
        "images_per_second": 9.5,
        "val_miou": 0.5,
        "val_pixel_accuracy": 0.9,
    }
    log.epoch_end([entry], 500, False, lambda: [])
    log.epoch_end([entry], None, True, lambda: [])
    assert lines[0].startswith("epoch  15/500  loss 0.2500")
    assert lines[1].startswith("epoch  15  loss 0.2500") and lines[1].endswith("(best)")
    assert "lr 1.00e-03" in lines[0]


def test_the_bar_takes_step_reports_with_and_without_a_budget(tmp_path: Path):
    log = TrainingLog(tmp_path, show_progress=True, print_line=lambda line: None, writer=None)
    for budget in (None, 20.0):
        with log.epoch_bar("epoch 1", 4, budget) as advance:
            advance(StepReport(0.5, 10.0, 1e-3, 0.25, None if budget is None else 300.0))


def test_each_epoch_records_the_validation_loss_of_the_training_loss_function(tmp_path: Path):
    import json

    import torch

    trainer = make_trainer(tiny_config("train.epochs=1"), tmp_path)
    trainer.fit()
    entry = json.loads((tmp_path / "history.json").read_text())[-1]
    # The same loss on the same val images, computed here by hand through the Predictor.
    predictor = trainer.predictor()
    total = count = 0
    with torch.no_grad():
        for images, masks in trainer.val_loader:
            total += float(trainer.loss_fn(predictor.logits(images), masks)) * len(images)
            count += len(images)
    assert entry["val_loss"] == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("shown", [True, False])
def test_the_validation_bar_passes_every_batch_through_in_order(tmp_path: Path, shown: bool):
    log = TrainingLog(tmp_path, show_progress=shown, print_line=lambda line: None, writer=None)
    batches = [("image", index) for index in range(5)]
    assert list(log.validation_bar(iter(batches), len(batches))) == batches
