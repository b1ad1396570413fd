"""The Trainer: epochs of optimisation, validation after each, checkpoints, logs.

    for each epoch (until the epochs or the time budget run out, or early stopping):
        train_one_epoch   per step: the learning rate of the progress so far, forward under
                          autocast, loss in fp32, (scaled) backward, clipping, optimizer step
        validate          the task's (tasks.py): semantic, the Predictor over this rank's val
                          batches into a confusion matrix, summed over ranks; instance, mask AP
        record            last.pt; best.pt when the task's score (val mIoU, val AP) improves;
                          history.json, TensorBoard
                          (checkpointing.py: that order, and its repair on resume)

The loss is `loss_fn(outputs, target)`: a semantic loss module on (N, K, H, W) logits, or an
instance model's own loss on its dict of raw maps (tasks.instance_loss); either runs in fp32.

Precision (`train.precision`): fp32; bf16 autocast (same range as fp32, no scaling needed); or
fp16 autocast with a GradScaler, whose loss scale is saved with the checkpoint. The time budget
(`train.max_minutes`) counts the training loop, data loading included, not validation.

Resuming loads last.pt: weights, optimizer, loss scale, step, epoch, elapsed time, RNG states;
it makes best.pt and history.json agree with it again if a crash left them behind.
The learning rate is a function of (step, elapsed time), and data order and augmentation depend
only on (seed, epoch), so a resumed run takes exactly the steps the uninterrupted one would have
(tested). In a distributed run (see distributed.py) every rank trains, only rank 0 writes.
A SIGTERM (fcnseg.storage.interrupts) ends the current step, or the epoch's files, before it stops.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from fcnseg.checkpoint import (
    ModelSpec,
    load_checkpoint,
    load_weights,
    model_checkpoint,
    restore_rng_state,
    rng_state,
)
from fcnseg.config import Config
from fcnseg.inference.loading import predictor_for
from fcnseg.inference.predictor import Predictor
from fcnseg.palette import PALETTE
from fcnseg.registry import lookup
from fcnseg.storage.interrupts import uninterrupted
from fcnseg.training import distributed
from fcnseg.training.checkpointing import repair_best, save_epoch
from fcnseg.training.log import StepReport, TrainingLog
from fcnseg.training.optim import build_optimizer, learning_rate
from fcnseg.training.preflight import SAME_SPLIT_WARNING, check_progress_possible
from fcnseg.training.tasks import SemanticTask, TrainingTask

AUTOCAST_TYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    elapsed_seconds: float = 0.0  # training time, summed over resumed sessions
    best_miou: float = -math.inf  # semantic runs: the best val mIoU
    best_ap: float = -math.inf  # instance runs: the best val AP
    best_epoch: int = 0  # the epoch that reached the best: early stopping counts from it
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Trains `model` on `train_loader`, validating on `val_loader` after every epoch.

    `self.model` is the plain model (validated, saved); `self.network` is what trains: the same
    model, wrapped in DistributedDataParallel when torchrun started several processes.
    """

    def __init__(
        self,
        config: Config,
        model: nn.Module,
        train_loader: DataLoader,
        val_loader: DataLoader,
        loss_fn: nn.Module | Callable[[Any, torch.Tensor], torch.Tensor],
        run_dir: Path,
        class_names: list[str],
        model_spec: ModelSpec,
        device: torch.device | str = "cpu",
        show_progress: bool = True,
        print_line: Callable[[str], None] = print,
        palette: np.ndarray | None = None,
        task: TrainingTask | None = None,
    ) -> None:
        check_progress_possible(train_loader, val_loader, config)
        self.config, self.run_dir, self.class_names = config, Path(run_dir), class_names
        self.device = torch.device(device)
        self.memory_format = (
            torch.channels_last if config.train.channels_last else torch.contiguous_format
        )
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop sizes: pick the fastest kernels
        self.model = model.to(self.device, memory_format=self.memory_format)  # saved, validated
        self.network = distributed.wrap(self.model, self.device)  # trained (DDP when several)
        self.loss_fn = loss_fn.to(self.device) if isinstance(loss_fn, nn.Module) else loss_fn
        self.task = SemanticTask() if task is None else task  # validation and best.pt (tasks.py)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.palette = PALETTE[: len(class_names)] if palette is None else palette  # (K, 3)
        self.optimizer = build_optimizer(self.model, config.train)
        self.autocast_type = lookup(AUTOCAST_TYPES, config.train.precision, "train.precision")
        fp16 = config.train.precision == "fp16"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.model_spec = model_spec  # what rebuilds the model from a checkpoint
        self.state = TrainState()
        self.step_losses: list[float] = []  # every step's loss in this session, for inspection
        self.log = TrainingLog(
            self.run_dir, show_progress, print_line, distributed.is_main(), config=config
        )
        if config.data.val_split == config.data.train_split:
            self.log.print_line(SAME_SPLIT_WARNING.format(split=config.data.val_split))

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

    def stopped_early(self) -> bool:
        """No improvement of the task's score for `train.early_stopping_patience` epochs."""
        patience = self.config.train.early_stopping_patience
        return patience is not None and self.state.epoch - self.state.best_epoch >= patience

    def fit(self, max_epochs: int | None = None) -> TrainState:
        """Train until the planned epochs or the time budget are used up, or early stopping.

        `max_epochs` stops this call after that many more epochs (the plan, and so the learning
        rate schedule, stays that of the config): a run can be interrupted and resumed exactly.
        """
        epochs = self.config.train.epochs
        if max_epochs is not None:
            epochs = min(epochs, self.state.epoch + max_epochs)
        while self.state.epoch < epochs and not self.out_of_time() and not self.stopped_early():
            train_stats = self.train_one_epoch()
            scores = self.validate()
            self.state.epoch += 1
            self.record(train_stats, scores)
        over = self.state.epoch >= self.config.train.epochs or self.out_of_time()
        if over or self.stopped_early():
            self.log.close()  # training is over: the trackers mark the run finished
        return self.state

    def train_one_epoch(self) -> dict[str, float]:
        """One pass over the training loader (cut short if the time budget runs out)."""
        self.network.train()
        self.train_loader.sampler.set_epoch(self.state.epoch)
        self.train_loader.dataset.set_epoch(self.state.epoch)
        total_loss, images = 0.0, 0
        started = last = time.perf_counter()
        budget = self.config.train.max_minutes
        bar = self.log.epoch_bar(self._epoch_label(), len(self.train_loader), budget)
        with bar as advance:
            for image, mask in self.train_loader:
                image = image.to(self.device, memory_format=self.memory_format, non_blocking=True)
                with uninterrupted():  # a SIGTERM lets the step finish first
                    loss = self.train_step(image, mask.to(self.device, non_blocking=True))
                now = time.perf_counter()
                self._add_elapsed(now - last)  # the step and the wait for its batch
                last = now
                total_loss, images = total_loss + loss * len(image), images + len(image)
                advance(self._step_report(loss, images / (now - started)))
                if self.out_of_time():
                    break
        seconds = time.perf_counter() - started
        totals = torch.tensor([total_loss, images], dtype=torch.float64)
        total_loss, images = distributed.sum_across_ranks(totals).tolist()
        return {"loss": total_loss / max(images, 1), "images_per_second": images / seconds}

    def train_step(self, image: torch.Tensor, mask: torch.Tensor) -> float:
        """One optimizer step at the learning rate of the current progress; returns the loss."""
        lr = learning_rate(self.config.train, self.progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast():
            outputs = self.network(image)  # (N, K, H, W) logits, or an instance model's maps
        loss = self.loss_fn(in_fp32(outputs), mask)  # fp32: log-sums and Dice sums need range
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # fp16: scaled up so small gradients do not vanish
        if self.config.train.grad_clip:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        self.scaler.step(self.optimizer)  # fp16: skipped if the gradients overflowed
        self.scaler.update()
        self.state.step += 1
        value = loss.item()
        self.step_losses.append(value)
        return value

    def autocast(self) -> AbstractContextManager:
        dtype = self.autocast_type
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def validate(self) -> Any:
        """The task's scores on the val loader: Scores (semantic), InstanceScores (instance)."""
        return self.task.validate(self)

    def record(self, train_stats: dict[str, float], scores: Any) -> None:
        """Append to the history and log it; rank 0 writes last.pt, and best.pt on improvement."""
        self.state.history.append(
            {
                "epoch": self.state.epoch,
                "step": self.state.step,
                "lr": learning_rate(self.config.train, self.progress()),
                "train_loss": train_stats["loss"],
                "images_per_second": train_stats["images_per_second"],
                **self.task.history_figures(scores),  # val_miou, ... or val_ap, ...
                "elapsed_seconds": self.state.elapsed_seconds,
            }
        )
        score, best_field = self.task.selection_score(scores), self.task.best_field
        improved = score > getattr(self.state, best_field)
        if improved:
            setattr(self.state, best_field, score)
            self.state.best_epoch = self.state.epoch
        with uninterrupted():  # a SIGTERM waits for the epoch's files (checkpointing.py)
            if distributed.is_main():
                save_epoch(self.checkpoint_state(), self.run_dir, improved)
            planned = None if self.config.train.max_minutes else self.config.train.epochs
            self.log.epoch_end(self.state.history, planned, improved, self._overlay_samples)
        if self.stopped_early():
            patience = self.config.train.early_stopping_patience
            self.log.print_line(
                f"early stopping: no better {self.task.score_name} in {patience} epochs "
                f"(best {getattr(self.state, best_field):.4f} at epoch {self.state.best_epoch})"
            )

    def predictor(self) -> Predictor:
        """The model as validation and the final report run it (fcnseg.inference.predictor_for:
        the data's normalisation and inference scale, the classes' names and colours)."""
        return predictor_for(
            self.model, self.config.data, self.device, None, self.class_names, self.palette
        )

    def checkpoint_state(self) -> dict[str, Any]:
        checkpoint = model_checkpoint(
            self.model, self.model_spec, self.config, self.class_names, self.palette
        )
        return {
            **checkpoint,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),  # {} unless fp16
            "rng": rng_state(),
            **asdict(self.state),
        }

    def resume(self, checkpoint_path: Path) -> None:
        """Continue from a checkpoint written by `checkpoint_state`."""
        checkpoint = load_checkpoint(checkpoint_path)
        load_weights(self.model, checkpoint, checkpoint_path)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.state = TrainState(
            **{key: checkpoint[key] for key in TrainState.__dataclass_fields__ if key in checkpoint}
        )
        self.state.history = list(self.state.history)
        restore_rng_state(checkpoint["rng"])
        own_run = Path(checkpoint_path).resolve().parent == self.run_dir.resolve()
        if distributed.is_main() and own_run:
            # A run killed between its files: best.pt and history.json agree with last.pt again.
            repaired = repair_best(self.run_dir, checkpoint)
            if repaired:
                self.log.print_line(repaired)
            self.log.write_history(self.state.history)

    def _add_elapsed(self, seconds: float) -> None:
        self.state.elapsed_seconds += seconds
        if self.config.train.max_minutes is not None:
            # Ranks must agree on the learning rate and on when time is up: rank 0's clock rules.
            self.state.elapsed_seconds = distributed.value_of_main(self.state.elapsed_seconds)

    def _overlay_samples(self) -> list:
        return self.task.samples(self, 4)

    def _epoch_label(self) -> str:
        """ "epoch 3/10"; under a time budget the epoch count is a ceiling, not a plan:
        "epoch 3 of a 20-minute budget"."""
        budget = self.config.train.max_minutes
        if budget is None:
            return f"epoch {self.state.epoch + 1}/{self.config.train.epochs}"
        return f"epoch {self.state.epoch + 1} of a {budget:g}-minute budget"

    def _step_report(self, loss: float, images_per_second: float) -> StepReport:
        budget = self.config.train.max_minutes
        left = None if budget is None else budget * 60 - self.state.elapsed_seconds
        lr = self.optimizer.param_groups[0]["lr"]
        return StepReport(loss, images_per_second, lr, self.progress(), left)


def in_fp32(outputs: torch.Tensor | dict[str, torch.Tensor]) -> Any:
    """A network's outputs in fp32: a semantic model's logits, or each of an instance model's
    raw maps, as autocast may have left them in bf16 or fp16."""
    if isinstance(outputs, dict):
        return {name: value.float() for name, value in outputs.items()}
    return outputs.float()
