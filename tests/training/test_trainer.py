"""The Trainer: it learns, resumes exactly (in process and through the CLI), clips, runs in
bf16 and fp16, keeps its time budget, stops early, and logs to TensorBoard."""

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fcnseg.checkpoint import ModelSpec, load_checkpoint, save_checkpoint
from fcnseg.cli import main
from fcnseg.commands import seed_everything
from fcnseg.config import Config, load_config
from fcnseg.data import make_dataset, make_loader
from fcnseg.inference.predictor import Predictor
from fcnseg.losses import build_loss
from fcnseg.metrics.confusion import Scores
from fcnseg.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make_trainer(config: Config, run_dir: Path, init_seed: int = 0, width: int = 4) -> Trainer:
    seed_everything(init_seed)
    data = config.data
    train_set = make_dataset(data, "train", train=True, seed=config.train.seed)
    val_set = make_dataset(data, "val", train=False)
    spec = ModelSpec("unet", 4, 3, {"base_width": width})
    model = spec.build()
    return Trainer(
        config,
        model,
        make_loader(train_set, data.batch_size, True, config.train.seed),
        make_loader(val_set, data.batch_size, False),
        build_loss(config.loss, 4),
        run_dir,
        ["b", "c", "r", "t"],
        spec,
        show_progress=False,
        print_line=lambda line: None,
    )


def tiny_config(*overrides: str) -> Config:
    return load_config(
        None,
        [
            "data.synthetic_size=[33, 41]",
            "data.synthetic_train=8",
            "data.synthetic_val=2",
            "data.batch_size=4",
            "train.threads=1",
            *overrides,
        ],
    )


def test_overfits_one_small_batch(tmp_path: Path):
    config = tiny_config(
        "data.synthetic_train=2",
        "data.batch_size=2",
        "data.augment=none",
        "train.epochs=80",
        "train.lr=0.01",
        "train.schedule=constant",
        "train.warmup_fraction=0",
    )
    trainer = make_trainer(config, tmp_path, width=8)
    images, masks = next(iter(trainer.train_loader))
    for _ in range(config.train.epochs):  # the steps alone: fit() adds validation, checkpoints
        trainer.train_step(images, masks)
    assert trainer.step_losses[-1] < 0.1 * trainer.step_losses[0]
    accuracy = (Predictor(trainer.model).labels(images) == masks).float().mean()
    assert accuracy > 0.95


def test_validation_runs_the_network_at_the_inference_scale(tmp_path: Path):
    """A model trained on half-resolution images is validated on halved images, and scored on
    every pixel of the full-size masks."""
    config = tiny_config("data.inference_scale=0.5", "data.synthetic_size=[48, 64]")
    trainer = make_trainer(config, tmp_path)
    seen: list[tuple[int, ...]] = []
    hook = trainer.model.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape))
    scores = trainer.validate()
    hook.remove()
    assert seen and all(tuple(shape[-2:]) == (24, 32) for shape in seen)
    assert scores.num_pixels == 2 * 48 * 64


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_resumed_run_takes_the_same_steps_as_an_uninterrupted_one(tmp_path: Path, precision):
    config = tiny_config("train.epochs=3", "data.augment=light", f"train.precision={precision}")
    (tmp_path / "whole").mkdir()  # first: TensorBoard, when installed, makes its folder in it
    whole = make_trainer(config, tmp_path / "whole")
    whole.fit()
    assert len(whole.step_losses) == 6  # 3 epochs of 8 images in batches of 4

    (tmp_path / "parts").mkdir()
    first = make_trainer(config, tmp_path / "parts")
    first.fit(max_epochs=1)
    assert first.step_losses == whole.step_losses[:2]
    # A new process would start from a different random init: the checkpoint must override it.
    second = make_trainer(config, tmp_path / "parts", init_seed=123)
    second.resume(tmp_path / "parts" / "last.pt")
    second.fit()
    assert second.step_losses == whole.step_losses[2:]
    assert second.state.epoch == 3 and second.state.step == 6
    for a, b in zip(whole.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)
    saved = load_checkpoint(tmp_path / "parts" / "last.pt")
    assert ("scale" in saved["scaler"]) == (precision == "fp16")


def test_fp16_loss_scale_survives_a_resume(tmp_path: Path):
    config = tiny_config("train.epochs=2", "train.precision=fp16")
    first = make_trainer(config, tmp_path)
    first.fit(max_epochs=1)
    first.scaler.update(1024.0)  # as if overflowing gradients had halved it 6 times
    save_checkpoint(first.checkpoint_state(), tmp_path / "last.pt")
    second = make_trainer(config, tmp_path)
    second.resume(tmp_path / "last.pt")
    assert second.scaler.get_scale() == 1024.0


def test_cli_resume_after_an_interruption_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    """Ctrl-C in the middle of epoch 2 of 3, then `fcnseg train --resume RUN_DIR`."""
    small = ["--no-progress", "--set", "train.epochs=3", "--set", "train.threads=1"]
    small += ["--set", "model.options.base_width=4", "--set", "data.batch_size=4"]
    small += ["--set", "data.synthetic_train=8", "--set", "data.synthetic_val=2"]
    small += ["--set", "data.synthetic_size=[33, 41]"]
    assert main(["train", "demo", "--out", str(tmp_path / "whole"), *small]) == 0

    real_step, calls = Trainer.train_step, []

    def interrupted_step(self, image, mask):
        calls.append(1)
        if len(calls) == 4:  # the 2nd step of epoch 2: epoch 1 is saved, epoch 2 half done
            raise KeyboardInterrupt
        return real_step(self, image, mask)

    monkeypatch.setattr(Trainer, "train_step", interrupted_step)
    assert main(["train", "demo", "--out", str(tmp_path / "parts"), *small]) == 130
    assert load_checkpoint(tmp_path / "parts" / "last.pt")["epoch"] == 1
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert main(["train", "--resume", str(tmp_path / "parts"), "--no-progress"]) == 0

    def history(run: str) -> list[tuple]:
        entries = json.loads((tmp_path / run / "history.json").read_text())
        return [(e["epoch"], e["step"], e["lr"], e["train_loss"], e["val_miou"]) for e in entries]

    assert len(history("whole")) == 3
    assert history("parts") == history("whole")
    whole = load_checkpoint(tmp_path / "whole" / "last.pt")["state_dict"]
    parts = load_checkpoint(tmp_path / "parts" / "last.pt")["state_dict"]
    assert all(torch.equal(whole[key], parts[key]) for key in whole)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_gradient_clipping_bounds_the_step(tmp_path: Path, precision: str):
    """Plain SGD moves the weights by lr x gradient: a clipped step is exactly lr x clip long.

    In fp16 the clip must apply to the gradients after the loss scale is divided out.
    """
    config = tiny_config(
        f"train.precision={precision}",
        "train.optimizer=sgd",
        "train.momentum=0",
        "train.weight_decay=0",
        "train.schedule=constant",
        "train.warmup_fraction=0",
        "train.lr=0.5",
        "train.grad_clip=0.01",
    )
    trainer = make_trainer(config, tmp_path)
    image, mask = next(iter(trainer.train_loader))
    probe = copy.deepcopy(trainer.model)
    trainer.loss_fn(probe(image), mask).backward()
    gradient_norm = torch.cat([p.grad.flatten() for p in probe.parameters()]).norm()
    assert gradient_norm > 10 * 0.01  # so that the clip binds
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_step(image, mask)
    moved = torch.cat(
        [(p - b).flatten() for p, b in zip(trainer.model.parameters(), before, strict=True)]
    )
    assert moved.norm().item() == pytest.approx(0.5 * 0.01, rel=1e-3)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cpu(tmp_path: Path, precision: str):
    config = tiny_config("train.epochs=2", f"train.precision={precision}")
    trainer = make_trainer(config, tmp_path)
    with trainer.autocast():
        logits = trainer.model(next(iter(trainer.train_loader))[0])
    assert logits.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    trainer.fit()
    assert all(math.isfinite(loss) for loss in trainer.step_losses)
    assert trainer.step_losses[-1] < trainer.step_losses[0]


def test_unknown_precision_is_explained(tmp_path: Path):
    with pytest.raises(Exception, match="Did you mean 'bf16'"):
        make_trainer(tiny_config("train.precision=bf61"), tmp_path)


def test_time_budget_stops_training(tmp_path: Path):
    trainer = make_trainer(tiny_config("train.epochs=50", "train.max_minutes=0.0000001"), tmp_path)
    trainer.fit()
    assert trainer.state.step == 1 and trainer.state.epoch == 1  # one step, then out of time
    assert trainer.progress() == 1.0
    assert (tmp_path / "last.pt").is_file()


def test_early_stopping_counts_epochs_since_the_best(tmp_path: Path, monkeypatch):
    config = tiny_config("train.epochs=9", "train.early_stopping_patience=2")
    trainer = make_trainer(config, tmp_path)
    mious = iter([0.5, 0.6, 0.55, 0.58, 0.9, 0.95])  # best at epoch 2; 3 and 4 are worse
    monkeypatch.setattr(trainer, "train_one_epoch", lambda: {"loss": 1.0, "images_per_second": 1})
    monkeypatch.setattr(trainer, "validate", lambda: scores(next(mious)))
    trainer.fit()
    assert [entry["val_miou"] for entry in trainer.state.history] == [0.5, 0.6, 0.55, 0.58]
    assert trainer.state.best_epoch == 2
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 2


class FakeWriter:
    """Stands in for TensorBoard's SummaryWriter (tensorboard is an optional dependency)."""

    def __init__(self) -> None:
        self.scalars: dict[str, list[tuple[int, float]]] = {}
        self.images: list[tuple[str, np.ndarray, int]] = []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.setdefault(tag, []).append((step, value))

    def add_image(self, tag: str, image: np.ndarray, step: int, dataformats: str) -> None:
        assert dataformats == "HWC"
        self.images.append((tag, image, step))

    def flush(self) -> None:
        pass


def test_tensorboard_gets_scalars_and_overlays(tmp_path: Path):
    trainer = make_trainer(tiny_config("train.epochs=2"), tmp_path)
    trainer.log.writer = writer = FakeWriter()
    trainer.fit()
    assert [step for step, _ in writer.scalars["train/loss"]] == [2, 4]
    assert [value for _, value in writer.scalars["val/miou"]] == [
        entry["val_miou"] for entry in json.loads((tmp_path / "history.json").read_text())
    ]
    _, image, step = writer.images[-1]
    # 2 val images of 33 x 41, each as image | truth overlay | prediction overlay.
    assert step == 4 and image.shape == (2 * 33, 3 * 41, 3) and image.dtype == np.uint8


def test_real_tensorboard_writes_event_files(tmp_path: Path):
    pytest.importorskip("tensorboard")
    trainer = make_trainer(tiny_config("train.epochs=1"), tmp_path)
    trainer.fit()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def scores(miou: float) -> Scores:
    return Scores((miou,), (miou,), miou, miou, miou, 1)
