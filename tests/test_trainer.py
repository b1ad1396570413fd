from pathlib import Path

import torch

from fcnseg.commands import seed_everything
from fcnseg.config import Config, load_config
from fcnseg.data import make_dataset, make_loader
from fcnseg.losses import build_loss
from fcnseg.models import build_model
from fcnseg.predict import Predictor
from fcnseg.trainer import Trainer


def make_trainer(config: Config, run_dir: Path, init_seed: int = 0, width: int = 4) -> Trainer:
    seed_everything(init_seed)
    data = config.data
    train_set = make_dataset(data, "train", train=True, seed=config.train.seed)
    val_set = make_dataset(data, "val", train=False)
    spec = {"name": "unet", "num_classes": 4, "in_channels": 3, "options": {"base_width": width}}
    model = build_model("unet", 4, base_width=width)
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
        log=lambda message: None,
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
        "train.epochs=60",
        "train.lr=0.01",
        "train.schedule=constant",
        "train.warmup_fraction=0",
    )
    trainer = make_trainer(config, tmp_path, width=8)
    trainer.fit()
    assert trainer.step_losses[-1] < 0.1 * trainer.step_losses[0]
    images, masks = next(iter(trainer.train_loader))
    accuracy = (Predictor(trainer.model).labels(images) == masks).float().mean()
    assert accuracy > 0.9


def test_resumed_run_takes_the_same_steps_as_an_uninterrupted_one(tmp_path: Path):
    config = tiny_config("train.epochs=3", "data.augment=light")
    whole = make_trainer(config, tmp_path / "whole")
    (tmp_path / "whole").mkdir()
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


def test_weight_decay_skips_norms_and_biases(tmp_path: Path):
    trainer = make_trainer(tiny_config(), tmp_path)
    decayed, plain = trainer.optimizer.param_groups
    assert decayed["weight_decay"] > 0 and plain["weight_decay"] == 0
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
