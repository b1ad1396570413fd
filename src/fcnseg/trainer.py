"""The Trainer: epochs of optimisation, validation after each, checkpoints, a history file.

    for each epoch (until the epochs or the time budget run out):
        train_one_epoch   set the learning rate for the step's progress, forward, loss, backward
        validate          the Predictor over the val loader into a confusion matrix
        checkpoint        last.pt always; best.pt when val mIoU improves; history.json

Resuming loads last.pt: weights, optimizer, step, epoch, elapsed time and RNG states. The data
order and the augmentation depend only on (seed, epoch), so the resumed run takes exactly the
steps the uninterrupted one would have (tested).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader

from fcnseg.checkpoint import load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from fcnseg.config import Config
from fcnseg.metrics import ConfusionMatrix, Scores
from fcnseg.optim import build_optimizer, learning_rate
from fcnseg.predict import Predictor


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    elapsed_seconds: float = 0.0  # training time, summed over resumed sessions
    best_miou: float = -math.inf
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        config: Config,
        model: nn.Module,
        train_loader: DataLoader,
        val_loader: DataLoader,
        loss_fn: nn.Module,
        run_dir: Path,
        class_names: list[str],
        model_spec: dict[str, Any],
        device: torch.device | str = "cpu",
        show_progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        self.config, self.run_dir, self.class_names = config, Path(run_dir), class_names
        self.device = torch.device(device)
        self.memory_format = (
            torch.channels_last if config.train.channels_last else torch.contiguous_format
        )
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.loss_fn = loss_fn.to(self.device)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.optimizer = build_optimizer(self.model, config.train)
        self.model_spec = model_spec  # {name, num_classes, in_channels, options}: rebuilds it
        self.state = TrainState()
        self.step_losses: list[float] = []  # every step's loss in this session, for inspection
        self.show_progress, self.log = show_progress, log

    @property
    def planned_steps(self) -> int:
        return self.config.train.epochs * len(self.train_loader)

    def progress(self) -> float:
        """Training progress in [0, 1]: the further along of the step plan and the time budget."""
        by_steps = self.state.step / max(self.planned_steps, 1)
        budget = self.config.train.max_minutes
        by_time = self.state.elapsed_seconds / (budget * 60) if budget else 0.0
        return min(max(by_steps, by_time), 1.0)

    def out_of_time(self) -> bool:
        budget = self.config.train.max_minutes
        return budget is not None and self.state.elapsed_seconds >= budget * 60

    def fit(self, max_epochs: int | None = None) -> TrainState:
        """Train until the planned epochs or the time budget are used up.

        `max_epochs` stops this call after that many more epochs (the plan, and so the learning
        rate schedule, stays that of the config): a run can be interrupted and resumed exactly.
        """
        epochs = self.config.train.epochs
        if max_epochs is not None:
            epochs = min(epochs, self.state.epoch + max_epochs)
        while self.state.epoch < epochs and not self.out_of_time():
            train_stats = self.train_one_epoch()
            scores = self.validate()
            self.state.epoch += 1
            self._record(train_stats, scores)
        return self.state

    def train_one_epoch(self) -> dict[str, float]:
        """One pass over the training loader (cut short if the time budget runs out)."""
        self.model.train()
        self.train_loader.sampler.set_epoch(self.state.epoch)
        self.train_loader.dataset.set_epoch(self.state.epoch)
        total_loss, images, started = 0.0, 0, time.perf_counter()
        with self._progress_bar() as bar:
            task = bar.add_task(
                self._epoch_label(), total=len(self.train_loader), loss=0.0, ips=0.0
            )
            for image, mask in self.train_loader:
                step_started = time.perf_counter()
                image = image.to(self.device, memory_format=self.memory_format)
                loss = self.train_step(image, mask.to(self.device))
                self.state.elapsed_seconds += time.perf_counter() - step_started
                total_loss, images = total_loss + loss * len(image), images + len(image)
                seconds = time.perf_counter() - started
                bar.update(task, advance=1, loss=loss, ips=images / seconds)
                if self.out_of_time():
                    break
        return {"loss": total_loss / max(images, 1), "images_per_second": images / seconds}

    def train_step(self, image: torch.Tensor, mask: torch.Tensor) -> float:
        """One optimizer step at the learning rate of the current progress; returns the loss."""
        lr = learning_rate(self.config.train, self.progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self.loss_fn(self.model(image), mask)  # logits (N, K, H, W) vs mask (N, H, W)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.train.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        self.optimizer.step()
        self.state.step += 1
        value = loss.item()
        self.step_losses.append(value)
        return value

    def validate(self) -> Scores:
        matrix = ConfusionMatrix(len(self.class_names), self.config.data.ignore_index)
        return Predictor(self.model, self.device).evaluate(self.val_loader, matrix).compute()

    def _record(self, train_stats: dict[str, float], scores: Scores) -> None:
        """Append to the history, write history.json, last.pt, and best.pt on improvement."""
        entry = {
            "epoch": self.state.epoch,
            "step": self.state.step,
            "lr": learning_rate(self.config.train, self.progress()),
            "train_loss": train_stats["loss"],
            "images_per_second": train_stats["images_per_second"],
            "val_miou": scores.miou,
            "val_pixel_accuracy": scores.pixel_accuracy,
            "elapsed_seconds": self.state.elapsed_seconds,
        }
        self.state.history.append(entry)
        improved = scores.miou > self.state.best_miou
        if improved:
            self.state.best_miou = scores.miou
        self.log(
            f"epoch {self.state.epoch:>3}/{self.config.train.epochs}  "
            f"loss {entry['train_loss']:.4f}  val mIoU {scores.miou:.4f}  "
            f"pixel acc {scores.pixel_accuracy:.4f}  {entry['images_per_second']:.1f} img/s"
            + ("  (best)" if improved else "")
        )
        (self.run_dir / "history.json").write_text(json.dumps(self.state.history, indent=1))
        save_checkpoint(self.checkpoint_state(), self.run_dir / "last.pt")
        if improved:
            save_checkpoint(self.checkpoint_state(), self.run_dir / "best.pt")

    def checkpoint_state(self) -> dict[str, Any]:
        state = asdict(self.state)
        return {
            "model": self.model_spec,
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "config": self.config.to_dict(),
            "class_names": self.class_names,
            "rng": rng_state(),
            **{key: state[key] for key in ("epoch", "step", "elapsed_seconds", "best_miou")},
            "history": state["history"],
        }

    def resume(self, checkpoint_path: Path) -> None:
        """Continue from a checkpoint written by `checkpoint_state`."""
        checkpoint = load_checkpoint(checkpoint_path)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.state = TrainState(
            epoch=checkpoint["epoch"],
            step=checkpoint["step"],
            elapsed_seconds=checkpoint["elapsed_seconds"],
            best_miou=checkpoint["best_miou"],
            history=list(checkpoint["history"]),
        )
        restore_rng_state(checkpoint["rng"])

    def _epoch_label(self) -> str:
        return f"epoch {self.state.epoch + 1}/{self.config.train.epochs}"

    def _progress_bar(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[ips]:.1f} img/s"),
            TimeRemainingColumn(),
            disable=not self.show_progress,
            transient=True,
        )
