"""What a training run tells people while it runs.

    a progress bar per epoch            rich, on the terminal, gone when the epoch ends
    one line per epoch                  loss, val mIoU, pixel accuracy (instance runs: val AP,
                                        AP50, DSB), speed, "(best)"
    history.json                        every epoch's numbers, rewritten after each epoch
    trackers (trackers.py)              the config once, then the same scalars and prediction
                                        overlays on val images: TensorBoard (run_dir/tensorboard,
                                        by default when installed), MLflow (run_dir/mlruns)

In a distributed run only rank 0 logs; the others get a TrainingLog with enabled=False.
The trackers are closed by `close()` when training ends (Trainer.fit), or else when the log is
collected or the process exits, which marks an MLflow run as stopped before its end (KILLED).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fcnseg.config import Config
from fcnseg.palette import overlay
from fcnseg.storage.atomic import write_text_atomically
from fcnseg.training.trackers import TensorBoardTracker, Tracker, config_params, open_trackers

Samples = list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (image, truth, prediction)


@dataclass(frozen=True)
class StepReport:
    """What the progress bar shows after a training step."""

    loss: float
    images_per_second: float
    lr: float
    run_progress: float  # 0..1: the further along of the step plan and the time budget
    seconds_left: float | None  # in the time budget; None without one


def clock(seconds: float | None) -> str:
    """Seconds as m:ss or h:mm:ss, for the time left in a budget."""
    if seconds is None:
        return ""
    minutes, secs = divmod(max(int(seconds), 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainingLog:
    """The terminal, history.json and the trackers of one run.

    `config` chooses the trackers (train.trackers) and is logged to them; without it, the
    default: TensorBoard when installed. `writer`, a SummaryWriter-like object, replaces them
    with TensorBoard through that writer (as does assigning `log.writer` later; None: no
    TensorBoard).
    """

    def __init__(
        self,
        run_dir: Path,
        show_progress: bool = True,
        print_line: Callable[[str], None] = print,
        enabled: bool = True,
        writer: Any | None = None,
        config: Config | None = None,
    ) -> None:
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.show_progress = show_progress and enabled
        self.print_line = print_line if enabled else (lambda line: None)
        self.trackers: list[Tracker] = []  # changed in place: the finalizer holds this list
        if enabled and writer is not None:
            self.trackers.append(TensorBoardTracker(writer))
        elif enabled:
            names = "auto" if config is None else config.train.trackers
            experiment = "run" if config is None else config.name
            params = {} if config is None else config_params(config.to_dict())
            self.trackers += open_trackers(names, self.run_dir, experiment, params)
        # Not closed by close(): training stopped before its end (an error, Ctrl-C, a test).
        self._finalizer = weakref.finalize(self, close_trackers, self.trackers, False)

    @property
    def writer(self) -> Any | None:
        """The TensorBoard writer, or None when TensorBoard is off."""
        tensorboard = [t for t in self.trackers if isinstance(t, TensorBoardTracker)]
        return tensorboard[0].writer if tensorboard else None

    @writer.setter
    def writer(self, writer: Any | None) -> None:
        for tracker in self.trackers:
            if isinstance(tracker, TensorBoardTracker):
                tracker.close()
        self.trackers[:] = [t for t in self.trackers if not isinstance(t, TensorBoardTracker)]
        if writer is not None and self.enabled:
            self.trackers.append(TensorBoardTracker(writer))

    def close(self, finished: bool = True) -> None:
        """End the trackers' run: `finished`, or stopped before its end. Later calls do nothing."""
        if self._finalizer.detach() is not None:
            close_trackers(self.trackers, finished)

    @contextmanager
    def epoch_bar(
        self, description: str, total: int, budget_minutes: float | None = None
    ) -> Iterator[Callable[[StepReport], None]]:
        """A progress bar for one epoch; yields `advance(report)`, called after each step.

        Without a time budget the bar counts the epoch's steps, with rich's estimate of the
        epoch's remaining time. Under `train.max_minutes` the run ends when the budget does,
        whatever the epoch count, so the bar shows the run's progress (its share of the budget,
        or of the planned steps if further along) and the time left in the budget.
        """
        columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn()]
        if budget_minutes is None:
            columns += [MofNCompleteColumn(), TimeRemainingColumn()]
        else:
            columns += [TextColumn("{task.percentage:>3.0f}%  {task.fields[left]} left")]
        columns.append(
            TextColumn(
                "loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  "
                "{task.fields[ips]:.1f} img/s"
            )
        )
        progress = Progress(*columns, disable=not self.show_progress, transient=True)
        with progress:
            fields = {"loss": 0.0, "ips": 0.0, "lr": 0.0, "left": ""}
            if budget_minutes is None:
                task = progress.add_task(description, total=total, **fields)
            else:
                task = progress.add_task(description, total=1.0, **fields)

            def advance(report: StepReport) -> None:
                shown = {"loss": report.loss, "ips": report.images_per_second, "lr": report.lr}
                if budget_minutes is None:
                    progress.update(task, advance=1, **shown)
                else:
                    left = clock(report.seconds_left)
                    progress.update(task, completed=report.run_progress, left=left, **shown)

            yield advance

    def validation_bar(self, batches: Iterable[Any], total: int) -> Iterable[Any]:
        """The val batches, counted on a transient bar: a long validation (CamVid at full
        resolution, minutes on a CPU) is not a silent pause after the epoch's bar."""
        if not self.show_progress:
            yield from batches
            return
        progress = Progress(
            TextColumn("[bold]validating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
        with progress:
            task = progress.add_task("validating", total=total)
            for batch in batches:
                yield batch
                progress.advance(task)

    def epoch_end(
        self,
        history: list[dict[str, Any]],
        epochs: int | None,
        improved: bool,
        samples: Callable[[], Samples],
    ) -> None:
        """Print the epoch's line, rewrite history.json, and send the trackers its scalars.

        `samples` is called only when a tracker is on: predicting them costs forward passes.
        """
        if not self.enabled:
            return
        entry = history[-1]
        of = "" if epochs is None else f"/{epochs}"  # None: a time budget ends the run
        self.print_line(
            f"epoch {entry['epoch']:>3}{of}  loss {entry['train_loss']:.4f}  "
            f"{validation_text(entry)}  lr {entry['lr']:.2e}  "
            f"{entry['images_per_second']:.1f} img/s" + ("  (best)" if improved else "")
        )
        self.write_history(history)
        if not self.trackers:
            return
        step = entry["step"]
        scalars = {
            scalar_tag(key): value
            for key, value in entry.items()
            if key not in ("epoch", "step") and isinstance(value, int | float)  # NaN included
        }
        strip = overlay_strip(samples())  # (rows x H, 3 x W, 3) uint8
        for tracker in self.trackers:
            tracker.log_scalars(step, scalars)
            tracker.log_image("val_overlays", step, strip)
            tracker.flush()

    def write_history(self, history: list[dict[str, Any]]) -> None:
        """history.json, atomically: a process killed while writing it leaves the old one."""
        if self.enabled:
            write_text_atomically(self.run_dir / "history.json", json.dumps(history, indent=1))


def close_trackers(trackers: list[Tracker], finished: bool) -> None:
    for tracker in trackers:
        tracker.close(finished)


def validation_text(entry: dict[str, Any]) -> str:
    """An epoch's validation figures for its line: a semantic run's or an instance run's."""
    if "val_miou" in entry:
        return f"val mIoU {entry['val_miou']:.4f}  pixel acc {entry['val_pixel_accuracy']:.4f}"
    return (
        f"val AP {entry['val_ap']:.4f}  AP50 {entry['val_ap50']:.4f}  "
        f"DSB {entry['val_dsb_score']:.4f}"
    )


def scalar_tag(key: str) -> str:
    """History keys as tracker tags, grouped: val_miou -> val/miou, lr -> train/lr."""
    if key.startswith(("train_", "val_")):
        return key.replace("_", "/", 1)
    return f"train/{key}"


def overlay_strip(samples: Samples) -> np.ndarray:
    """One picture: a row per sample of image | truth over image | prediction over image."""
    rows = []
    for image, truth, prediction in samples:
        if image.ndim == 2 or image.shape[-1] == 1:
            image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
        rows.append(
            np.concatenate([image[..., :3], overlay(image, truth), overlay(image, prediction)], 1)
        )
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows]
    return np.concatenate(rows, axis=0)
