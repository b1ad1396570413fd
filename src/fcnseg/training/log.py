"""What a training run tells people while it runs.

    a progress bar per epoch            rich, on the terminal, gone when the epoch ends
    one line per epoch                  loss, val mIoU, pixel accuracy (instance runs: val AP,
                                        AP50, DSB), speed, "(best)"
    history.json                        every epoch's numbers, rewritten after each epoch
    TensorBoard (run_dir/tensorboard)   the same scalars, and prediction overlays on val
                                        images; only when the tensorboard package is installed

In a distributed run only rank 0 logs; the others get a TrainingLog with enabled=False.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fcnseg.palette import overlay
from fcnseg.storage.atomic import write_text_atomically

Samples = list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (image, truth, prediction)


def open_tensorboard(folder: Path) -> Any | None:
    """A SummaryWriter, or None when tensorboard is not installed (it is optional)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch.utils.tensorboard needs the tensorboard package
        return None
    return SummaryWriter(log_dir=str(folder))


class TrainingLog:
    def __init__(
        self,
        run_dir: Path,
        show_progress: bool = True,
        print_line: Callable[[str], None] = print,
        enabled: bool = True,
        writer: Any | None = None,
    ) -> None:
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.show_progress = show_progress and enabled
        self.print_line = print_line if enabled else (lambda line: None)
        if writer is None and enabled:
            writer = open_tensorboard(self.run_dir / "tensorboard")
        self.writer = writer

    @contextmanager
    def epoch_bar(self, description: str, total: int) -> Iterator[Callable[[float, float], None]]:
        """A progress bar for one epoch; yields `advance(loss, images_per_second)`."""
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[ips]:.1f} img/s"),
            TimeRemainingColumn(),
            disable=not self.show_progress,
            transient=True,
        )
        with progress:
            task = progress.add_task(description, total=total, loss=0.0, ips=0.0)
            yield lambda loss, ips: progress.update(task, advance=1, loss=loss, ips=ips)

    def epoch_end(
        self,
        history: list[dict[str, Any]],
        epochs: int,
        improved: bool,
        samples: Callable[[], Samples],
    ) -> None:
        """Print the epoch's line, rewrite history.json, and send TensorBoard its scalars.

        `samples` is called only when TensorBoard is on: predicting them costs forward passes.
        """
        if not self.enabled:
            return
        entry = history[-1]
        self.print_line(
            f"epoch {entry['epoch']:>3}/{epochs}  loss {entry['train_loss']:.4f}  "
            f"{validation_text(entry)}  "
            f"{entry['images_per_second']:.1f} img/s" + ("  (best)" if improved else "")
        )
        self.write_history(history)
        if self.writer is not None:
            for key, value in entry.items():
                if key not in ("epoch", "step"):
                    self.writer.add_scalar(scalar_tag(key), value, entry["step"])
            self.writer.add_image(
                "val_overlays", overlay_strip(samples()), entry["step"], dataformats="HWC"
            )
            self.writer.flush()

    def write_history(self, history: list[dict[str, Any]]) -> None:
        """history.json, atomically: a process killed while writing it leaves the old one."""
        if self.enabled:
            write_text_atomically(self.run_dir / "history.json", json.dumps(history, indent=1))


def validation_text(entry: dict[str, Any]) -> str:
    """An epoch's validation figures for its line: a semantic run's or an instance run's."""
    if "val_miou" in entry:
        return f"val mIoU {entry['val_miou']:.4f}  pixel acc {entry['val_pixel_accuracy']:.4f}"
    return (
        f"val AP {entry['val_ap']:.4f}  AP50 {entry['val_ap50']:.4f}  "
        f"DSB {entry['val_dsb_score']:.4f}"
    )


def scalar_tag(key: str) -> str:
    """History keys as TensorBoard tags, grouped: val_miou -> val/miou, lr -> train/lr."""
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
